//! Message ids (PROTOCOL.md §3.6): the broker's offset message id and the client unique id
//! (`UNIQ_KEY`).
//!
//! The **offset message id** names a record by where it is stored: STOREHOST address bytes (4 or
//! 16), port (i32) and PHYSICALOFFSET (i64), rendered as uppercase hex (32 characters for IPv4,
//! 56 for IPv6). Java: `MessageDecoder.createMessageId` / `decodeMessageId`.
//!
//! The **unique id** is made by whoever sends the message: the sender's IP (4 or 16 bytes), the
//! low 16 bits of its pid, an int fixed per process (Java uses the class loader's hashCode; we
//! use a random int), the milliseconds since the start of the current month (i32) and the low 16
//! bits of a process-wide counter, rendered as uppercase hex (32 / 56 characters). Java:
//! `MessageClientIDSetter`. Everyone treats it as opaque; only its shape matters.
//! Java takes the month boundary in the local time zone; Tern uses UTC, which keeps the id
//! unique and the same shape.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

/// Length in hex characters of an offset message id or unique id with an IPv4 address.
pub const MSG_ID_LEN_V4: usize = 32;
/// Length in hex characters of an offset message id or unique id with an IPv6 address.
pub const MSG_ID_LEN_V6: usize = 56;

/// Why a message id could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageIdError {
    /// The id is neither 32 (IPv4) nor 56 (IPv6) characters long.
    #[error("message id must be 32 or 56 hex characters, got {0}")]
    InvalidLength(usize),
    /// The id contains a character that is not a hex digit.
    #[error("message id contains a non-hex character")]
    InvalidHex,
    /// The port field is outside `0..=65535`.
    #[error("message id port {0} out of range")]
    InvalidPort(i32),
}

/// Uppercase hex digits, indexed by nibble.
const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// Appends `bytes` to `out` as uppercase hex, two characters per byte, without going through
/// `fmt` (one table lookup per nibble; this is on the send path, once per message).
fn push_hex(out: &mut String, bytes: &[u8]) {
    out.reserve(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(HEX_UPPER[usize::from(b >> 4)]));
        out.push(char::from(HEX_UPPER[usize::from(b & 0x0F)]));
    }
}

fn ip_octets(ip: &IpAddr) -> ([u8; 16], usize) {
    let mut out = [0u8; 16];
    match ip {
        IpAddr::V4(v4) => {
            out[..4].copy_from_slice(&v4.octets());
            (out, 4)
        }
        IpAddr::V6(v6) => {
            out.copy_from_slice(&v6.octets());
            (out, 16)
        }
    }
}

/// The offset message id of the record stored at `phy_offset` by the broker at `store_host`.
///
/// ```
/// use tern_common::message::id::offset_msg_id;
/// let id = offset_msg_id("10.0.0.5:10911".parse().unwrap(), 100);
/// assert_eq!(id, "0A00000500002A9F0000000000000064");
/// ```
pub fn offset_msg_id(store_host: SocketAddr, phy_offset: i64) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(MSG_ID_LEN_V6);
    // Writing into a `String` cannot fail.
    let _ = write!(out, "{}", OffsetMsgIds::new(store_host, phy_offset, &[0]));
    out
}

/// The offset message ids of consecutive records, comma-separated, as `Display`: what a send
/// response's `msgId` carries for a single message (one id) or a batch (one per message, in
/// order). Rendering writes into the destination without an intermediate `String`.
///
/// ```
/// use tern_common::message::id::OffsetMsgIds;
/// let ids = OffsetMsgIds::new("10.0.0.5:10911".parse().unwrap(), 100, &[20, 30]);
/// assert_eq!(
///     ids.to_string(),
///     "0A00000500002A9F0000000000000064,0A00000500002A9F0000000000000078"
/// );
/// ```
#[derive(Debug, Clone, Copy)]
pub struct OffsetMsgIds<'a> {
    store_host: SocketAddr,
    first_offset: i64,
    lengths: &'a [usize],
}

impl<'a> OffsetMsgIds<'a> {
    /// Ids of records stored back to back from `first_offset` with the given `lengths` (bytes;
    /// one id per length, offsets saturate at `i64::MAX`).
    pub fn new(store_host: SocketAddr, first_offset: i64, lengths: &'a [usize]) -> Self {
        OffsetMsgIds {
            store_host,
            first_offset,
            lengths,
        }
    }
}

impl fmt::Display for OffsetMsgIds<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Writes `bytes` as uppercase hex into `id` from `at`; returns the end.
        fn hex_at(id: &mut [u8; MSG_ID_LEN_V6], at: usize, bytes: &[u8]) -> usize {
            for (i, &b) in bytes.iter().enumerate() {
                id[at + 2 * i] = HEX_UPPER[usize::from(b >> 4)];
                id[at + 2 * i + 1] = HEX_UPPER[usize::from(b & 0x0F)];
            }
            at + 2 * bytes.len()
        }
        let (octets, n) = ip_octets(&self.store_host.ip());
        let mut id = [0u8; MSG_ID_LEN_V6];
        let prefix = hex_at(&mut id, 0, &octets[..n]);
        let prefix = hex_at(
            &mut id,
            prefix,
            &i32::from(self.store_host.port()).to_be_bytes(),
        );
        let mut phy = self.first_offset;
        for (i, len) in self.lengths.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let at = hex_at(&mut id, prefix, &phy.to_be_bytes());
            // Only ASCII hex digits were written.
            f.write_str(std::str::from_utf8(&id[..at]).map_err(|_| fmt::Error)?)?;
            phy = phy.saturating_add(i64::try_from(*len).unwrap_or(i64::MAX));
        }
        Ok(())
    }
}

fn hex_value(c: u8) -> Result<u8, MessageIdError> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(MessageIdError::InvalidHex),
    }
}

fn decode_hex(id: &str, out: &mut [u8]) -> Result<(), MessageIdError> {
    let digits = id.as_bytes();
    if digits.len() != out.len() * 2 {
        return Err(MessageIdError::InvalidLength(digits.len()));
    }
    for (slot, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        *slot = (hex_value(pair[0])? << 4) | hex_value(pair[1])?;
    }
    Ok(())
}

/// Splits an offset message id into the store host and the physical offset. Hex digits of
/// either case are accepted.
///
/// # Errors
/// [`MessageIdError::InvalidLength`] unless the id has 32 or 56 characters,
/// [`MessageIdError::InvalidHex`], [`MessageIdError::InvalidPort`].
pub fn decode_offset_msg_id(id: &str) -> Result<(SocketAddr, i64), MessageIdError> {
    let ip_len = match id.len() {
        MSG_ID_LEN_V4 => 4,
        MSG_ID_LEN_V6 => 16,
        other => return Err(MessageIdError::InvalidLength(other)),
    };
    let mut raw = [0u8; 28];
    let raw = &mut raw[..ip_len + 12];
    decode_hex(id, raw)?;
    let ip = if ip_len == 4 {
        IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]))
    } else {
        let mut o = [0u8; 16];
        o.copy_from_slice(&raw[..16]);
        IpAddr::V6(Ipv6Addr::from(o))
    };
    let mut port = [0u8; 4];
    port.copy_from_slice(&raw[ip_len..ip_len + 4]);
    let port = i32::from_be_bytes(port);
    let port = u16::try_from(port).map_err(|_| MessageIdError::InvalidPort(port))?;
    let mut offset = [0u8; 8];
    offset.copy_from_slice(&raw[ip_len + 4..]);
    Ok((SocketAddr::new(ip, port), i64::from_be_bytes(offset)))
}

/// Milliseconds since the Unix epoch of the first instant of the UTC month containing `now_ms`,
/// and of the next month.
fn month_bounds_ms(now_ms: i64) -> (i64, i64) {
    const DAY_MS: i64 = 86_400_000;
    let days = now_ms.div_euclid(DAY_MS);
    let (year, month, _) = civil_from_days(days);
    let start = days_from_civil(year, month, 1) * DAY_MS;
    let (next_year, next_month) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    let next = days_from_civil(next_year, next_month, 1) * DAY_MS;
    (start, next)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The (year, month, day) of a day count since 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Generates client unique ids (`UNIQ_KEY`) with Java's `MessageClientIDSetter` layout.
/// Thread safe; share one per process (or per broker, with the broker's address).
#[derive(Debug)]
pub struct UniqIdGenerator {
    /// Hex of IP + pid (short) + per-process int.
    prefix: String,
    /// (start of the current month, start of the next month), epoch milliseconds.
    month_ms: Mutex<(i64, i64)>,
    counter: AtomicU32,
}

impl UniqIdGenerator {
    /// A generator for a sender at `ip`, with this process's pid and a random per-process int.
    pub fn new(ip: IpAddr) -> Self {
        Self::with_parts(ip, std::process::id(), rand::random::<i32>())
    }

    /// A generator with every fixed part given (tests, or a caller that wants Java's values).
    /// Only the low 16 bits of `pid` are used.
    pub fn with_parts(ip: IpAddr, pid: u32, process_int: i32) -> Self {
        let (octets, n) = ip_octets(&ip);
        let mut prefix = String::with_capacity(MSG_ID_LEN_V6);
        push_hex(&mut prefix, &octets[..n]);
        // Only the low 16 bits of the pid are kept, as in Java's `(short) pid`.
        push_hex(&mut prefix, &((pid & 0xFFFF) as u16).to_be_bytes());
        push_hex(&mut prefix, &process_int.to_be_bytes());
        UniqIdGenerator {
            prefix,
            month_ms: Mutex::new((i64::MIN, i64::MIN)),
            counter: AtomicU32::new(0),
        }
    }

    /// The next id, using the system clock.
    pub fn next_id(&self) -> String {
        self.next_id_at(now_ms())
    }

    /// The next id as if the clock read `now_ms` (epoch milliseconds).
    pub fn next_id_at(&self, now_ms: i64) -> String {
        let start = {
            let mut bounds = self.month_ms.lock();
            if now_ms >= bounds.1 || now_ms < bounds.0 {
                *bounds = month_bounds_ms(now_ms);
            }
            bounds.0
        };
        // A month is at most 31 days = 2 678 400 000 ms, which wraps an i32 as Java's
        // `(int) (current - startTime)` does.
        let diff = (now_ms - start) as i32;
        let count = (self.counter.fetch_add(1, Ordering::Relaxed) & 0xFFFF) as u16;
        let mut out = String::with_capacity(self.prefix.len() + 12);
        out.push_str(&self.prefix);
        push_hex(&mut out, &diff.to_be_bytes());
        push_hex(&mut out, &count.to_be_bytes());
        out
    }
}

/// The address this host would use to reach the network, found without sending anything
/// (a UDP `connect` only selects a route); falls back to 127.0.0.1.
pub fn local_ip() -> IpAddr {
    let probe = || -> std::io::Result<IpAddr> {
        let socket = UdpSocket::bind("0.0.0.0:0")?;
        socket.connect("192.0.2.1:9")?;
        Ok(socket.local_addr()?.ip())
    };
    match probe() {
        Ok(ip) if !ip.is_unspecified() => ip,
        _ => IpAddr::V4(Ipv4Addr::LOCALHOST),
    }
}

/// A unique id from the process-wide generator (created on first use with [`local_ip`]).
pub fn new_uniq_id() -> String {
    static GLOBAL: OnceLock<UniqIdGenerator> = OnceLock::new();
    GLOBAL
        .get_or_init(|| UniqIdGenerator::new(local_ip()))
        .next_id()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_hex_matches_fmt_for_every_byte() {
        let all: Vec<u8> = (0..=255u8).collect();
        let mut fast = String::new();
        push_hex(&mut fast, &all);
        let slow: String = all.iter().map(|b| format!("{b:02X}")).collect();
        assert_eq!(fast, slow);
    }

    #[test]
    fn offset_msg_id_list_matches_the_single_ids() {
        let hosts: [SocketAddr; 2] = [
            "10.0.0.5:10911".parse().expect("literal address"),
            "[fe80::1:abcd]:10911".parse().expect("literal address"),
        ];
        for host in hosts {
            assert_eq!(OffsetMsgIds::new(host, 7, &[]).to_string(), "");
            assert_eq!(
                OffsetMsgIds::new(host, 7, &[100]).to_string(),
                offset_msg_id(host, 7)
            );
            let lengths = [100, 1, 4096];
            let want = [7, 107, 108].map(|phy| offset_msg_id(host, phy)).join(",");
            assert_eq!(OffsetMsgIds::new(host, 7, &lengths).to_string(), want);
            // Offsets saturate instead of wrapping.
            let top = OffsetMsgIds::new(host, i64::MAX - 1, &[5, 5]).to_string();
            assert!(top.ends_with(&offset_msg_id(host, i64::MAX)));
        }
    }

    #[test]
    fn offset_msg_id_matches_fmt_reference() {
        let hosts: [SocketAddr; 3] = [
            "255.1.0.171:65535".parse().expect("literal address"),
            "10.0.0.5:0".parse().expect("literal address"),
            "[fe80::1:abcd]:10911".parse().expect("literal address"),
        ];
        for host in hosts {
            for off in [0, 1, -1, i64::MIN, i64::MAX, 0x0123_4567_89AB_CDEF] {
                let (octets, n) = ip_octets(&host.ip());
                let mut want: String = octets[..n].iter().map(|b| format!("{b:02X}")).collect();
                want.push_str(&format!("{:08X}{:016X}", i32::from(host.port()), off));
                let got = offset_msg_id(host, off);
                assert_eq!(got, want);
                assert_eq!(decode_offset_msg_id(&got), Ok((host, off)));
            }
        }
    }

    #[test]
    fn month_bounds_match_known_dates() {
        // 2023-11-14T22:13:20Z.
        let (start, next) = month_bounds_ms(1_700_000_000_000);
        assert_eq!(start, 1_698_796_800_000); // 2023-11-01T00:00:00Z
        assert_eq!(next, 1_701_388_800_000); // 2023-12-01T00:00:00Z
                                             // December rolls into January.
        let (start, next) = month_bounds_ms(1_703_980_800_000); // 2023-12-31
        assert_eq!(start, 1_701_388_800_000);
        assert_eq!(next, 1_704_067_200_000); // 2024-01-01
        assert_eq!(month_bounds_ms(0), (0, 2_678_400_000));
    }

    #[test]
    fn civil_round_trip_over_a_range_of_days() {
        for days in (-1_000_000..1_000_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}

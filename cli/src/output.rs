//! Output helpers: aligned text tables for people, JSON for scripts (`--json`), message
//! previews and time formatting.

use std::fmt::Write as _;

use serde::Serialize;
use tern_common::message::MessageExt;

/// A text table: a header row and rows of cells, printed with columns padded to their widest
/// cell.
#[derive(Debug, Default)]
pub(crate) struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub(crate) fn new(header: &[&str]) -> Self {
        Table {
            header: header.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds one row (missing cells print empty, extra cells are kept).
    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as text, one line per row, columns separated by two spaces.
    pub(crate) fn render(&self) -> String {
        let columns = self
            .rows
            .iter()
            .map(Vec::len)
            .chain(std::iter::once(self.header.len()))
            .max()
            .unwrap_or(0);
        let mut widths = vec![0usize; columns];
        for row in std::iter::once(&self.header).chain(&self.rows) {
            for (i, cell) in row.iter().enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (i, width) in widths.iter().enumerate() {
                let cell = row.get(i).map(String::as_str).unwrap_or("");
                if i + 1 == columns {
                    line.push_str(cell);
                } else {
                    let _ = write!(line, "{cell:<width$}  ");
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    /// Prints the table to stdout.
    pub(crate) fn print(&self) {
        print!("{}", self.render());
    }
}

/// Prints `value` as pretty JSON on stdout.
pub(crate) fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Prints `value` as one compact JSON line (for streams: `send`, `consume`).
pub(crate) fn print_json_line<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(value)?);
    Ok(())
}

/// The first `max_bytes` of `body` as text: UTF-8 shown as is (control characters escaped),
/// other bytes as `\xNN`, and `…(N bytes)` when cut.
pub(crate) fn body_preview(body: &[u8], max_bytes: usize) -> String {
    let shown = &body[..body.len().min(max_bytes)];
    let mut out = String::new();
    for chunk in shown.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if c.is_control() => {
                    let _ = write!(out, "\\u{{{:x}}}", c as u32);
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    if body.len() > shown.len() {
        let _ = write!(out, "…({} bytes)", body.len());
    }
    out
}

/// Epoch milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC); `-` for 0 or less.
pub(crate) fn format_ms(ms: i64) -> String {
    if ms <= 0 {
        return "-".to_string();
    }
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    )
}

/// Days since 1970-01-01 → (year, month, day), Howard Hinnant's `civil_from_days`.
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) → days since 1970-01-01, Howard Hinnant's `days_from_civil`.
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A stored message as JSON for `--json` outputs; the body as UTF-8 text when it is valid
/// UTF-8, else `bodyBase16`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MessageView {
    pub(crate) topic: String,
    pub(crate) msg_id: String,
    pub(crate) offset_msg_id: String,
    pub(crate) queue_id: i32,
    pub(crate) queue_offset: i64,
    pub(crate) tags: Option<String>,
    pub(crate) keys: Vec<String>,
    pub(crate) born_timestamp: i64,
    pub(crate) store_timestamp: i64,
    pub(crate) store_host: String,
    pub(crate) reconsume_times: i32,
    pub(crate) body_size: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) body: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) body_base16: Option<String>,
    pub(crate) properties: std::collections::BTreeMap<String, String>,
}

impl MessageView {
    /// The view of `m` with its (decompressed when possible) body.
    pub(crate) fn of(m: &MessageExt) -> Self {
        let body = m
            .uncompressed_body()
            .unwrap_or_else(|_| m.message.body.clone());
        let (text, hex) = match std::str::from_utf8(&body) {
            Ok(s) => (Some(s.to_string()), None),
            Err(_) => (
                None,
                Some(body.iter().fold(String::new(), |mut s, b| {
                    let _ = write!(s, "{b:02x}");
                    s
                })),
            ),
        };
        MessageView {
            topic: m.topic().to_string(),
            msg_id: m.unique_id().to_string(),
            offset_msg_id: m.msg_id.clone(),
            queue_id: m.queue_id,
            queue_offset: m.queue_offset,
            tags: m.tags().map(str::to_string),
            keys: m.keys().map(str::to_string).collect(),
            born_timestamp: m.born_timestamp,
            store_timestamp: m.store_timestamp,
            store_host: m.store_host.to_string(),
            reconsume_times: m.reconsume_times,
            body_size: body.len(),
            body: text,
            body_base16: hex,
            properties: m.message.properties.clone(),
        }
    }
}

/// Prints one message for people: a header line and a body preview.
pub(crate) fn print_message(m: &MessageExt, preview_bytes: usize) {
    let body = m
        .uncompressed_body()
        .unwrap_or_else(|_| m.message.body.clone());
    let keys: Vec<&str> = m.keys().collect();
    println!(
        "topic={} queue={} offset={} msgId={} offsetMsgId={} tags={} keys={} stored={} reconsume={}",
        m.topic(),
        m.queue_id,
        m.queue_offset,
        m.unique_id(),
        m.msg_id,
        m.tags().unwrap_or("-"),
        if keys.is_empty() { "-".to_string() } else { keys.join(",") },
        format_ms(m.store_timestamp),
        m.reconsume_times,
    );
    println!(
        "  body ({} bytes): {}",
        body.len(),
        body_preview(&body, preview_bytes)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_pads_columns_to_the_widest_cell() {
        let mut t = Table::new(&["A", "LONGER"]);
        t.row(vec!["wide cell".into(), "x".into()]);
        assert_eq!(t.render(), "A          LONGER\nwide cell  x\n");
    }

    #[test]
    fn preview_escapes_and_cuts() {
        assert_eq!(body_preview(b"hi\nthere", 100), "hi\\nthere");
        assert_eq!(body_preview(b"abcdef", 3), "abc…(6 bytes)");
        assert_eq!(body_preview(&[0x61, 0xff, 0x62], 10), "a\\xffb");
    }

    #[test]
    fn dates_round_trip_through_days() {
        for days in [-1000, 0, 1, 365, 10_957, 19_723, 20_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(format_ms(0), "-");
        assert_eq!(format_ms(1_704_067_200_123), "2024-01-01T00:00:00.123Z");
    }
}

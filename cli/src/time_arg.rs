//! Parsing of time arguments such as `tern consumer reset-offset --to TIME`.
//!
//! Accepted forms (all UTC): `now`; `now-DURATION` or `-DURATION` with DURATION like `90s`,
//! `10m`, `2h`, `7d` (or a sum: `1h30m`); epoch milliseconds (`1704067200000`); a date
//! `2024-01-01`; a date and time `2024-01-01T12:30`, `2024-01-01T12:30:05`,
//! `2024-01-01 12:30:05.250Z`.

use anyhow::{bail, Context, Result};

use crate::output::days_from_civil;

/// Milliseconds since the Unix epoch now.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Parses `text` into epoch milliseconds, relative forms against `now_ms`.
pub(crate) fn parse_time_ms(text: &str, now_ms: i64) -> Result<i64> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("now") {
        return Ok(now_ms);
    }
    if let Some(rest) = t.strip_prefix("now-").or_else(|| t.strip_prefix('-')) {
        let back = parse_duration_ms(rest)?;
        return Ok(now_ms.saturating_sub(back));
    }
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t.parse::<i64>().context("epoch milliseconds out of range");
    }
    parse_datetime_ms(t).with_context(|| {
        format!("`{text}` is not a time (now, -10m, epoch ms, 2024-01-01, 2024-01-01T12:30:00Z)")
    })
}

/// Parses `90s`, `10m`, `2h`, `7d`, `500ms` or sums like `1h30m` into milliseconds.
pub(crate) fn parse_duration_ms(text: &str) -> Result<i64> {
    let mut total: i64 = 0;
    let mut rest = text.trim();
    if rest.is_empty() {
        bail!("empty duration");
    }
    // Each step consumes at least one digit and one unit character, so this ends.
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            bail!("`{text}`: expected a number");
        }
        let n: i64 = rest[..digits].parse().context("duration out of range")?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let scale = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => bail!("`{text}`: unknown unit `{unit}` (use ms, s, m, h or d)"),
        };
        total = total.saturating_add(n.saturating_mul(scale));
    }
    Ok(total)
}

fn parse_datetime_ms(t: &str) -> Result<i64> {
    let t = t.strip_suffix('Z').unwrap_or(t);
    let (date, time) = match t.split_once(['T', ' ']) {
        Some((d, tm)) => (d, Some(tm)),
        None => (t, None),
    };
    let mut parts = date.splitn(3, '-');
    let y: i64 = parts.next().context("year")?.parse().context("year")?;
    let m: u32 = parts.next().context("month")?.parse().context("month")?;
    let d: u32 = parts.next().context("day")?.parse().context("day")?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        bail!("date out of range");
    }
    let mut ms = days_from_civil(y, m, d) * 86_400_000;
    if let Some(time) = time {
        let (hms, frac) = match time.split_once('.') {
            Some((a, b)) => (a, Some(b)),
            None => (time, None),
        };
        let mut fields = hms.split(':');
        let h: i64 = fields.next().context("hour")?.parse().context("hour")?;
        let min: i64 = fields.next().context("minute")?.parse().context("minute")?;
        let s: i64 = match fields.next() {
            Some(s) => s.parse().context("second")?,
            None => 0,
        };
        if fields.next().is_some() || h > 23 || min > 59 || s > 60 {
            bail!("time out of range");
        }
        ms += ((h * 60 + min) * 60 + s) * 1000;
        if let Some(frac) = frac {
            let digits: String = frac.chars().take(3).collect();
            let padded = format!("{digits:0<3}");
            ms += padded.parse::<i64>().context("milliseconds")?;
        }
    }
    Ok(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_documented_form() {
        let now = 1_704_067_200_000; // 2024-01-01T00:00:00Z
        assert_eq!(parse_time_ms("now", now).unwrap(), now);
        assert_eq!(parse_time_ms("-10m", now).unwrap(), now - 600_000);
        assert_eq!(parse_time_ms("now-1h30m", now).unwrap(), now - 5_400_000);
        assert_eq!(parse_time_ms("1704067200000", now).unwrap(), now);
        assert_eq!(parse_time_ms("2024-01-01", 0).unwrap(), now);
        assert_eq!(parse_time_ms("2024-01-01T00:01", 0).unwrap(), now + 60_000);
        assert_eq!(
            parse_time_ms("2024-01-01 00:00:01.5Z", 0).unwrap(),
            now + 1_500
        );
    }

    #[test]
    fn rejects_nonsense() {
        for bad in [
            "",
            "yesterday",
            "-10x",
            "2024-13-01",
            "2024-01-01T25:00",
            "-m",
        ] {
            assert!(parse_time_ms(bad, 0).is_err(), "{bad}");
        }
    }
}

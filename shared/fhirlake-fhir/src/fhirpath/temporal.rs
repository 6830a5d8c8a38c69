//! FHIRPath dates, date-times and times held as their ISO 8601 text: parsing at partial precision, precision-aware
//! comparison and calendar arithmetic.

use std::cmp::Ordering;

use chrono::{Duration, Months, NaiveDate, NaiveDateTime, NaiveTime};

/// Which temporal type a text is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Date,
    DateTime,
    Time,
}

/// A parsed partial date, date-time or time.
#[derive(Debug, Clone)]
pub(crate) struct Temporal {
    pub(crate) kind: Kind,
    /// year, month, day, hour, minute, millisecond-of-minute; for times hour, minute, millisecond-of-minute only.
    parts: Vec<i64>,
    /// Whether fractional seconds were written (kept when formatting).
    millis_written: bool,
    /// The time-zone offset in minutes and its original spelling.
    tz: Option<(i64, String)>,
}

fn num(s: &str, len: usize) -> Option<i64> {
    (s.len() == len && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok()).flatten()
}

/// Parses `hh[:mm[:ss[.fff]]]` into parts; returns whether fractional seconds were present.
fn parse_time(s: &str, parts: &mut Vec<i64>) -> Option<bool> {
    let mut it = s.splitn(3, ':');
    let h = num(it.next()?, 2).filter(|h| *h < 24)?;
    parts.push(h);
    let Some(m) = it.next() else { return Some(false) };
    parts.push(num(m, 2).filter(|m| *m < 60)?);
    let Some(sec) = it.next() else { return Some(false) };
    let (whole, frac) = match sec.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (sec, None),
    };
    let secs = num(whole, 2).filter(|s| *s < 60)?;
    let millis = match frac {
        Some(f) if !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()) => {
            let padded: String = f.chars().chain(std::iter::repeat('0')).take(3).collect();
            padded.parse::<i64>().ok()?
        }
        Some(_) => return None,
        None => 0,
    };
    parts.push(secs * 1000 + millis);
    Some(frac.is_some())
}

impl Temporal {
    /// Parses a FHIRPath temporal text (without `@`; times with or without the leading `T`).
    pub(crate) fn parse(s: &str) -> Option<Temporal> {
        if let Some(t) = s.strip_prefix('T') {
            return Self::parse_time_only(t);
        }
        let b = s.as_bytes();
        if b.len() < 4 || !b[..4].iter().all(u8::is_ascii_digit) {
            return Self::parse_time_only(s).filter(|_| s.len() >= 2 && b.get(2).is_none_or(|c| *c == b':'));
        }
        let (date, rest) = match s.find('T') {
            Some(i) => (&s[..i], Some(&s[i + 1..])),
            None => (s, None),
        };
        let mut parts = Vec::with_capacity(6);
        let mut d = date.split('-');
        parts.push(num(d.next()?, 4)?);
        if let Some(m) = d.next() {
            parts.push(num(m, 2).filter(|m| (1..=12).contains(m))?);
            if let Some(day) = d.next() {
                parts.push(num(day, 2).filter(|d| (1..=31).contains(d))?);
            }
        }
        if d.next().is_some() {
            return None;
        }
        let Some(rest) = rest else { return Some(Temporal { kind: Kind::Date, parts, millis_written: false, tz: None }) };
        if rest.is_empty() {
            return Some(Temporal { kind: Kind::DateTime, parts, millis_written: false, tz: None });
        }
        if parts.len() != 3 {
            return None;
        }
        let (time, tz) = split_tz(rest)?;
        let millis_written = parse_time(time, &mut parts)?;
        Some(Temporal { kind: Kind::DateTime, parts, millis_written, tz })
    }

    fn parse_time_only(s: &str) -> Option<Temporal> {
        let mut parts = Vec::with_capacity(3);
        let millis_written = parse_time(s, &mut parts)?;
        Some(Temporal { kind: Kind::Time, parts, millis_written, tz: None })
    }

    /// The precision as comparable components (seconds and milliseconds count as one).
    fn precision(&self) -> usize {
        self.parts.len()
    }

    /// The parts shifted to UTC when an offset is known and the time has at least minutes.
    fn normalized(&self) -> Vec<i64> {
        let Some((offset, _)) = &self.tz else { return self.parts.clone() };
        if self.kind != Kind::DateTime || self.parts.len() < 5 {
            return self.parts.clone();
        }
        let Some(naive) = self.naive() else { return self.parts.clone() };
        let utc = naive - Duration::minutes(*offset);
        let mut out = from_naive(&utc);
        out.truncate(self.parts.len());
        out
    }

    fn naive(&self) -> Option<NaiveDateTime> {
        let p = |i: usize, d: i64| self.parts.get(i).copied().unwrap_or(d);
        let date = NaiveDate::from_ymd_opt(i32::try_from(p(0, 1)).ok()?, u32::try_from(p(1, 1)).ok()?, u32::try_from(p(2, 1)).ok()?)?;
        let ms = p(5, 0);
        let time = NaiveTime::from_hms_milli_opt(
            u32::try_from(p(3, 0)).ok()?,
            u32::try_from(p(4, 0)).ok()?,
            u32::try_from(ms / 1000).ok()?,
            u32::try_from(ms % 1000).ok()?,
        )?;
        Some(date.and_time(time))
    }

    /// The number of digits of precision (`precision()`): 4 for a year, 8 for a date, 17 for a date-time to the
    /// millisecond, 4 for a time to the minute.
    pub(crate) fn digits(&self) -> usize {
        const DATE: [usize; 7] = [0, 4, 6, 8, 10, 12, 14];
        const TIME: [usize; 4] = [0, 2, 4, 6];
        let n = self.parts.len();
        let base = if self.kind == Kind::Time { TIME.get(n).copied().unwrap_or(6) } else { DATE.get(n).copied().unwrap_or(14) };
        if self.millis_written {
            base + 3
        } else {
            base
        }
    }

    /// Compares two temporals of the same kind; `None` when precision or time zones make it undecidable.
    pub(crate) fn compare(&self, other: &Temporal) -> Option<Ordering> {
        let same_kind = self.kind == other.kind
            || (matches!(self.kind, Kind::Date | Kind::DateTime) && matches!(other.kind, Kind::Date | Kind::DateTime));
        if !same_kind {
            return None;
        }
        let timed = |t: &Temporal| t.kind == Kind::DateTime && t.parts.len() > 3;
        if timed(self) && timed(other) && self.tz.is_some() != other.tz.is_some() {
            return None;
        }
        let (a, b) = (self.normalized(), other.normalized());
        let n = self.precision().min(other.precision());
        for i in 0..n {
            match a[i].cmp(&b[i]) {
                Ordering::Equal => {}
                o => return Some(o),
            }
        }
        (self.precision() == other.precision()).then_some(Ordering::Equal)
    }

    /// Adds `amount` of a calendar unit (negative to subtract); `None` for units that cannot apply.
    pub(crate) fn add(&self, amount: f64, unit: &str) -> Option<Temporal> {
        let whole = amount.trunc() as i64;
        let unit = match unit {
            "year" | "years" => "year",
            "month" | "months" => "month",
            "week" | "weeks" | "wk" => "week",
            "day" | "days" | "d" => "day",
            "hour" | "hours" | "h" => "hour",
            "minute" | "minutes" | "min" => "minute",
            "second" | "seconds" | "s" => "second",
            "millisecond" | "milliseconds" | "ms" => "millisecond",
            _ => return None,
        };
        if self.kind == Kind::Time {
            let base = NaiveTime::from_hms_milli_opt(
                u32::try_from(self.parts.first().copied().unwrap_or(0)).ok()?,
                u32::try_from(self.parts.get(1).copied().unwrap_or(0)).ok()?,
                u32::try_from(self.parts.get(2).copied().unwrap_or(0) / 1000).ok()?,
                u32::try_from(self.parts.get(2).copied().unwrap_or(0) % 1000).ok()?,
            )?;
            let d = duration(unit, whole)?;
            let t = base.overflowing_add_signed(d).0;
            let mut out = self.clone();
            let all = [i64::from(chrono::Timelike::hour(&t)), i64::from(chrono::Timelike::minute(&t)), ms_of_minute(&t)];
            out.parts = all[..self.parts.len()].to_vec();
            return Some(out);
        }
        let base = self.naive()?;
        let next = match unit {
            "year" | "month" => {
                let months = if unit == "year" { whole.checked_mul(12)? } else { whole };
                let m = Months::new(u32::try_from(months.unsigned_abs()).ok()?);
                if months >= 0 {
                    base.checked_add_months(m)?
                } else {
                    base.checked_sub_months(m)?
                }
            }
            _ => base.checked_add_signed(duration(unit, whole)?)?,
        };
        let mut out = self.clone();
        out.parts = from_naive(&next);
        out.parts.truncate(self.parts.len());
        Some(out)
    }

    /// The ISO 8601 text at the original precision (times without a leading `T`).
    pub(crate) fn format(&self) -> String {
        let p = &self.parts;
        let mut s = String::new();
        let time_from = if self.kind == Kind::Time { 0 } else { 3 };
        if self.kind != Kind::Time {
            s.push_str(&format!("{:04}", p[0]));
            for v in p.iter().take(3).skip(1) {
                s.push_str(&format!("-{v:02}"));
            }
            if self.kind == Kind::DateTime {
                s.push('T');
            }
        }
        for (i, v) in p.iter().enumerate().skip(time_from) {
            let pos = i - time_from;
            match pos {
                0 => s.push_str(&format!("{v:02}")),
                1 => s.push_str(&format!(":{v:02}")),
                _ => {
                    s.push_str(&format!(":{:02}", v / 1000));
                    if self.millis_written {
                        s.push_str(&format!(".{:03}", v % 1000));
                    }
                }
            }
        }
        if let Some((_, text)) = &self.tz {
            s.push_str(text);
        }
        s
    }
}

fn ms_of_minute(t: &impl chrono::Timelike) -> i64 {
    i64::from(t.second()) * 1000 + i64::from(t.nanosecond() / 1_000_000)
}

fn from_naive(t: &NaiveDateTime) -> Vec<i64> {
    use chrono::{Datelike, Timelike};
    vec![i64::from(t.year()), i64::from(t.month()), i64::from(t.day()), i64::from(t.hour()), i64::from(t.minute()), ms_of_minute(t)]
}

fn duration(unit: &str, n: i64) -> Option<Duration> {
    match unit {
        "week" => Duration::try_weeks(n),
        "day" => Duration::try_days(n),
        "hour" => Duration::try_hours(n),
        "minute" => Duration::try_minutes(n),
        "second" => Duration::try_seconds(n),
        "millisecond" => Duration::try_milliseconds(n),
        _ => None,
    }
}

/// Splits `hh:mm:ss+10:00` into the time and its offset (minutes, spelling).
fn split_tz(s: &str) -> Option<(&str, Option<(i64, String)>)> {
    if let Some(t) = s.strip_suffix('Z') {
        return Some((t, Some((0, "Z".to_string()))));
    }
    match s.rfind(['+', '-']) {
        Some(i) => {
            let tz = &s[i..];
            let (h, m) = tz[1..].split_once(':')?;
            let minutes = num(h, 2)? * 60 + num(m, 2)?;
            let sign = if tz.starts_with('-') { -1 } else { 1 };
            Some((&s[..i], Some((sign * minutes, tz.to_string()))))
        }
        None => Some((s, None)),
    }
}

/// Converts a text to `kind` (`toDate()`, `toDateTime()`, `toTime()`): a date-time converts to its date part, a
/// date to a date-time of date precision; `None` when it does not convert.
pub(crate) fn convert(s: &str, kind: Kind) -> Option<Temporal> {
    let mut t = Temporal::parse(s)?;
    match (t.kind, kind) {
        (a, b) if a == b => Some(t),
        (Kind::DateTime, Kind::Date) => {
            t.parts.truncate(3);
            t.kind = Kind::Date;
            t.tz = None;
            t.millis_written = false;
            Some(t)
        }
        (Kind::Date, Kind::DateTime) => {
            t.kind = Kind::DateTime;
            Some(t)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Temporal {
        Temporal::parse(s).unwrap()
    }

    #[test]
    fn parses_and_formats() {
        for s in ["2015", "2015-02", "2015-02-04", "2015-02-04T14:34:28.123+10:00", "2015T", "14:34", "2015-02-04T14:34:28Z"] {
            assert_eq!(t(s).format(), s.trim_end_matches('T').to_string() + if s.ends_with('T') { "T" } else { "" });
        }
        assert!(Temporal::parse("2015-13").is_none());
        assert!(Temporal::parse("hello").is_none());
    }

    #[test]
    fn compares_with_precision_and_zones() {
        assert_eq!(t("2012-04-15T15:30:31").compare(&t("2012-04-15T15:30:31.0")), Some(Ordering::Equal));
        assert_eq!(t("2012-04-15T15:00:00+02:00").compare(&t("2012-04-15T16:00:00+03:00")), Some(Ordering::Equal));
        assert_eq!(t("2012-04-15T15:00:00Z").compare(&t("2012-04-15T10:00:00")), None);
        assert_eq!(t("T10:30").compare(&t("T10:30:00")), None);
        assert_eq!(t("2012").compare(&t("2013-01")), Some(Ordering::Less));
    }

    #[test]
    fn adds_calendar_units() {
        assert_eq!(t("1973-12-25").add(7.7, "days").unwrap().format(), "1974-01-01");
        assert_eq!(t("1973-12-25").add(1.0, "month").unwrap().format(), "1974-01-25");
        assert_eq!(t("1973-12-25T00:00:00.000+10:00").add(10.0, "ms").unwrap().format(), "1973-12-25T00:00:00.010+10:00");
        assert!(t("1973-12-25").add(1.0, "mo").is_none());
    }
}

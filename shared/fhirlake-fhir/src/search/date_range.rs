//! Dates as ranges of instants (`search.html#date`): a value written to some precision stands
//! for every instant of that precision's unit. `2024` is the whole year, `2024-05-01T10:00Z` the
//! whole minute. Ranges are inclusive at both ends, in microseconds since the Unix epoch, UTC.
//! A date-time without a time zone (allowed in search values) is taken as UTC.

use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};

/// An inclusive range of instants, in microseconds since 1970-01-01T00:00:00Z.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DateRange {
    /// The first instant in the range.
    pub lo: i64,
    /// The last instant in the range.
    pub hi: i64,
}

impl DateRange {
    /// The earliest representable instant: an open start.
    pub const MIN: i64 = -62_135_596_800_000_000; // 0001-01-01T00:00:00Z
    /// The latest representable instant: an open end.
    pub const MAX: i64 = 253_402_300_799_999_999; // 9999-12-31T23:59:59.999999Z

    /// A single instant.
    pub fn point(micros: i64) -> Self {
        DateRange { lo: micros, hi: micros }
    }

    /// A Period: from the start of `start` to the end of `end`; a missing end is open.
    /// `None` when both are missing or the end is before the start.
    pub fn period(start: Option<DateRange>, end: Option<DateRange>) -> Option<Self> {
        if start.is_none() && end.is_none() {
            return None;
        }
        let lo = start.map_or(Self::MIN, |s| s.lo);
        let hi = end.map_or(Self::MAX, |e| e.hi);
        (lo <= hi).then_some(DateRange { lo, hi })
    }

    /// True when the two ranges share an instant.
    pub fn overlaps(&self, other: &DateRange) -> bool {
        self.lo <= other.hi && other.lo <= self.hi
    }

    /// True when `other` lies wholly inside this range.
    pub fn contains(&self, other: &DateRange) -> bool {
        self.lo <= other.lo && other.hi <= self.hi
    }

    /// Parses a FHIR `date`, `dateTime` or `instant`, or a search date value, to the range its
    /// precision covers: `YYYY`, `YYYY-MM`, `YYYY-MM-DD`, `YYYY-MM-DDThh:mm`, `…:ss`, `…:ss.f…`
    /// (up to microseconds), with `Z`, `±hh:mm` or no zone (UTC). `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        let (date, time) = match text.split_once('T') {
            Some((d, t)) => (d, Some(t)),
            None => (text, None),
        };
        let mut parts = date.split('-');
        let year = digits(parts.next()?, 4)?;
        let month = match parts.next() {
            Some(m) => Some(digits(m, 2)?),
            None => None,
        };
        let day = match parts.next() {
            Some(d) => Some(digits(d, 2)?),
            None => None,
        };
        if parts.next().is_some() || (day.is_some() && month.is_none()) || year == 0 {
            return None;
        }
        let (Some(month), Some(day)) = (month, day) else {
            if time.is_some() {
                return None;
            }
            let start = NaiveDate::from_ymd_opt(year as i32, month.unwrap_or(1), 1)?;
            let end = match month {
                None => NaiveDate::from_ymd_opt(year as i32 + 1, 1, 1),
                Some(12) => NaiveDate::from_ymd_opt(year as i32 + 1, 1, 1),
                Some(m) => NaiveDate::from_ymd_opt(year as i32, m + 1, 1),
            };
            return Some(Self::between(start.and_time(NaiveTime::MIN), end.map(|e| e.and_time(NaiveTime::MIN))));
        };
        let date = NaiveDate::from_ymd_opt(year as i32, month, day)?;
        let Some(time) = time else {
            let next = date.succ_opt().map(|d| d.and_time(NaiveTime::MIN));
            return Some(Self::between(date.and_time(NaiveTime::MIN), next));
        };
        let (clock, offset_secs) = split_zone(time)?;
        let mut fields = clock.split(':');
        let hour = digits(fields.next()?, 2)?;
        let minute = digits(fields.next()?, 2)?;
        let (second, fraction) = match fields.next() {
            None => (None, None),
            Some(s) => match s.split_once('.') {
                None => (Some(digits(s, 2)?), None),
                Some((whole, frac)) => (Some(digits(whole, 2)?), Some(frac)),
            },
        };
        if fields.next().is_some() {
            return None;
        }
        let (micros, unit) = match (second, fraction) {
            (None, _) => (0, 60_000_000),
            (Some(_), None) => (0, 1_000_000),
            (Some(_), Some(frac)) => {
                if frac.is_empty() || frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                let kept = &frac[..frac.len().min(6)];
                let scale = 10i64.pow(6 - kept.len() as u32);
                (kept.parse::<i64>().ok()? * scale, scale)
            }
        };
        let clock = NaiveTime::from_hms_micro_opt(hour, minute, second.unwrap_or(0), micros as u32)?;
        let local = date.and_time(clock);
        let lo = Utc.from_utc_datetime(&local).timestamp_micros() - offset_secs * 1_000_000;
        let hi = lo + unit - 1;
        (Self::MIN..=Self::MAX).contains(&lo).then_some(DateRange { lo, hi: hi.min(Self::MAX) })
    }

    /// From `start` up to (not including) `end`, or to [`DateRange::MAX`] past year 9999.
    fn between(start: NaiveDateTime, end: Option<NaiveDateTime>) -> Self {
        let lo = Utc.from_utc_datetime(&start).timestamp_micros();
        let hi = end.map_or(Self::MAX, |e| Utc.from_utc_datetime(&e).timestamp_micros() - 1);
        DateRange { lo, hi }
    }

    /// The year of the range's start, for diagnostics and tests.
    pub fn start_year(&self) -> i32 {
        Utc.timestamp_micros(self.lo).single().map_or(1, |t| t.year())
    }

    /// The range widened by `micros` at both ends, clamped to the representable instants.
    pub fn widened(&self, micros: i64) -> Self {
        DateRange { lo: (self.lo - micros).max(Self::MIN), hi: (self.hi + micros).min(Self::MAX) }
    }

    /// The range `ap` (approximately) searches for (search.html#prefix: "the recommended value
    /// for the approximation is … for a date, 10% of the gap between now and the date"): this
    /// range widened at both ends by a tenth of the distance from `now` (microseconds since the
    /// epoch) to its nearer end; itself when `now` falls inside it.
    pub fn approximately(&self, now: i64) -> Self {
        let gap = if now < self.lo { self.lo.saturating_sub(now) } else { now.saturating_sub(self.hi).max(0) };
        self.widened(gap / 10)
    }

    /// The length of the range in microseconds (0 for an instant).
    pub fn span(&self) -> i64 {
        self.hi - self.lo
    }

    /// The instant `micros` as a range, after adding a duration (for `ap` arithmetic).
    pub fn shifted(&self, by: Duration) -> Self {
        let d = by.num_microseconds().unwrap_or(0);
        DateRange { lo: (self.lo + d).clamp(Self::MIN, Self::MAX), hi: (self.hi + d).clamp(Self::MIN, Self::MAX) }
    }
}

/// Exactly `len` ASCII digits.
fn digits(s: &str, len: usize) -> Option<u32> {
    (s.len() == len && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok()).flatten()
}

/// Splits `hh:mm[:ss[.f]]` from its zone; returns the clock text and the zone offset in seconds.
fn split_zone(time: &str) -> Option<(&str, i64)> {
    if let Some(clock) = time.strip_suffix('Z') {
        return Some((clock, 0));
    }
    if let Some(at) = time.rfind(['+', '-']) {
        let (clock, zone) = time.split_at(at);
        let sign = if zone.starts_with('-') { -1 } else { 1 };
        let (h, m) = zone[1..].split_once(':')?;
        let (h, m) = (digits(h, 2)?, digits(m, 2)?);
        if h > 14 || m > 59 {
            return None;
        }
        return Some((clock, sign * i64::from(h * 3600 + m * 60)));
    }
    Some((time, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn micros(s: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(s).expect("rfc3339").timestamp_micros()
    }

    #[test]
    fn each_precision_covers_its_unit() {
        let year = DateRange::parse("2024").expect("a year");
        assert_eq!((year.lo, year.hi), (micros("2024-01-01T00:00:00Z"), micros("2025-01-01T00:00:00Z") - 1));
        let month = DateRange::parse("2024-02").expect("a month");
        assert_eq!((month.lo, month.hi), (micros("2024-02-01T00:00:00Z"), micros("2024-03-01T00:00:00Z") - 1));
        let december = DateRange::parse("2024-12").expect("december");
        assert_eq!(december.hi, micros("2025-01-01T00:00:00Z") - 1);
        let day = DateRange::parse("2024-02-29").expect("a leap day");
        assert_eq!((day.lo, day.hi), (micros("2024-02-29T00:00:00Z"), micros("2024-03-01T00:00:00Z") - 1));
        let minute = DateRange::parse("2024-05-01T10:00").expect("a minute");
        assert_eq!(minute.span(), 60_000_000 - 1);
        let second = DateRange::parse("2024-05-01T10:00:00+02:00").expect("a second");
        assert_eq!((second.lo, second.span()), (micros("2024-05-01T08:00:00Z"), 999_999));
        let millis = DateRange::parse("2024-05-01T10:00:00.250Z").expect("milliseconds");
        assert_eq!((millis.lo, millis.span()), (micros("2024-05-01T10:00:00.250Z"), 999));
        let nanos = DateRange::parse("2024-05-01T10:00:00.123456789Z").expect("nanoseconds, kept to micros");
        assert_eq!(nanos.span(), 0);
    }

    #[test]
    fn malformed_dates_are_refused() {
        for bad in [
            "",
            "24",
            "2024-1",
            "2024-13",
            "2024-02-30",
            "2024-05-01T",
            "2024-05-01T10",
            "2024-05-01T25:00",
            "2024-05-01T10:00:00+15:00",
            "0000",
            "2024-05-01T10:00:00.",
            "abcd",
            "2024--01",
        ] {
            assert_eq!(DateRange::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn periods_and_relations() {
        let start = DateRange::parse("2020-01-01");
        let end = DateRange::parse("2020-01-31");
        let january = DateRange::period(start, end).expect("a period");
        assert!(january.contains(&DateRange::parse("2020-01-15").expect("a day")));
        assert!(january.overlaps(&DateRange::parse("2020").expect("a year")));
        assert!(!january.overlaps(&DateRange::parse("2020-02").expect("a month")));
        let open = DateRange::period(start, None).expect("open end");
        assert_eq!(open.hi, DateRange::MAX);
        assert_eq!(DateRange::period(None, None), None);
        assert_eq!(DateRange::period(end, start), None);
        assert_eq!(DateRange::parse("9999").expect("the last year").hi, DateRange::MAX);
        assert_eq!(DateRange::parse("0001").expect("the first year").lo, DateRange::MIN);
    }

    #[test]
    fn approximately_widens_by_a_tenth_of_the_gap_to_now() {
        let day = DateRange::parse("2014-01-01").expect("a day");
        let now = micros("2024-01-01T00:00:00Z");
        let gap = now - day.hi;
        assert_eq!(day.approximately(now), DateRange { lo: day.lo - gap / 10, hi: day.hi + gap / 10 });
        let future = DateRange::parse("2034-01-01").expect("a day");
        assert_eq!(future.approximately(now).lo, future.lo - (future.lo - now) / 10);
        assert_eq!(day.approximately(day.lo + 1), day);
    }
}

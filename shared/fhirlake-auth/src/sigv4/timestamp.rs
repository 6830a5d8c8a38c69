//! The signing time: `X-Amz-Date` (`YYYYMMDDTHHMMSSZ`) or an RFC 1123 `Date` header.

use chrono::{DateTime, NaiveDateTime, Utc};

/// The SigV4 timestamp format.
pub(crate) const FORMAT: &str = "%Y%m%dT%H%M%SZ";

/// Parses a SigV4 timestamp strictly: exactly `YYYYMMDDTHHMMSSZ`.
pub(crate) fn parse_amz_date(value: &str) -> Option<DateTime<Utc>> {
    let bytes = value.as_bytes();
    let shape_ok =
        bytes.len() == 16 && bytes[8] == b'T' && bytes[15] == b'Z' && bytes[..8].iter().chain(&bytes[9..15]).all(u8::is_ascii_digit);
    if !shape_ok {
        return None;
    }
    NaiveDateTime::parse_from_str(value, FORMAT).ok().map(|t| t.and_utc())
}

/// Parses an HTTP `Date` header (RFC 1123, which RFC 2822 parsing covers).
pub(crate) fn parse_http_date(value: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc2822(value.trim()).ok().map(|t| t.with_timezone(&Utc))
}

/// Formats a time as a SigV4 timestamp.
pub(crate) fn format(time: DateTime<Utc>) -> String {
    time.format(FORMAT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn amz_date_is_strict() {
        let t = Utc.with_ymd_and_hms(2024, 2, 29, 23, 59, 1).unwrap();
        assert_eq!(parse_amz_date("20240229T235901Z"), Some(t));
        assert_eq!(format(t), "20240229T235901Z");
        for bad in ["", "20240229T235901", "2024-02-29T23:59:01Z", "20240230T000000Z", "2024022 T235901Z", "+0240229T235901Z"] {
            assert_eq!(parse_amz_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn http_date() {
        let t = Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap();
        assert_eq!(parse_http_date("Wed, 01 May 2024 12:00:00 GMT"), Some(t));
        assert_eq!(parse_http_date("yesterday"), None);
    }
}

//! Date values: dates, date-times and instants, Periods and Timings.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};

use super::str_member;

/// An open end of an interval (ISO 8601-2).
const OPEN: &str = "..";

/// Pushes dates as ISO strings (date-times in UTC) and Periods as `start/end` intervals.
pub(super) fn values(value: &Value, push: &mut impl FnMut(String)) {
    match value {
        Value::String(date) => push(normalise_date(date)),
        Value::Object(object) if object.contains_key("start") || object.contains_key("end") => {
            if let Some(interval) = period(object) {
                push(interval);
            }
        }
        Value::Object(object) => {
            // A Timing: its events, and the bounds of its repeat rule.
            if let Some(Value::Array(events)) = object.get("event") {
                for event in events.iter().filter_map(Value::as_str) {
                    push(normalise_date(event));
                }
            }
            if let Some(bounds) = object.get("repeat").and_then(|r| r.get("boundsPeriod")).and_then(Value::as_object) {
                if let Some(interval) = period(bounds) {
                    push(interval);
                }
            }
        }
        _ => {}
    }
}

/// `start/end`, with `..` for a missing end; `None` when both are missing.
fn period(object: &Map<String, Value>) -> Option<String> {
    let start = str_member(object, "start").map(normalise_date);
    let end = str_member(object, "end").map(normalise_date);
    if start.is_none() && end.is_none() {
        return None;
    }
    Some(format!("{}/{}", start.as_deref().unwrap_or(OPEN), end.as_deref().unwrap_or(OPEN)))
}

/// A date-time with a time part in UTC (`2024-05-01T12:00:00+02:00` → `2024-05-01T10:00:00Z`);
/// partial dates, and anything that does not parse, as written.
pub(crate) fn normalise_date(date: &str) -> String {
    if date.contains('T') {
        if let Ok(parsed) = DateTime::parse_from_rfc3339(date) {
            return parsed.with_timezone(&Utc).to_rfc3339_opts(SecondsFormat::AutoSi, true);
        }
    }
    date.to_string()
}

#[cfg(test)]
mod tests {
    use fhirlake_fhir::registry::SearchParamType::Date;
    use serde_json::json;

    use crate::normalise::values_of;

    #[test]
    fn dates_keep_their_precision_and_times_move_to_utc() {
        assert_eq!(values_of(Date, &json!("1974-12")), ["1974-12"]);
        assert_eq!(values_of(Date, &json!("1974-12-25")), ["1974-12-25"]);
        assert_eq!(values_of(Date, &json!("2024-05-01T12:00:00+02:00")), ["2024-05-01T10:00:00Z"]);
        assert_eq!(values_of(Date, &json!("2024-05-01T12:00:00.250Z")), ["2024-05-01T12:00:00.250Z"]);
    }

    #[test]
    fn periods_are_intervals_and_timings_give_events_and_bounds() {
        assert_eq!(values_of(Date, &json!({"start": "2020-01-01", "end": "2020-02-01"})), ["2020-01-01/2020-02-01"]);
        assert_eq!(values_of(Date, &json!({"start": "2020-01-01T00:00:00+01:00"})), ["2019-12-31T23:00:00Z/.."]);
        assert_eq!(values_of(Date, &json!({"end": "2021"})), ["../2021"]);
        let timing = json!({"event": ["2020-03-01", "2020-03-02"], "repeat": {"boundsPeriod": {"start": "2020-03-01"}}});
        assert_eq!(values_of(Date, &timing), ["2020-03-01", "2020-03-02", "2020-03-01/.."]);
        assert!(values_of(Date, &json!({"low": {"value": 1}})).is_empty());
    }
}

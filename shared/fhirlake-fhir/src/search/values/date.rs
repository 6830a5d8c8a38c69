//! Date values (R4 search.html#date): dates, date-times and instants to the range their
//! precision covers, Periods, and Timings (each event, and `repeat.boundsPeriod`).

use serde_json::{Map, Value};

use super::{has, member};
use crate::search::{DateRange, SearchValue};

/// Pushes the ranges of `element`.
pub(super) fn values(element: &Value, out: &mut Vec<SearchValue>) {
    match element {
        Value::String(date) => out.extend(DateRange::parse(date).map(SearchValue::Date)),
        Value::Object(object) if has(object, "start") || has(object, "end") => {
            out.extend(period(object).map(SearchValue::Date));
        }
        Value::Object(object) => {
            if let Some(Value::Array(events)) = member(object, "event") {
                out.extend(events.iter().filter_map(Value::as_str).filter_map(DateRange::parse).map(SearchValue::Date));
            }
            if let Some(Value::Object(bounds)) = member(object, "repeat").and_then(Value::as_object).and_then(|r| member(r, "boundsPeriod"))
            {
                out.extend(period(bounds).map(SearchValue::Date));
            }
        }
        _ => {}
    }
}

/// A Period's range (a missing end is open: R4 datatypes "Period": an open end means the
/// period is ongoing); `None` when a bound present does not parse.
fn period(object: &Map<String, Value>) -> Option<DateRange> {
    let bound = |name: &str| match member(object, name) {
        None | Some(Value::Null) => Some(None),
        Some(Value::String(s)) => DateRange::parse(s).map(Some),
        Some(_) => None,
    };
    DateRange::period(bound("start")?, bound("end")?)
}

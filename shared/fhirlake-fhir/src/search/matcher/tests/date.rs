//! search.html#date and the prefix table (search.html#prefix), row by row.

use super::*;

/// An Observation whose `date` is `effective` (a dateTime string or a Period object).
fn observation(effective: Value) -> Value {
    let mut o = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}});
    let key = if effective.is_object() { "effectivePeriod" } else { "effectiveDateTime" };
    o[key] = effective;
    o
}

fn period(start: &str, end: &str) -> Value {
    json!({"start": start, "end": end})
}

fn date_hit(target: &Value, prefix: Prefix, search: &str) -> bool {
    hit(&observation(target.clone()), "date", Modifier::None, vec![date(prefix, search)])
}

/// Targets around the search value 2013-01-14 (a whole day, UTC).
fn targets() -> [(&'static str, Value); 7] {
    [
        ("inside", json!("2013-01-14T10:00:00Z")),
        ("same", json!("2013-01-14")),
        ("straddles the end", period("2013-01-14T12:00:00Z", "2013-01-15T12:00:00Z")),
        ("straddles the start", period("2013-01-13T12:00:00Z", "2013-01-14T12:00:00Z")),
        ("after", json!("2013-01-15")),
        ("before", json!("2013-01-13")),
        ("encloses", json!("2013")),
    ]
}

/// Checks one prefix against every target: `expected` in the order of [`targets`].
fn row(prefix: Prefix, expected: [bool; 7]) {
    for ((name, target), want) in targets().iter().zip(expected) {
        assert_eq!(date_hit(target, prefix, "2013-01-14"), want, "{prefix:?} 2013-01-14 against the target that {name}");
    }
}

#[test]
fn eq_the_search_range_fully_contains_the_target() {
    row(Prefix::Eq, [true, true, false, false, false, false, false]);
}

#[test]
fn ne_the_search_range_does_not_fully_contain_the_target() {
    row(Prefix::Ne, [false, false, true, true, true, true, true]);
}

#[test]
fn gt_the_range_above_the_search_value_intersects_the_target() {
    row(Prefix::Gt, [false, false, true, false, true, false, true]);
}

#[test]
fn lt_the_range_below_the_search_value_intersects_the_target() {
    row(Prefix::Lt, [false, false, false, true, false, true, true]);
}

#[test]
fn ge_above_intersects_or_the_search_range_contains_the_target() {
    row(Prefix::Ge, [true, true, true, false, true, false, true]);
}

#[test]
fn le_below_intersects_or_the_search_range_contains_the_target() {
    row(Prefix::Le, [true, true, false, true, false, true, true]);
}

#[test]
fn sa_no_overlap_and_the_target_lies_above() {
    row(Prefix::Sa, [false, false, false, false, true, false, false]);
}

#[test]
fn eb_no_overlap_and_the_target_lies_below() {
    row(Prefix::Eb, [false, false, false, false, false, true, false]);
}

#[test]
fn ap_widens_the_search_range_by_a_tenth_of_the_gap_to_now() {
    // NOW is 2024-01-01: the gap to 2013-01-14 is about 11 years, so about 13 months either side.
    row(Prefix::Ap, [true; 7]);
    assert!(date_hit(&json!("2012-03-01"), Prefix::Ap, "2013-01-14"));
    assert!(date_hit(&json!("2014-01-31"), Prefix::Ap, "2013-01-14"));
    assert!(!date_hit(&json!("2011-06-01"), Prefix::Ap, "2013-01-14"));
    assert!(!date_hit(&json!("2014-06-01"), Prefix::Ap, "2013-01-14"));
    // A search range that includes now is not widened.
    assert!(date_hit(&json!("2024-01-01"), Prefix::Ap, "2024"));
    assert!(!date_hit(&json!("2023-12-31"), Prefix::Ap, "2024"));
}

#[test]
fn spec_examples() {
    // "[parameter]=eq2013-01-14": 2013-01-14T00:00 matches (obviously), 2013-01-14T10:00
    // matches, 2013-01-15T00:00 does not match - it's not in the range.
    assert!(date_hit(&json!("2013-01-14T00:00:00Z"), Prefix::Eq, "2013-01-14"));
    assert!(date_hit(&json!("2013-01-14T10:00:00Z"), Prefix::Eq, "2013-01-14"));
    assert!(!date_hit(&json!("2013-01-15T00:00:00Z"), Prefix::Eq, "2013-01-14"));
    // "[parameter]=ne2013-01-14": 2013-01-15T00:00 matches - it's not in the range;
    // 2013-01-14T00:00 and 2013-01-14T10:00 do not match - they're in the range.
    assert!(date_hit(&json!("2013-01-15T00:00:00Z"), Prefix::Ne, "2013-01-14"));
    assert!(!date_hit(&json!("2013-01-14T00:00:00Z"), Prefix::Ne, "2013-01-14"));
    assert!(!date_hit(&json!("2013-01-14T10:00:00Z"), Prefix::Ne, "2013-01-14"));
    // "[parameter]=lt2013-01-14T10:00": 2013-01-14 matches, because it includes the part of
    // 14-Jan 2013 before 10am.
    assert!(date_hit(&json!("2013-01-14"), Prefix::Lt, "2013-01-14T10:00Z"));
    // "[parameter]=gt2013-01-14T10:00": 2013-01-14 matches, because it includes the part of
    // 14-Jan 2013 after 10am.
    assert!(date_hit(&json!("2013-01-14"), Prefix::Gt, "2013-01-14T10:00Z"));
    // "[parameter]=ge2013-03-14": "from 21-Jan 2013 onwards" is included, because that period
    // may include times after 14-Mar 2013.
    let onwards = json!({"start": "2013-01-21"});
    assert!(date_hit(&onwards, Prefix::Ge, "2013-03-14"));
    // … and le2013-03-14 includes it too: it may include times before 14-Mar 2013.
    assert!(date_hit(&onwards, Prefix::Le, "2013-03-14"));
    // An open period is not inside any bounded search range.
    assert!(!date_hit(&onwards, Prefix::Eq, "2013"));
}

#[test]
fn precision_and_time_zones() {
    // A date-time in another zone is the same instant: 2013-01-14T23:30-05:00 is 15 Jan UTC.
    assert!(date_hit(&json!("2013-01-14T23:30:00-05:00"), Prefix::Eq, "2013-01-15"));
    assert!(!date_hit(&json!("2013-01-14T23:30:00-05:00"), Prefix::Eq, "2013-01-14"));
    // A search value with a zone, against a UTC target.
    assert!(date_hit(&json!("2013-01-14T15:00:00Z"), Prefix::Eq, "2013-01-14T10:00-05:00"));
    // Coarser target than the search value: a day is not inside a minute.
    assert!(!date_hit(&json!("2013-01-14"), Prefix::Eq, "2013-01-14T10:00Z"));
    assert!(date_hit(&json!("2013-01-14"), Prefix::Ne, "2013-01-14T10:00Z"));
    // Year and month precision.
    assert!(date_hit(&json!("2013-06-30"), Prefix::Eq, "2013"));
    assert!(date_hit(&json!("2013-02-28T23:59:59Z"), Prefix::Eq, "2013-02"));
    assert!(!date_hit(&json!("2013-03-01T00:00:00Z"), Prefix::Eq, "2013-02"));
}

#[test]
fn periods_and_resources() {
    let january = period("2020-01-01", "2020-01-31");
    assert!(date_hit(&january, Prefix::Eq, "2020-01"));
    assert!(!date_hit(&january, Prefix::Eq, "2020-01-15"));
    assert!(date_hit(&january, Prefix::Ge, "2020-01-15"));
    assert!(date_hit(&january, Prefix::Le, "2020-01-15"));
    assert!(date_hit(&january, Prefix::Sa, "2019-12-31"));
    assert!(!date_hit(&january, Prefix::Sa, "2020-01-01"));
    assert!(date_hit(&january, Prefix::Eb, "2020-02-01"));
    assert!(!date_hit(&january, Prefix::Eb, "2020-01-31"));
    // An Encounter still in progress (no end) is after every date past its start.
    let encounter = json!({"resourceType": "Encounter", "status": "in-progress", "class": {"code": "AMB"}, "period": {"start": "2015-01-17T16:00:00+10:00"}});
    assert!(hit(&encounter, "date", Modifier::None, vec![date(Prefix::Gt, "2030")]));
    assert!(!hit(&encounter, "date", Modifier::None, vec![date(Prefix::Lt, "2015-01-17")]));
    assert!(hit(&encounter, "date", Modifier::None, vec![date(Prefix::Lt, "2015-01-18")]));
    // Patient birthdate, Condition onset, _lastUpdated.
    let patient = json!({"resourceType": "Patient", "birthDate": "1974-12-25", "meta": {"lastUpdated": "2024-05-01T10:00:00.123Z"}});
    assert!(hit(&patient, "birthdate", Modifier::None, vec![date(Prefix::Eq, "1974")]));
    assert!(hit(&patient, "birthdate", Modifier::None, vec![date(Prefix::Lt, "1975")]));
    assert!(!hit(&patient, "birthdate", Modifier::None, vec![date(Prefix::Gt, "1974-12-25")]));
    assert!(hit(&patient, "_lastUpdated", Modifier::None, vec![date(Prefix::Ge, "2024-05-01T10:00:00Z")]));
    assert!(hit(&patient, "_lastUpdated", Modifier::None, vec![date(Prefix::Eq, "2024-05-01T10:00:00.123Z")]));
    assert!(!hit(&patient, "_lastUpdated", Modifier::None, vec![date(Prefix::Gt, "2024-05-01T10:00:01Z")]));
    let condition = json!({"resourceType": "Condition", "subject": {"reference": "Patient/1"}, "onsetDateTime": "2012-05-24"});
    assert!(hit(&condition, "onset-date", Modifier::None, vec![date(Prefix::Ge, "2012-01-01"), date(Prefix::Eq, "1999")]));
}

#[test]
fn other_modifiers_and_values_do_not_match() {
    let target = json!("2013-01-14");
    let o = observation(target);
    assert!(!hit(&o, "date", Modifier::Exact, vec![date(Prefix::Eq, "2013-01-14")]));
    assert!(!hit(&o, "date", Modifier::None, vec![s("2013-01-14")]));
}

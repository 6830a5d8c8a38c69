//! search.html#number.

use super::*;

/// A RiskAssessment whose `probability` is `value` (a JSON number as written).
fn risk(value: &str) -> Value {
    let number: Value = serde_json::from_str(value).expect("a number");
    json!({"resourceType": "RiskAssessment", "status": "final", "subject": {"reference": "Patient/1"}, "prediction": [{"probabilityDecimal": number}]})
}

fn number_hit(target: &str, prefix: Prefix, search: &str) -> bool {
    hit(&risk(target), "probability", Modifier::None, vec![number(prefix, search)])
}

/// Checks `prefix search` against each `(target, expected)`.
fn row(prefix: Prefix, search: &str, cases: &[(&str, bool)]) {
    for (target, want) in cases {
        assert_eq!(number_hit(target, prefix, search), *want, "{prefix:?}{search} against {target}");
    }
}

#[test]
fn eq_searches_the_implicit_range() {
    // "[parameter]=100: values that equal 100, to 3 significant figures precision, so this is
    // actually searching for values in the range [99.5 ... 100.5)".
    row(
        Prefix::Eq,
        "100",
        &[("99.5", true), ("99.7", true), ("100", true), ("100.4", true), ("100.49", true), ("100.5", false), ("99.4", false)],
    );
    // "[parameter]=100.00: ... [99.995 ... 100.005)".
    row(Prefix::Eq, "100.00", &[("99.995", true), ("100.004", true), ("100.005", false), ("99.99", false), ("100", true)]);
    // "[parameter]=1e2": one significant figure (this crate's Decimal: [50, 150)).
    row(Prefix::Eq, "1e2", &[("50", true), ("149", true), ("150", false), ("49.9", false)]);
    // Integers.
    row(Prefix::Eq, "0", &[("0", true), ("0.4", true), ("-0.5", true), ("0.5", false), ("1", false)]);
}

#[test]
fn ne_is_outside_the_implicit_range() {
    // "[parameter]=ne100: values that are not equal to 100 (actually, in the range 99.5 to 100.5)".
    row(Prefix::Ne, "100", &[("99.5", false), ("100.4", false), ("100.5", true), ("99.4", true), ("0", true)]);
}

#[test]
fn gt_lt_ge_le_compare_exactly() {
    // "lt100: values that are less than exactly 100" and so on.
    row(Prefix::Lt, "100", &[("99.9", true), ("100", false), ("100.0", false), ("-5", true)]);
    row(Prefix::Le, "100", &[("100", true), ("99", true), ("100.1", false)]);
    row(Prefix::Gt, "100", &[("100.1", true), ("100", false), ("99.9", false)]);
    row(Prefix::Ge, "100", &[("100", true), ("100.00", true), ("99.9", false), ("1000", true)]);
    row(Prefix::Gt, "0.8", &[("0.81", true), ("0.8", false)]);
}

#[test]
fn sa_and_eb_lie_beyond_the_implicit_range() {
    // Prefix table: "the range of the search value does not overlap with the range of the target
    // value, and the range above [below] the search value contains the range of the target value".
    row(Prefix::Sa, "100", &[("100.5", true), ("100.4", false), ("101", true), ("99", false)]);
    row(Prefix::Eb, "100", &[("99.4", true), ("99.5", false), ("100", false), ("-1", true)]);
}

#[test]
fn ap_is_within_ten_percent() {
    // "the recommended value for the approximation is 10% of the stated value".
    row(Prefix::Ap, "100", &[("90", true), ("110", true), ("89.9", false), ("110.1", false), ("100", true)]);
    row(Prefix::Ap, "-10", &[("-11", true), ("-9", true), ("-12", false)]);
    row(Prefix::Ap, "0", &[("0.4", true), ("0.5", false)]);
}

#[test]
fn resources_without_a_number_do_not_match() {
    let range = json!({"resourceType": "RiskAssessment", "status": "final", "prediction": [{"probabilityRange": {"low": {"value": 0}, "high": {"value": 1}}}]});
    assert!(!hit(&range, "probability", Modifier::None, vec![number(Prefix::Ne, "5")]));
    assert!(!hit(&risk("5"), "probability", Modifier::Exact, vec![number(Prefix::Eq, "5")]));
    assert!(!hit(&risk("5"), "probability", Modifier::None, vec![s("5")]));
}

//! Numbers (R4 search.html#number). The search value stands for the range its precision
//! implies (`100` is [99.5, 100.5)); the target is the value the resource holds, compared
//! exactly (a resource's decimal is a measurement as recorded, its precision is not a range to
//! search within: `eq100` matches 99.7 and 100.4).
//!
//! The spec's rows, read for a target value `t` and a search value `v` with range [lo, hi):
//! - `eq` (`[parameter]=100`): "values that equal 100, to 3 significant figures precision, so
//!   this is actually searching for values in the range [99.5 ... 100.5)": lo ≤ t < hi.
//! - `ne`: "values that are not equal to 100 (actually, in the range 99.5 to 100.5)": not eq.
//! - `gt`, `lt`, `ge`, `le`: "values that are greater than exactly 100" and so on: t > v,
//!   t < v, t ≥ v, t ≤ v.
//! - `sa`, `eb` (prefix table: "the range of the search value does not overlap with the range of
//!   the target value, and the range above [below] the search value contains the range of the
//!   target value"): t ≥ hi, t < lo, beyond the search value's implicit range.
//! - `ap` ("the recommended value for the approximation is 10% of the stated value"):
//!   |t − v| ≤ |v| / 10, or t within the implicit range (so `ap0` matches [−0.5, 0.5)).

use crate::search::{Decimal, Modifier, Prefix, QueryValue, SearchValue};

/// Whether a Number value matches `[prefix]number`.
pub(super) fn matches(modifier: &Modifier, query: &QueryValue, values: &[SearchValue]) -> bool {
    let (Modifier::None, QueryValue::Number { prefix, value }) = (modifier, query) else { return false };
    values.iter().any(|v| matches!(v, SearchValue::Number(target) if compare(*prefix, value, target)))
}

/// The prefix rule for a target value and a search value (shared with quantities).
pub(super) fn compare(prefix: Prefix, search: &Decimal, target: &Decimal) -> bool {
    let (lo, hi) = search.bounds();
    let in_range = lo <= *target && *target < hi;
    match prefix {
        Prefix::Eq => in_range,
        Prefix::Ne => !in_range,
        Prefix::Gt => target > search,
        Prefix::Lt => target < search,
        Prefix::Ge => target >= search,
        Prefix::Le => target <= search,
        Prefix::Sa => *target >= hi,
        Prefix::Eb => *target < lo,
        Prefix::Ap => in_range || approximately(search, target),
    }
}

/// |target − search| ≤ 10% of |search|.
fn approximately(search: &Decimal, target: &Decimal) -> bool {
    let Some(tenth) = Decimal::parse("0.1") else { return false };
    let (Some(margin), Some(gap)) = (search.abs().scaled(&tenth), target.sub(search)) else { return false };
    gap.abs() <= margin
}

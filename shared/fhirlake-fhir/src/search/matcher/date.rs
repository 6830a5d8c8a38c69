//! Dates (R4 search.html#date). Both sides are ranges: the search value covers its precision's
//! unit (`2013-01-14` is the whole day), the target value its own precision, a Period from
//! start to end (open ends unbounded). The prefix table of search.html#prefix, for the search
//! range S and the target range T:
//!
//! | prefix | rule | here |
//! |---|---|---|
//! | `eq` | "the range of the search value fully contains the range of the target value" | S ⊇ T |
//! | `ne` | "the range of the search value does not fully contain the range of the target value" | not S ⊇ T |
//! | `gt` | "the range above the search value intersects (i.e. overlaps) with the range of the target value" | T.hi > S.hi |
//! | `lt` | "the range below the search value intersects (i.e. overlaps) with the range of the target value" | T.lo < S.lo |
//! | `ge` | "the range above the search value intersects … or the range of the search value fully contains the range of the target value" | T.hi > S.hi or S ⊇ T |
//! | `le` | "the range below the search value intersects … or the range of the search value fully contains the range of the target value" | T.lo < S.lo or S ⊇ T |
//! | `sa` | "the range of the search value does not overlap with the range of the target value, and the range above the search value contains the range of the target value" | T.lo > S.hi |
//! | `eb` | "the range of the search value does not overlap with the range of the target value, and the range below the search value contains the range of the target value" | T.hi < S.lo |
//! | `ap` | "approximately the same … 10% of the gap between now and the date" | T overlaps S widened by a tenth of the distance from now to S |

use crate::search::{DateRange, Modifier, Prefix, QueryValue, SearchValue};

/// Whether a Date value matches `[prefix]date`.
pub(super) fn matches(modifier: &Modifier, query: &QueryValue, values: &[SearchValue], now: i64) -> bool {
    let (Modifier::None, QueryValue::Date { prefix, value }) = (modifier, query) else { return false };
    values.iter().any(|v| matches!(v, SearchValue::Date(target) if compare(*prefix, value, target, now)))
}

/// The prefix rule for the search range `s` and the target range `t`.
pub(super) fn compare(prefix: Prefix, s: &DateRange, t: &DateRange, now: i64) -> bool {
    match prefix {
        Prefix::Eq => s.contains(t),
        Prefix::Ne => !s.contains(t),
        Prefix::Gt => t.hi > s.hi,
        Prefix::Lt => t.lo < s.lo,
        Prefix::Ge => t.hi > s.hi || s.contains(t),
        Prefix::Le => t.lo < s.lo || s.contains(t),
        Prefix::Sa => t.lo > s.hi,
        Prefix::Eb => t.hi < s.lo,
        Prefix::Ap => s.approximately(now).overlaps(t),
    }
}

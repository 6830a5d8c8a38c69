//! Whether a resource's values for one parameter satisfy a criterion (R4 search.html), one
//! small module per parameter type. Pure: the values come from [`values::extract`], the
//! criterion from [`query`]; chains and `_has` (the criterion's `path`) are the caller's.
//!
//! Modifiers that apply to every type:
//! - `:missing=true` matches when there are no values, `:missing=false` when there are some
//!   (search.html#missing).
//! - `:not` (search.html#token, `:not` "reverses the code matching", "this includes resources
//!   that have no value for the parameter") matches when no value matches any of the OR-ed
//!   values: `gender:not=male,female` means neither.
//!
//! Modifiers that need terminology or hierarchies (`:in`, `:not-in`, token `:above` and
//! `:below`, reference `:above`/`:below`) never match here: the query parser should refuse
//! them. A modifier a type does not define (`:exact` on a date) never matches.
//!
//! The one rule that depends on the clock is `ap` on dates ("10% of the gap between now and
//! the date"): [`matches()`] reads the clock for it, [`matches_at`] takes `now`.
//!
//! [`values::extract`]: super::values::extract
//! [`query`]: super::query

mod composite;
mod date;
mod number;
mod quantity;
mod reference;
mod string;
mod token;
mod uri;

use super::{Criterion, Modifier, QueryValue, SearchValue};
use crate::registry::{SearchParamDef, SearchParamType};

/// Whether values extracted for one parameter satisfy the criterion's modifier and at least one
/// of its OR-ed values (the chain/_has `path` of the criterion is NOT handled here: the caller
/// resolves it). `values` is what `extract` returned for `criterion.param`.
pub fn matches(criterion: &Criterion, values: &[SearchValue]) -> bool {
    matches_at(criterion, values, now())
}

/// [`matches()`], with the current instant (microseconds since the Unix epoch, as in
/// [`DateRange`](super::DateRange)) given rather than read from the clock.
pub fn matches_at(criterion: &Criterion, values: &[SearchValue], now: i64) -> bool {
    match criterion.modifier {
        // `:not` is NOT(any), not any(NOT): see the module documentation.
        Modifier::Not => !criterion.values.iter().any(|q| matches_value_at(criterion.param, &Modifier::None, q, values, now)),
        _ => criterion.values.iter().any(|q| matches_value_at(criterion.param, &criterion.modifier, q, values, now)),
    }
}

/// The same for one query value (for callers that need per-value matching).
pub fn matches_value(param: &SearchParamDef, modifier: &Modifier, query: &QueryValue, values: &[SearchValue]) -> bool {
    matches_value_at(param, modifier, query, values, now())
}

/// [`matches_value`], with the current instant given (see [`matches_at`]).
pub fn matches_value_at(param: &SearchParamDef, modifier: &Modifier, query: &QueryValue, values: &[SearchValue], now: i64) -> bool {
    match (modifier, query) {
        (Modifier::Missing, QueryValue::Missing(missing)) => *missing == values.is_empty(),
        (Modifier::Missing, _) | (_, QueryValue::Missing(_)) => false,
        (Modifier::Not, _) => !matches_value_at(param, &Modifier::None, query, values, now),
        _ => match param.kind {
            SearchParamType::Number => number::matches(modifier, query, values),
            SearchParamType::Date => date::matches(modifier, query, values, now),
            SearchParamType::String => string::matches(param.code, modifier, query, values),
            SearchParamType::Token => token::matches(modifier, query, values),
            SearchParamType::Reference => reference::matches(modifier, query, values),
            SearchParamType::Quantity => quantity::matches(modifier, query, values),
            SearchParamType::Uri => uri::matches(modifier, query, values),
            SearchParamType::Composite => composite::matches(param, modifier, query, values, now),
            SearchParamType::Special => false,
        },
    }
}

/// The current instant in microseconds since the Unix epoch.
fn now() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

#[cfg(test)]
mod tests;

//! Strings (R4 search.html#string): "by default, a field matches a string query if the value of
//! the field equals or starts with the supplied parameter value, after both have been
//! normalized by case and accent"; `:exact` "the search parameter value [is] an exact match,
//! including case and accents"; `:contains` "the value of the field contains the supplied
//! parameter value anywhere", case and accent insensitive. Folding is [`fold`].
//!
//! `_text` and `_content` are full-text searches ("search on the narrative", "search on the
//! entire content of the resource"; R4 leaves the matching to the server): a value is the
//! whole narrative or a whole string, so their default is `:contains`, not starts-with.

use crate::search::values::fold;
use crate::search::{Modifier, QueryValue, SearchValue};

/// The full-text parameters.
const FULL_TEXT: [&str; 2] = ["_text", "_content"];

/// Whether a String value matches the query string under `modifier`.
pub(super) fn matches(code: &str, modifier: &Modifier, query: &QueryValue, values: &[SearchValue]) -> bool {
    let QueryValue::String(query) = query else { return false };
    let strings = values.iter().filter_map(|v| match v {
        SearchValue::String(s) => Some(s.as_str()),
        _ => None,
    });
    let full_text = FULL_TEXT.contains(&code);
    match modifier {
        Modifier::None if !full_text => {
            let query = fold(query);
            strings.map(fold).any(|s| s.starts_with(&query))
        }
        Modifier::Exact => strings.into_iter().any(|s| s == query),
        Modifier::None | Modifier::Contains => {
            let query = fold(query);
            strings.map(fold).any(|s| s.contains(&query))
        }
        _ => false,
    }
}

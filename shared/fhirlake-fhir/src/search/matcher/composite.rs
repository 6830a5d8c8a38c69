//! Composites (R4 search.html#composite): `code$value` "matches when both parts match the same
//! item": every component of the query value matches the values of its component within ONE
//! item the composite's expression selected, by the rules of the component's own type.

use crate::registry::SearchParamDef;
use crate::search::{Modifier, QueryValue, SearchValue};

/// Whether a Composite value matches the `$`-separated query value.
pub(super) fn matches(param: &SearchParamDef, modifier: &Modifier, query: &QueryValue, values: &[SearchValue], now: i64) -> bool {
    let (Modifier::None, QueryValue::Composite(parts)) = (modifier, query) else { return false };
    let definitions: Vec<Option<&SearchParamDef>> = param.component_defs().map(|(_, def)| def).collect();
    if parts.len() != definitions.len() {
        return false;
    }
    values.iter().any(|v| match v {
        SearchValue::Composite(items) if items.len() == parts.len() => parts
            .iter()
            .zip(&definitions)
            .zip(items)
            .all(|((part, def), item)| def.is_some_and(|def| super::matches_value_at(def, &Modifier::None, part, item, now))),
        _ => false,
    })
}

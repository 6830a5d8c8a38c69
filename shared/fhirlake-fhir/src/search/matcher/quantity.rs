//! Quantities (R4 search.html#quantity): `[prefix][number]|[system]|[code]`. The number is
//! compared as a number parameter's ([`super::number`]). Then:
//! - `system|code`: "the system and code of the quantity are both matched";
//! - `||code` (no system): "the code or the unit" of the quantity;
//! - a bare number: any unit.
//!
//! Units are not converted (no UCUM canonical forms): `5.4|http://unitsofmeasure.org|mg`
//! does not match `5400|http://unitsofmeasure.org|ug`.

use super::number::compare;
use crate::search::{Modifier, Prefix, QueryValue, SearchValue};

/// Whether a Quantity value matches the query.
pub(super) fn matches(modifier: &Modifier, query: &QueryValue, values: &[SearchValue]) -> bool {
    if *modifier != Modifier::None {
        return false;
    }
    let (prefix, value, system, code) = match query {
        QueryValue::Quantity { prefix, value, system, code } => (*prefix, value, system.as_deref(), code.as_deref()),
        QueryValue::Number { prefix, value } => (*prefix, value, None, None),
        _ => return false,
    };
    values.iter().any(|v| quantity_matches(prefix, value, system.filter(|s| !s.is_empty()), code, v))
}

/// Whether the stored value `v` matches the number, system and code asked for.
fn quantity_matches(prefix: Prefix, search: &crate::search::Decimal, system: Option<&str>, code: Option<&str>, v: &SearchValue) -> bool {
    let SearchValue::Quantity { value, system: s, code: c, unit } = v else { return false };
    let unit_ok = match (system, code) {
        (system, None) => system.is_none_or(|system| s.as_deref() == Some(system)),
        (Some(system), Some(code)) => s.as_deref() == Some(system) && c.as_deref() == Some(code),
        (None, Some(code)) => c.as_deref() == Some(code) || unit.as_deref() == Some(code),
    };
    unit_ok && compare(prefix, search, value)
}

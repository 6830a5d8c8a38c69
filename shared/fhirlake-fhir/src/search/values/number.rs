//! Number values (R4 search.html#number): integers and decimals, exactly.

use serde_json::Value;

use crate::search::{Decimal, SearchValue};

/// Pushes the number of `element`.
pub(super) fn values(element: &Value, out: &mut Vec<SearchValue>) {
    if let Value::Number(n) = element {
        out.extend(Decimal::from_json(n).map(SearchValue::Number));
    }
}

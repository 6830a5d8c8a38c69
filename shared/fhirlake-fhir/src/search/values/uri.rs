//! Uri values (R4 search.html#uri): uri, url and canonical, as written.

use serde_json::Value;

use crate::search::SearchValue;

/// Pushes the uri (uris are case-sensitive: kept as written).
pub(super) fn values(element: &Value, out: &mut Vec<SearchValue>) {
    if let Value::String(uri) = element {
        if !uri.is_empty() {
            out.push(SearchValue::Uri(uri.clone()));
        }
    }
}

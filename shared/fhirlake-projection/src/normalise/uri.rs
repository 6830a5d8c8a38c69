//! Uri values.

use serde_json::Value;

/// Pushes the uri as written (uris are case-sensitive).
pub(super) fn values(value: &Value, push: &mut impl FnMut(String)) {
    if let Value::String(uri) = value {
        push(uri.clone());
    }
}

#[cfg(test)]
mod tests {
    use fhirlake_fhir::registry::SearchParamType::Uri;
    use serde_json::json;

    use crate::normalise::values_of;

    #[test]
    fn uris_as_written() {
        assert_eq!(values_of(Uri, &json!("http://Example.org/ValueSet/X")), ["http://Example.org/ValueSet/X"]);
        assert!(values_of(Uri, &json!(1)).is_empty());
    }
}

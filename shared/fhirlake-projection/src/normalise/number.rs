//! Number values.

use serde_json::Value;

/// Pushes an integer or decimal as JSON writes it.
pub(super) fn values(value: &Value, push: &mut impl FnMut(String)) {
    if let Value::Number(n) = value {
        push(n.to_string());
    }
}

#[cfg(test)]
mod tests {
    use fhirlake_fhir::registry::SearchParamType::Number;
    use serde_json::json;

    use crate::normalise::values_of;

    #[test]
    fn numbers_as_written() {
        assert_eq!(values_of(Number, &json!(3)), ["3"]);
        assert_eq!(values_of(Number, &json!(0.25)), ["0.25"]);
        assert!(values_of(Number, &json!({"low": {"value": 1}})).is_empty());
    }
}

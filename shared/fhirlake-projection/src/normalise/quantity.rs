//! Quantity values: `value|system|code`.

use serde_json::Value;

use super::str_member;

/// The code system of Money's currency codes.
const CURRENCY_SYSTEM: &str = "urn:iso:std:iso:4217";

/// Pushes `value|system|code` for a Quantity (code, else unit) or Money.
pub(super) fn values(value: &Value, push: &mut impl FnMut(String)) {
    let Value::Object(object) = value else { return };
    let Some(Value::Number(number)) = object.get("value") else { return };
    let (system, code) = match str_member(object, "currency") {
        Some(currency) => (CURRENCY_SYSTEM, currency),
        None => {
            (str_member(object, "system").unwrap_or(""), str_member(object, "code").or_else(|| str_member(object, "unit")).unwrap_or(""))
        }
    };
    push(format!("{number}|{system}|{code}"));
}

#[cfg(test)]
mod tests {
    use fhirlake_fhir::registry::SearchParamType::Quantity;
    use serde_json::json;

    use crate::normalise::values_of;

    #[test]
    fn quantities_and_money() {
        let q = json!({"value": 5.4, "unit": "mmol/l", "system": "http://unitsofmeasure.org", "code": "mmol/L"});
        assert_eq!(values_of(Quantity, &q), ["5.4|http://unitsofmeasure.org|mmol/L"]);
        assert_eq!(values_of(Quantity, &json!({"value": 72, "unit": "beats/min"})), ["72||beats/min"]);
        assert_eq!(values_of(Quantity, &json!({"value": 10.5, "currency": "EUR"})), ["10.5|urn:iso:std:iso:4217|EUR"]);
        assert!(values_of(Quantity, &json!({"unit": "mg"})).is_empty());
    }
}

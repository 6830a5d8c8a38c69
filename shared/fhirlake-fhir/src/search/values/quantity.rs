//! Quantity values (R4 search.html#quantity): Quantity and its profiles (Age, Duration,
//! Count, Distance, SimpleQuantity, MoneyQuantity), and Money.

use serde_json::Value;

use super::{member, str_member};
use crate::search::{Decimal, SearchValue};

/// The code system of Money's currencies (ISO 4217).
const CURRENCY_SYSTEM: &str = "urn:iso:std:iso:4217";

/// Pushes a Quantity's value, system, code and unit, or a Money's value and currency.
pub(super) fn values(element: &Value, out: &mut Vec<SearchValue>) {
    let Value::Object(object) = element else { return };
    let Some(Value::Number(number)) = member(object, "value") else { return };
    let Some(value) = Decimal::from_json(number) else { return };
    let owned = |name: &str| str_member(object, name).map(str::to_string);
    let value = match str_member(object, "currency") {
        Some(currency) => {
            SearchValue::Quantity { value, system: Some(CURRENCY_SYSTEM.to_string()), code: Some(currency.to_string()), unit: None }
        }
        None => SearchValue::Quantity { value, system: owned("system"), code: owned("code"), unit: owned("unit") },
    };
    out.push(value);
}

//! Mapping between port items and DynamoDB attribute maps.

use std::collections::HashMap;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use fhirlake_ports::{AttrValue, Attrs, Condition, Item, Key, StorageError, StorageResult};

/// The partition key attribute.
pub(crate) const PK: &str = "pk";
/// The sort key attribute.
pub(crate) const SK: &str = "sk";

/// A DynamoDB attribute map.
pub(crate) type AttrMap = HashMap<String, AttributeValue>;

/// The key as a DynamoDB key map.
pub(crate) fn key_map(key: &Key) -> AttrMap {
    HashMap::from([(PK.to_string(), AttributeValue::S(key.pk.clone())), (SK.to_string(), AttributeValue::S(key.sk.clone()))])
}

/// One port value as a DynamoDB value.
pub(crate) fn to_attribute(value: &AttrValue) -> AttributeValue {
    match value {
        AttrValue::S(s) => AttributeValue::S(s.clone()),
        AttrValue::N(n) => AttributeValue::N(n.to_string()),
        AttrValue::B(b) => AttributeValue::B(Blob::new(b.clone())),
        AttrValue::Bool(b) => AttributeValue::Bool(*b),
    }
}

/// The whole item as a DynamoDB attribute map. Errors: `Invalid` when an attribute reuses a
/// key attribute's name.
pub(crate) fn item_map(item: &Item) -> StorageResult<AttrMap> {
    let mut map = key_map(&item.key);
    for (name, value) in &item.attrs {
        if name == PK || name == SK {
            return Err(StorageError::invalid("an attribute may not be named like a key attribute"));
        }
        map.insert(name.clone(), to_attribute(value));
    }
    Ok(map)
}

/// A DynamoDB value as a port value. Errors: `Internal` for types fhirlake never writes.
fn from_attribute(name: &str, value: AttributeValue) -> StorageResult<AttrValue> {
    match value {
        AttributeValue::S(s) => Ok(AttrValue::S(s)),
        AttributeValue::N(n) => {
            n.parse().map(AttrValue::N).map_err(|_| StorageError::internal(format!("attribute {name} is not a 64-bit integer")))
        }
        AttributeValue::B(b) => Ok(AttrValue::B(b.into_inner())),
        AttributeValue::Bool(b) => Ok(AttrValue::Bool(b)),
        _ => Err(StorageError::internal(format!("attribute {name} has an unsupported type"))),
    }
}

/// A DynamoDB attribute map as a port item. Errors: `Internal` without string keys.
pub(crate) fn item_from_map(mut map: AttrMap) -> StorageResult<Item> {
    let mut key_part = |name: &str| match map.remove(name) {
        Some(AttributeValue::S(s)) => Ok(s),
        _ => Err(StorageError::internal(format!("stored item lacks a string {name} attribute"))),
    };
    let key = Key::new(key_part(PK)?, key_part(SK)?);
    let mut attrs = Attrs::new();
    for (name, value) in map {
        let value = from_attribute(&name, value)?;
        attrs.insert(name, value);
    }
    Ok(Item { key, attrs })
}

/// A condition as a DynamoDB condition expression with its names and values.
pub(crate) struct ConditionExpr {
    /// The expression, e.g. `attribute_not_exists(#pk)`.
    pub expression: String,
    /// `#name` placeholders.
    pub names: HashMap<String, String>,
    /// `:value` placeholders.
    pub values: Option<AttrMap>,
}

/// The condition expression of `condition`, or `None` for [`Condition::Always`].
pub(crate) fn condition_expr(condition: &Condition) -> Option<ConditionExpr> {
    let pk_name = || HashMap::from([("#pk".to_string(), PK.to_string())]);
    match condition {
        Condition::Always => None,
        Condition::NotExists => Some(ConditionExpr { expression: "attribute_not_exists(#pk)".into(), names: pk_name(), values: None }),
        Condition::Exists => Some(ConditionExpr { expression: "attribute_exists(#pk)".into(), names: pk_name(), values: None }),
        Condition::Equals(name, value) => Some(ConditionExpr {
            expression: "#a = :v".into(),
            names: HashMap::from([("#a".to_string(), name.clone())]),
            values: Some(HashMap::from([(":v".to_string(), to_attribute(value))])),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_round_trip_through_attribute_maps() {
        let item = Item::new(Key::new("p", "s"))
            .with("s", AttrValue::S("x".into()))
            .with("n", AttrValue::N(-42))
            .with("b", AttrValue::B(vec![0, 255]))
            .with("t", AttrValue::Bool(true));
        let map = item_map(&item).expect("map");
        assert_eq!(map.get(PK), Some(&AttributeValue::S("p".into())));
        assert_eq!(item_from_map(map).expect("item"), item);
    }

    #[test]
    fn key_attribute_names_are_reserved() {
        let item = Item::new(Key::new("p", "s")).with(PK, AttrValue::S("other".into()));
        assert!(item_map(&item).is_err());
    }

    #[test]
    fn foreign_attribute_types_are_errors_not_panics() {
        let mut map = key_map(&Key::new("p", "s"));
        map.insert("f".into(), AttributeValue::N("1.5".into()));
        assert!(item_from_map(map.clone()).is_err());
        map.insert("f".into(), AttributeValue::Null(true));
        assert!(item_from_map(map).is_err());
        assert!(item_from_map(HashMap::new()).is_err());
    }
}

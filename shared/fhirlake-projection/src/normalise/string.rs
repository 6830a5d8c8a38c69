//! String values: folded strings, and the parts of names and addresses.

pub use fhirlake_fhir::search::values::fold;
use serde_json::Value;

/// The parts of a HumanName or an Address that string search matches.
const PARTS: [&str; 11] = ["text", "family", "given", "prefix", "suffix", "line", "city", "district", "state", "postalCode", "country"];

/// Pushes the folded string, or the folded parts of a name or address.
pub(super) fn values(value: &Value, push: &mut impl FnMut(String)) {
    match value {
        Value::String(s) => push(fold(s)),
        Value::Object(object) => {
            for part in PARTS {
                match object.get(part) {
                    Some(Value::String(s)) => push(fold(s)),
                    Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).for_each(|s| push(fold(s))),
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use fhirlake_fhir::registry::SearchParamType::String;
    use serde_json::json;

    use super::fold;
    use crate::normalise::values_of;

    #[test]
    fn folding_lowers_removes_accents_and_collapses_space() {
        assert_eq!(fold("  Ärzte \t Müller "), "arzte muller");
        assert_eq!(fold("Zoë ÇELİK"), "zoe celik");
        assert_eq!(fold("ﬁnch"), "finch");
        assert_eq!(fold("O'Brien-Smith"), "o'brien-smith");
        assert_eq!(fold("   "), "");
    }

    #[test]
    fn names_and_addresses_give_their_parts() {
        let name = json!({"use": "official", "family": "Chalmers", "given": ["Peter", "James"], "prefix": ["Mr."]});
        assert_eq!(values_of(String, &name), ["chalmers", "peter", "james", "mr."]);
        let address = json!({"line": ["534 Erewhon St"], "city": "PleasantVille", "postalCode": "3999", "country": "AU"});
        assert_eq!(values_of(String, &address), ["534 erewhon st", "pleasantville", "3999", "au"]);
        assert_eq!(values_of(String, &json!("Héllo")), ["hello"]);
        assert!(values_of(String, &json!(3)).is_empty());
    }
}

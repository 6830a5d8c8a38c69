//! FHIR type names as FHIRPath sees them on JSON: choice-element suffixes and type tests.

use serde_json::Value;

use super::FhirPathError;
use crate::registry;

/// Every type an R4 choice element (`value[x]`, `onset[x]`, ...) can take, spelled as the type name.
pub(crate) const CHOICE_TYPES: [&str; 50] = [
    "base64Binary",
    "boolean",
    "canonical",
    "code",
    "date",
    "dateTime",
    "decimal",
    "id",
    "instant",
    "integer",
    "markdown",
    "oid",
    "positiveInt",
    "string",
    "time",
    "unsignedInt",
    "uri",
    "url",
    "uuid",
    "Address",
    "Age",
    "Annotation",
    "Attachment",
    "CodeableConcept",
    "Coding",
    "ContactPoint",
    "Count",
    "Distance",
    "Duration",
    "HumanName",
    "Identifier",
    "Money",
    "Period",
    "Quantity",
    "Range",
    "Ratio",
    "Reference",
    "SampledData",
    "Signature",
    "Timing",
    "ContactDetail",
    "Contributor",
    "DataRequirement",
    "Expression",
    "ParameterDefinition",
    "RelatedArtifact",
    "TriggerDefinition",
    "UsageContext",
    "Dosage",
    "Meta",
];

/// If `key` is `name` followed by a choice-type suffix (`valueQuantity` for `value`), the type name.
pub(crate) fn choice_suffix(key: &str, name: &str) -> Option<&'static str> {
    let suffix = key.strip_prefix(name)?;
    let first = suffix.chars().next()?;
    if !first.is_ascii_uppercase() {
        return None;
    }
    CHOICE_TYPES.iter().copied().find(|t| t.len() == suffix.len() && t[..1].eq_ignore_ascii_case(&suffix[..1]) && t[1..] == suffix[1..])
}

/// The JSON key a choice element takes for type `ty` (`value` + `Quantity`), if `ty` is a choice type.
pub(crate) fn choice_key(name: &str, ty: &str) -> Option<String> {
    let ty = strip_namespace(ty);
    let t = CHOICE_TYPES.iter().find(|t| t.eq_ignore_ascii_case(ty))?;
    let mut key = String::with_capacity(name.len() + t.len());
    key.push_str(name);
    key.push(t.as_bytes()[0].to_ascii_uppercase() as char);
    key.push_str(&t[1..]);
    Some(key)
}

/// `FHIR.Patient` -> `Patient`, `System.String` -> `String`.
pub(crate) fn strip_namespace(ty: &str) -> &str {
    ty.strip_prefix("FHIR.").or_else(|| ty.strip_prefix("System.")).unwrap_or(ty)
}

/// Primitive types that specialise `string` (a `code` is a `string`).
const STRING_LIKE: [&str; 10] = ["string", "code", "id", "markdown", "uri", "url", "canonical", "oid", "uuid", "base64Binary"];

/// Whether a value whose type is `actual` (when known) and whose JSON is `value` is of type `wanted`.
pub(crate) fn is_of_type(actual: Option<&str>, value: &Value, wanted: &str) -> bool {
    let wanted = strip_namespace(wanted);
    let inferred;
    let actual = match actual {
        Some(a) => a,
        None => {
            inferred = infer_type(value);
            match inferred {
                Some(t) => t,
                None => return false,
            }
        }
    };
    if actual.eq_ignore_ascii_case(wanted) {
        return true;
    }
    if value.get("resourceType").is_some() {
        return wanted == "Resource" || (wanted == "DomainResource" && actual != "Bundle" && actual != "Parameters");
    }
    if wanted.eq_ignore_ascii_case("string") {
        return STRING_LIKE.iter().any(|s| s.eq_ignore_ascii_case(actual));
    }
    match wanted {
        "Quantity" => matches!(actual, "Age" | "Count" | "Distance" | "Duration" | "SimpleQuantity" | "MoneyQuantity"),
        "integer" | "Integer" => matches!(actual, "positiveInt" | "unsignedInt"),
        "Element" => !actual.is_empty(),
        _ => false,
    }
}

/// The type of a JSON value when nothing else tells it: a resource by its `resourceType`, a primitive by its JSON kind.
pub(crate) fn infer_type(value: &Value) -> Option<&str> {
    match value {
        Value::Object(o) => o.get("resourceType").and_then(Value::as_str),
        Value::Bool(_) => Some("boolean"),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some("integer"),
        Value::Number(_) => Some("decimal"),
        Value::String(_) => Some("string"),
        _ => None,
    }
}

/// The namespace of a type: FHIR model types or FHIRPath's own System types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Namespace {
    /// `FHIR.Patient`, `FHIR.boolean`.
    Fhir,
    /// `System.Boolean`, `System.Date`, the types of literals and computed values.
    System,
}

/// FHIRPath's System types.
const SYSTEM_TYPES: [&str; 9] = ["Any", "Boolean", "String", "Integer", "Decimal", "Date", "DateTime", "Time", "Quantity"];

/// Whether a value of type `actual` is of the type written `wanted` (`Patient`, `FHIR.code`, `System.Boolean`).
/// With `inherit`, a FHIR primitive also matches its base types (`code` is a `string`); complex and resource types
/// always do (`Age` is a `Quantity`, `Patient` a `Resource`). Fails for a type name neither namespace knows.
pub(crate) fn type_matches(actual: Option<(Namespace, &str)>, wanted: &str, inherit: bool) -> Result<bool, FhirPathError> {
    let (ns, name) = match wanted.split_once('.') {
        Some(("FHIR", n)) => (Some(Namespace::Fhir), n),
        Some(("System", n)) => (Some(Namespace::System), n),
        _ => (None, wanted),
    };
    let fhir_known = registry::type_def(name).is_some();
    let system_known = SYSTEM_TYPES.contains(&name);
    let known = match ns {
        Some(Namespace::Fhir) => fhir_known,
        Some(Namespace::System) => system_known,
        None => fhir_known || system_known,
    };
    if !known {
        // `System.Patient` names no type, so nothing is one; an unqualified unknown name is a mistake.
        return if ns.is_some() { Ok(false) } else { Err(FhirPathError::eval("unknown type name")) };
    }
    let Some((actual_ns, actual)) = actual else { return Ok(false) };
    if ns.is_some_and(|n| n != actual_ns) {
        return Ok(false);
    }
    if actual_ns == Namespace::System {
        return Ok(name == "Any" || name == actual);
    }
    let mut cur = actual;
    loop {
        if cur == name {
            return Ok(true);
        }
        let Some(def) = registry::type_def(cur) else { return Ok(false) };
        if def.is_primitive() && !inherit {
            return Ok(false);
        }
        match def.base {
            Some(b) => cur = b,
            None => return Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn choice_suffixes() {
        assert_eq!(choice_suffix("valueQuantity", "value"), Some("Quantity"));
        assert_eq!(choice_suffix("deceasedDateTime", "deceased"), Some("dateTime"));
        assert_eq!(choice_suffix("valueset", "value"), None);
        assert_eq!(choice_suffix("valueFoo", "value"), None);
        assert_eq!(choice_key("onset", "Age").as_deref(), Some("onsetAge"));
        assert_eq!(choice_key("onset", "dateTime").as_deref(), Some("onsetDateTime"));
        assert_eq!(choice_key("onset", "FHIR.Range").as_deref(), Some("onsetRange"));
        assert_eq!(choice_key("onset", "Patient"), None);
    }

    #[test]
    fn type_tests() {
        assert!(is_of_type(Some("Age"), &json!({}), "Quantity"));
        assert!(is_of_type(Some("code"), &json!("x"), "string"));
        assert!(is_of_type(None, &json!({"resourceType": "Patient"}), "Patient"));
        assert!(is_of_type(None, &json!({"resourceType": "Patient"}), "FHIR.Resource"));
        assert!(!is_of_type(None, &json!({"a": 1}), "Reference"));
        assert!(is_of_type(None, &json!(true), "Boolean"));
    }
}

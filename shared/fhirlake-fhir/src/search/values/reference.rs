//! Reference values (R4 search.html#reference): References, canonicals and uris, and a
//! resource selected as such (`Bundle.entry[0].resource`).

use serde_json::{Map, Value};

use super::{member, str_member};
use crate::registry;
use crate::search::SearchValue;

/// Pushes the normalised reference and the target type when known; contained references
/// (`#x`) are left out, a `Reference.identifier` gives a `ReferenceIdentifier`.
pub(super) fn values(element: &Value, out: &mut Vec<SearchValue>) {
    match element {
        Value::String(url) if !url.is_empty() => {
            out.push(SearchValue::Reference { reference: url.clone(), target_type: target_of(url).map(str::to_string) })
        }
        Value::Object(object) => {
            if let (Some(kind), Some(id)) = (str_member(object, "resourceType"), str_member(object, "id")) {
                out.push(SearchValue::Reference { reference: format!("{kind}/{id}"), target_type: Some(kind.to_string()) });
                return;
            }
            reference(object, out);
            if let Some(Value::Object(identifier)) = member(object, "identifier") {
                if let Some(value) = str_member(identifier, "value") {
                    out.push(SearchValue::ReferenceIdentifier {
                        system: str_member(identifier, "system").map(str::to_string),
                        value: value.to_string(),
                    });
                }
            }
        }
        _ => {}
    }
}

/// `Reference.reference`, without its version, with `Reference.type` or the type it names.
fn reference(object: &Map<String, Value>, out: &mut Vec<SearchValue>) {
    let Some(reference) = str_member(object, "reference").filter(|r| !r.starts_with('#')) else { return };
    let reference = without_history(reference);
    let target_type = str_member(object, "type").or_else(|| target_of(reference)).map(str::to_string);
    out.push(SearchValue::Reference { reference: reference.to_string(), target_type });
}

/// The reference without a `/_history/n` suffix: `Patient/1/_history/2` → `Patient/1`.
pub fn without_history(reference: &str) -> &str {
    match reference.find("/_history/") {
        Some(at) => &reference[..at],
        None => reference,
    }
}

/// The resource type a reference names: the segment before the id in `Type/id` or
/// `…/Type/id` (a canonical's `|version` ignored), when it is an R4 resource type.
pub fn target_of(reference: &str) -> Option<&str> {
    let reference = without_history(reference.split('|').next().unwrap_or(reference));
    let mut segments = reference.rsplit('/');
    let id = segments.next()?;
    let kind = segments.next()?;
    (!id.is_empty() && registry::is_resource_type(kind)).then_some(kind)
}

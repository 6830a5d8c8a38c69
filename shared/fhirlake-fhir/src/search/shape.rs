//! `_summary` and `_elements` (search.html#summary, search.html#elements): the parts of a
//! resource a search returns. A shaped resource is marked with the `SUBSETTED` tag of
//! `http://terminology.hl7.org/CodeSystem/v3-ObservationValue`, as the specification asks.

use serde_json::{json, Map, Value};

use super::SummaryMode;
use crate::registry;

/// The system of the `SUBSETTED` tag.
pub const SUBSETTED_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue";

/// Elements every shaped resource keeps.
const ALWAYS: [&str; 3] = ["resourceType", "id", "meta"];

/// The resource reduced to what `_summary` (when not `false`/`count`) and `_elements` ask for;
/// `None` when nothing needs removing.
pub fn shape(resource: &Value, summary: Option<SummaryMode>, elements: &[String]) -> Option<Value> {
    let object = resource.as_object()?;
    let resource_type = object.get("resourceType")?.as_str()?;
    let def = registry::type_def(resource_type)?;
    let keep = |name: &str| -> bool {
        if ALWAYS.contains(&name) {
            return true;
        }
        let element = def.element(name);
        let mandatory = element.as_ref().is_some_and(|e| e.element.min > 0);
        match summary {
            Some(SummaryMode::True) => element.as_ref().is_some_and(|e| e.element.summary) || mandatory,
            Some(SummaryMode::Text) => name == "text" || mandatory,
            Some(SummaryMode::Data) => name != "text",
            _ if !elements.is_empty() => mandatory || elements.iter().any(|e| e == name || element_base(name) == e),
            _ => true,
        }
    };
    let shaped: Map<String, Value> =
        object.iter().filter(|(k, _)| keep(k.trim_start_matches('_'))).map(|(k, v)| (k.clone(), v.clone())).collect();
    if shaped.len() == object.len() {
        return None;
    }
    let mut shaped = Value::Object(shaped);
    mark_subsetted(&mut shaped);
    Some(shaped)
}

/// `valueQuantity` is asked for as `value`.
fn element_base(name: &str) -> &str {
    let cut = name.char_indices().skip(1).find(|(_, c)| c.is_ascii_uppercase()).map_or(name.len(), |(i, _)| i);
    &name[..cut]
}

fn mark_subsetted(resource: &mut Value) {
    let Some(object) = resource.as_object_mut() else { return };
    let meta = object.entry("meta").or_insert_with(|| json!({}));
    let Some(meta) = meta.as_object_mut() else { return };
    let tags = meta.entry("tag").or_insert_with(|| json!([]));
    if let Some(tags) = tags.as_array_mut() {
        if !tags.iter().any(|t| t.get("code").and_then(Value::as_str) == Some("SUBSETTED")) {
            tags.push(json!({"system": SUBSETTED_SYSTEM, "code": "SUBSETTED"}));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patient() -> Value {
        json!({"resourceType": "Patient", "id": "p", "meta": {"versionId": "1"}, "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"},
               "name": [{"family": "Doe"}], "photo": [{"contentType": "image/png"}], "gender": "female", "birthDate": "1970"})
    }

    #[test]
    fn summary_keeps_summary_elements_and_marks_the_resource() {
        let shaped = shape(&patient(), Some(SummaryMode::True), &[]).expect("shaped");
        assert!(shaped.get("name").is_some() && shaped.get("gender").is_some() && shaped.get("birthDate").is_some());
        assert!(shaped.get("photo").is_none() && shaped.get("text").is_none());
        assert_eq!(shaped["meta"]["tag"][0]["code"], "SUBSETTED");
    }

    #[test]
    fn data_drops_the_narrative_and_text_keeps_only_it() {
        let data = shape(&patient(), Some(SummaryMode::Data), &[]).expect("shaped");
        assert!(data.get("text").is_none() && data.get("photo").is_some());
        let text = shape(&patient(), Some(SummaryMode::Text), &[]).expect("shaped");
        assert!(text.get("text").is_some() && text.get("name").is_none());
    }

    #[test]
    fn elements_keep_the_named_ones() {
        let shaped = shape(&patient(), None, &["birthDate".into()]).expect("shaped");
        let keys: Vec<&String> = shaped.as_object().expect("object").keys().collect();
        assert_eq!(keys, ["resourceType", "id", "meta", "birthDate"]);
        let observation = json!({"resourceType": "Observation", "id": "o", "status": "final", "code": {"text": "x"}, "valueQuantity": {"value": 1}, "issued": "2020-01-01T00:00:00Z"});
        let shaped = shape(&observation, None, &["value".into()]).expect("shaped");
        assert!(shaped.get("valueQuantity").is_some() && shaped.get("issued").is_none());
        assert!(shaped.get("status").is_some(), "mandatory elements stay");
        assert!(shape(&patient(), None, &[]).is_none());
    }
}

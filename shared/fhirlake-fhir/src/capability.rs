//! The CapabilityStatement at `/metadata`, built from the registry and from the interactions the
//! server implements, so it can only claim what is there.

use serde_json::{json, Value};

use crate::registry;

/// Interactions every resource type supports, in CapabilityStatement codes.
pub const TYPE_INTERACTIONS: &[&str] =
    &["read", "vread", "update", "patch", "delete", "history-instance", "history-type", "create", "search-type"];

/// Interactions supported at the system level.
pub const SYSTEM_INTERACTIONS: &[&str] = &["transaction", "batch", "search-system", "history-system"];

/// The operation behind `Patient/[id]/$everything`.
pub const PATIENT_EVERYTHING: &str = "http://hl7.org/fhir/OperationDefinition/Patient-everything";

/// Renders the server's CapabilityStatement. `base_url` is the datastore endpoint without the
/// trailing slash; `software_version` the server's version.
pub fn capability_statement(base_url: &str, software_version: &str, published: &str) -> Value {
    let interactions: Vec<Value> = TYPE_INTERACTIONS.iter().map(|code| json!({"code": code})).collect();
    let resources: Vec<Value> = registry::resource_types()
        .iter()
        .map(|name| {
            let search_params: Vec<Value> = registry::search_params(name)
                .filter(|p| p.kind != registry::SearchParamType::Special)
                .map(|p| json!({"name": p.code, "definition": p.url, "type": p.kind.code()}))
                .collect();
            let include: Vec<String> = registry::search_params(name)
                .filter(|p| p.kind == registry::SearchParamType::Reference)
                .map(|p| format!("{name}:{}", p.code))
                .collect();
            let mut resource = json!({
                "type": name,
                "interaction": interactions,
                "versioning": "versioned-update",
                "readHistory": true,
                "updateCreate": true,
                "conditionalCreate": true,
                "conditionalRead": "not-supported",
                "conditionalUpdate": true,
                "conditionalDelete": "single",
                "searchInclude": include,
                "searchRevInclude": ["*"],
                "searchParam": search_params,
            });
            if *name == "Patient" {
                // `Patient/{id}/$everything` and `Patient/$everything`.
                resource["operation"] = json!([{"name": "everything", "definition": PATIENT_EVERYTHING}]);
            }
            resource
        })
        .collect();
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": published,
        "publisher": "fhirlake",
        "kind": "instance",
        "software": {"name": "fhirlake", "version": software_version},
        "implementation": {"description": "fhirlake FHIR R4 datastore", "url": base_url},
        "fhirVersion": registry::fhir_version(),
        "format": ["json", "application/fhir+json"],
        "patchFormat": ["application/json-patch+json", "application/fhir+json"],
        "rest": [{
            "mode": "server",
            "security": {
                "description": "Requests are authenticated with AWS Signature Version 4 for the service 'healthlake'."
            },
            "resource": resources,
            "interaction": SYSTEM_INTERACTIONS.iter().map(|code| json!({"code": code})).collect::<Vec<_>>(),
        }],
    })
}

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

/// The OAuth endpoints of a SMART datastore's discovery document that the CapabilityStatement
/// names (SMART App Launch, "Capability Statement": the `oauth-uris` extension).
const OAUTH_URIS: [(&str, &str); 5] = [
    ("authorization_endpoint", "authorize"),
    ("token_endpoint", "token"),
    ("registration_endpoint", "register"),
    ("revocation_endpoint", "revoke"),
    ("management_endpoint", "manage"),
];

/// Replaces `statement`'s security with that of a SMART on FHIR datastore whose discovery
/// document (`.well-known/smart-configuration`) is `discovery`: the `SMART-on-FHIR` security
/// service and the `oauth-uris` extension with the endpoints the document names.
pub fn with_smart_security(statement: &mut Value, discovery: &Value) {
    let uris: Vec<Value> = OAUTH_URIS
        .iter()
        .filter_map(|(member, url)| discovery.get(*member).and_then(Value::as_str).map(|uri| json!({"url": url, "valueUri": uri})))
        .collect();
    let security = json!({
        "extension": [{"url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris", "extension": uris}],
        "service": [{
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "SMART-on-FHIR"}],
            "text": "OAuth2 using SMART-on-FHIR profile (see http://docs.smarthealthit.org)"
        }],
        "description": "Requests carry a SMART on FHIR access token (Authorization: Bearer), or an AWS Signature Version 4 for the service 'healthlake'."
    });
    if let Some(rest) = statement.get_mut("rest").and_then(Value::as_array_mut).and_then(|r| r.first_mut()) {
        rest["security"] = security;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_smart_datastore_advertises_its_oauth_endpoints() {
        let mut statement = capability_statement("https://fhir.example/datastore/ds/r4", "0.1.0", "2026-12-01");
        let discovery = json!({"authorization_endpoint": "https://idp.example/authorize", "token_endpoint": "https://idp.example/token",
                               "capabilities": ["launch-standalone"]});
        with_smart_security(&mut statement, &discovery);
        let security = &statement["rest"][0]["security"];
        assert_eq!(security["service"][0]["coding"][0]["code"], "SMART-on-FHIR");
        let oauth = &security["extension"][0];
        assert_eq!(oauth["url"], "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris");
        assert_eq!(
            oauth["extension"],
            json!([{"url": "authorize", "valueUri": "https://idp.example/authorize"}, {"url": "token", "valueUri": "https://idp.example/token"}])
        );
    }
}

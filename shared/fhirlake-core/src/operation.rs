//! The HealthLake action a request performs, by name: `ReadResource`, `SearchWithGet`,
//! `CreateFHIRDatastore`, …
//!
//! These are HealthLake's IAM action names, the vocabulary HealthLake also sends as
//! `operationName` to a SMART token-introspection Lambda; the audit trail and the introspection
//! event both use them. Pure functions, no IO.
//!
//! Only names from the fixed lists below are ever returned (else `Unknown`), and resource ids only
//! when they are valid FHIR ids, so no client-chosen text beyond types and ids reaches an audit
//! record through them.

use fhirlake_fhir::registry;

/// The name returned for a request that is no known HealthLake action.
pub const UNKNOWN: &str = "Unknown";

/// A data-plane request, named.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataOperation {
    /// The HealthLake action (`ReadResource`, …, or [`UNKNOWN`]).
    pub name: &'static str,
    /// The resource type addressed: the path's type (`Observation` for the compartment search
    /// `Patient/123/Observation`), `Patient` for `Patient/$export` and `$everything`, `Group`
    /// for `Group/id/$export`; `None` for system-level requests and unknown ones.
    pub resource_type: Option<String>,
    /// The resource id addressed (`T/id…`, `Patient/id/$everything`, `Group/id/$export`), when it
    /// is a valid FHIR id; `None` otherwise (the compartment of a compartment search included).
    pub resource_id: Option<String>,
}

impl DataOperation {
    fn named(name: &'static str) -> Self {
        DataOperation { name, resource_type: None, resource_id: None }
    }

    fn of_type(name: &'static str, resource_type: &str) -> Self {
        DataOperation { name, resource_type: Some(resource_type.to_string()), resource_id: None }
    }

    fn of_instance(name: &'static str, resource_type: &str, id: &str) -> Self {
        DataOperation { name, resource_type: Some(resource_type.to_string()), resource_id: is_fhir_id(id).then(|| id.to_string()) }
    }
}

/// The HealthLake action of a data-plane request.
///
/// `method` is the HTTP method (upper case, as sent); `segments` are the percent-decoded,
/// non-empty path segments after `/datastore/{id}/r4/`; `query_has_params` tells whether the
/// query string holds any parameter (it decides only `GET [base]`: a system search with
/// parameters, else [`UNKNOWN`]). The conditional forms (`PUT`, `PATCH`, `DELETE` of `T?criteria`)
/// are named whether or not criteria were sent, since that is what the client attempted.
/// A first segment that is neither a resource type nor one of the system endpoints
/// (`metadata`, `_history`, `_search`, `$export`, `export`, `.well-known`) is [`UNKNOWN`].
pub fn data_operation(method: &str, segments: &[&str], query_has_params: bool) -> DataOperation {
    use DataOperation as Op;
    match (method, segments) {
        ("GET", ["metadata"]) => Op::named("GetCapabilities"),
        ("GET", [".well-known", "smart-configuration"]) => Op::named("GetSmartConfiguration"),
        ("GET", ["$export"]) => Op::named("StartFHIRExportJobWithGet"),
        ("POST", ["$export"]) => Op::named("StartFHIRExportJobWithPost"),
        ("GET", ["Patient", "$export"]) => Op::of_type("StartFHIRExportJobWithGet", "Patient"),
        ("POST", ["Patient", "$export"]) => Op::of_type("StartFHIRExportJobWithPost", "Patient"),
        ("GET", ["Group", id, "$export"]) => Op::of_instance("StartFHIRExportJobWithGet", "Group", id),
        ("POST", ["Group", id, "$export"]) => Op::of_instance("StartFHIRExportJobWithPost", "Group", id),
        ("GET", ["export", _job]) => Op::named("DescribeFHIRExportJobWithGet"),
        ("DELETE", ["export", _job]) => Op::named("CancelFHIRExportJobWithDelete"),
        ("GET", ["export", _job, _file]) => Op::named("GetExportedFile"),
        ("GET", ["_history"]) => Op::named("GetHistory"),
        ("POST", ["_search"]) => Op::named("SearchWithPost"),
        ("GET", []) if query_has_params => Op::named("SearchWithGet"),
        ("POST", []) => Op::named("ProcessBundle"),
        ("GET", ["Patient", "$everything"]) => Op::of_type("SearchEverything", "Patient"),
        ("GET", ["Patient", id, "$everything"]) => Op::of_instance("SearchEverything", "Patient", id),
        (_, [resource_type, ..]) if !registry::is_resource_type(resource_type) => Op::named(UNKNOWN),
        ("GET", [t]) => Op::of_type("SearchWithGet", t),
        ("POST", [t, "_search"]) => Op::of_type("SearchWithPost", t),
        ("POST", [t]) => Op::of_type("CreateResource", t),
        ("GET", [t, "_history"]) => Op::of_type("GetHistoryByType", t),
        ("GET", [t, id]) => Op::of_instance("ReadResource", t, id),
        ("PUT", [t]) => Op::of_type("UpdateResource", t),
        ("PUT", [t, id]) => Op::of_instance("UpdateResource", t, id),
        ("PATCH", [t]) => Op::of_type("PatchResource", t),
        ("PATCH", [t, id]) => Op::of_instance("PatchResource", t, id),
        ("DELETE", [t]) => Op::of_type("DeleteResource", t),
        ("DELETE", [t, id]) => Op::of_instance("DeleteResource", t, id),
        ("GET", [t, id, "_history"]) => Op::of_instance("GetHistoryByResourceId", t, id),
        ("GET", [t, id, "_history", _version]) => Op::of_instance("VersionReadResource", t, id),
        ("GET", [compartment, _id, t]) if registry::compartment_types().any(|c| c == *compartment) && registry::is_resource_type(t) => {
            Op::of_type("SearchWithGet", t)
        }
        _ => Op::named(UNKNOWN),
    }
}

/// The HealthLake actions of the control plane (`X-Amz-Target: HealthLake.<action>`).
pub const CONTROL_OPERATIONS: &[&str] = &[
    "CreateFHIRDatastore",
    "DescribeFHIRDatastore",
    "ListFHIRDatastores",
    "UpdateFHIRDatastore",
    "DeleteFHIRDatastore",
    "TagResource",
    "UntagResource",
    "ListTagsForResource",
    "StartFHIRImportJob",
    "DescribeFHIRImportJob",
    "ListFHIRImportJobs",
    "StartFHIRExportJob",
    "DescribeFHIRExportJob",
    "ListFHIRExportJobs",
];

/// The HealthLake action of a control-plane request from its `X-Amz-Target` header
/// (`HealthLake.CreateFHIRDatastore` → `CreateFHIRDatastore`); [`UNKNOWN`] when the header is
/// missing, lacks the `HealthLake.` prefix or names no action of [`CONTROL_OPERATIONS`].
pub fn control_operation(x_amz_target: Option<&str>) -> &'static str {
    x_amz_target
        .and_then(|target| target.strip_prefix("HealthLake."))
        .and_then(|action| CONTROL_OPERATIONS.iter().copied().find(|known| *known == action))
        .unwrap_or(UNKNOWN)
}

/// A FHIR id: 1 to 64 of `A-Z a-z 0-9 - .`.
fn is_fhir_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_operations() {
        // method, path below /r4/, query has params, name, resource type, resource id
        type Case = (&'static str, &'static str, bool, &'static str, Option<&'static str>, Option<&'static str>);
        let cases: &[Case] = &[
            ("GET", "metadata", false, "GetCapabilities", None, None),
            ("GET", ".well-known/smart-configuration", false, "GetSmartConfiguration", None, None),
            ("GET", "Patient/123", false, "ReadResource", Some("Patient"), Some("123")),
            ("GET", "Observation/a-b.c", true, "ReadResource", Some("Observation"), Some("a-b.c")),
            ("GET", "Patient/123/_history/2", false, "VersionReadResource", Some("Patient"), Some("123")),
            ("GET", "Patient/123/_history", false, "GetHistoryByResourceId", Some("Patient"), Some("123")),
            ("GET", "Patient/_history", false, "GetHistoryByType", Some("Patient"), None),
            ("GET", "_history", true, "GetHistory", None, None),
            ("POST", "Patient", false, "CreateResource", Some("Patient"), None),
            ("PUT", "Patient/123", false, "UpdateResource", Some("Patient"), Some("123")),
            ("PUT", "Patient", true, "UpdateResource", Some("Patient"), None),
            ("PATCH", "Patient/123", false, "PatchResource", Some("Patient"), Some("123")),
            ("PATCH", "Patient", true, "PatchResource", Some("Patient"), None),
            ("DELETE", "Patient/123", false, "DeleteResource", Some("Patient"), Some("123")),
            ("DELETE", "Patient", true, "DeleteResource", Some("Patient"), None),
            ("GET", "Patient", false, "SearchWithGet", Some("Patient"), None),
            ("GET", "Patient", true, "SearchWithGet", Some("Patient"), None),
            ("GET", "", true, "SearchWithGet", None, None),
            ("GET", "", false, "Unknown", None, None),
            ("GET", "Patient/123/Observation", true, "SearchWithGet", Some("Observation"), None),
            ("GET", "Encounter/e1/Observation", false, "SearchWithGet", Some("Observation"), None),
            ("POST", "Patient/_search", false, "SearchWithPost", Some("Patient"), None),
            ("POST", "_search", false, "SearchWithPost", None, None),
            ("GET", "Patient/$everything", false, "SearchEverything", Some("Patient"), None),
            ("GET", "Patient/123/$everything", true, "SearchEverything", Some("Patient"), Some("123")),
            ("POST", "", false, "ProcessBundle", None, None),
            ("GET", "$export", true, "StartFHIRExportJobWithGet", None, None),
            ("POST", "$export", false, "StartFHIRExportJobWithPost", None, None),
            ("GET", "Patient/$export", false, "StartFHIRExportJobWithGet", Some("Patient"), None),
            ("POST", "Patient/$export", false, "StartFHIRExportJobWithPost", Some("Patient"), None),
            ("GET", "Group/g1/$export", false, "StartFHIRExportJobWithGet", Some("Group"), Some("g1")),
            ("POST", "Group/g1/$export", false, "StartFHIRExportJobWithPost", Some("Group"), Some("g1")),
            ("GET", "export/0123abcd", false, "DescribeFHIRExportJobWithGet", None, None),
            ("DELETE", "export/0123abcd", false, "CancelFHIRExportJobWithDelete", None, None),
            ("GET", "export/0123abcd/Patient-1.ndjson", false, "GetExportedFile", None, None),
            // Unknown: wrong methods, unknown types and endpoints.
            ("POST", "metadata", false, "Unknown", None, None),
            ("POST", ".well-known/smart-configuration", false, "Unknown", None, None),
            ("PUT", "$export", false, "Unknown", None, None),
            ("POST", "export/0123abcd", false, "Unknown", None, None),
            ("DELETE", "export/0123abcd/file", false, "Unknown", None, None),
            ("GET", "NotAType/1", false, "Unknown", None, None),
            ("GET", "patient/1", false, "Unknown", None, None),
            ("GET", "NotAType", true, "Unknown", None, None),
            ("POST", "Patient/123", false, "Unknown", None, None),
            ("HEAD", "Patient/123", false, "Unknown", None, None),
            ("get", "Patient/123", false, "Unknown", None, None),
            ("PUT", "", false, "Unknown", None, None),
            ("DELETE", "_history", false, "Unknown", None, None),
            ("GET", "Patient/123/NotAType", false, "Unknown", None, None),
            ("GET", "Observation/1/Patient", false, "Unknown", None, None),
            ("GET", "Patient/123/_history/2/extra", false, "Unknown", None, None),
            ("GET", "Patient/123/$validate", false, "Unknown", None, None),
            ("POST", "Patient/123/$everything", false, "Unknown", None, None),
            // An id that is no FHIR id is not recorded; the action still is.
            ("GET", "Patient/has space", false, "ReadResource", Some("Patient"), None),
            ("DELETE", "Patient/$weird", false, "DeleteResource", Some("Patient"), None),
            ("GET", "Group/bad id/$export", false, "StartFHIRExportJobWithGet", Some("Group"), None),
        ];
        for &(method, path, params, name, resource_type, resource_id) in cases {
            let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
            let op = data_operation(method, &segments, params);
            let expected = DataOperation { name, resource_type: resource_type.map(Into::into), resource_id: resource_id.map(Into::into) };
            assert_eq!(op, expected, "{method} {path} (params: {params})");
        }
    }

    #[test]
    fn long_ids_are_not_recorded() {
        let id = "a".repeat(64);
        assert_eq!(data_operation("GET", &["Patient", &id], false).resource_id.as_deref(), Some(id.as_str()));
        let id = "a".repeat(65);
        assert_eq!(data_operation("GET", &["Patient", &id], false).resource_id, None);
    }

    #[test]
    fn control_operations() {
        for action in CONTROL_OPERATIONS {
            assert_eq!(control_operation(Some(&format!("HealthLake.{action}"))), *action);
        }
        for target in [
            None,
            Some(""),
            Some("HealthLake."),
            Some("HealthLake.DoSomething"),
            Some("CreateFHIRDatastore"),
            Some("healthlake.CreateFHIRDatastore"),
            Some("HealthLake.CreateFHIRDatastore "),
            Some("Other.CreateFHIRDatastore"),
        ] {
            assert_eq!(control_operation(target), UNKNOWN, "{target:?}");
        }
    }
}

//! One row of a projection: a stored version with its search-parameter values extracted.

use chrono::{DateTime, Utc};
use fhirlake_core::resources::StoredVersion;
use serde_json::Value;

use crate::normalise::normalise;
use crate::schema::ProjectionSchema;
use crate::ProjectionError;

/// One version of one resource, ready to be written as a row of its type's projection.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectionRow {
    /// The logical id.
    pub id: String,
    /// The version number.
    pub version_id: i64,
    /// `meta.lastUpdated`.
    pub last_updated: DateTime<Utc>,
    /// True when the version records a deletion.
    pub deleted: bool,
    /// The resource's JSON text; `None` for deletions.
    pub resource: Option<String>,
    /// Per parameter column of the schema, in order: the normalised values, `None` when the
    /// parameter selects nothing (always for deletions).
    pub values: Vec<Option<Vec<String>>>,
}

/// Extracts the row of `version` under `schema` (which must be the schema of its type).
///
/// A parameter whose expression fails to evaluate on this resource (a function that needs one
/// value got several) is left empty, never failing the row; the failure is logged with the
/// parameter code only.
///
/// Errors: `Body` when a stored body is not a JSON object (corrupted state); `Version` when the
/// version number does not fit a Parquet int64.
pub fn project_version(schema: &ProjectionSchema, version: &StoredVersion) -> Result<ProjectionRow, ProjectionError> {
    let version_id = i64::try_from(version.version).map_err(|_| ProjectionError::Version)?;
    let (resource, values) = match &version.body {
        None => (None, vec![None; schema.params.len()]),
        Some(body) => {
            let text = std::str::from_utf8(body).map_err(|_| ProjectionError::Body)?;
            let json: Value = serde_json::from_str(text).map_err(|_| ProjectionError::Body)?;
            if !json.is_object() {
                return Err(ProjectionError::Body);
            }
            (Some(text.to_string()), extract(schema, &json))
        }
    };
    Ok(ProjectionRow {
        id: version.id.clone(),
        version_id,
        last_updated: version.last_updated,
        deleted: version.body.is_none(),
        resource,
        values,
    })
}

/// The normalised values of every parameter column of `schema` over `resource`.
pub fn extract(schema: &ProjectionSchema, resource: &Value) -> Vec<Option<Vec<String>>> {
    schema
        .params
        .iter()
        .map(|param| match param.expression.evaluate(resource) {
            Ok(selected) => {
                let mut out = Vec::new();
                for value in &selected {
                    normalise(param.kind, value, &mut out);
                }
                (!out.is_empty()).then_some(out)
            }
            Err(error) => {
                tracing::debug!(resource_type = schema.resource_type, code = param.code, %error, "search parameter left empty");
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use chrono::TimeZone;
    use fhirlake_core::resources::Method;
    use serde_json::json;

    use super::*;
    use crate::schema::schema_for;

    fn stored(resource_type: &str, body: Option<Value>) -> StoredVersion {
        StoredVersion {
            resource_type: resource_type.into(),
            id: "x1".into(),
            version: 3,
            last_updated: Utc.timestamp_micros(1_714_564_800_123_456).single().expect("a time"),
            method: if body.is_some() { Method::Update } else { Method::Delete },
            body: body.map(|b| Bytes::from(serde_json::to_vec(&b).expect("json"))),
            write_token: None,
            source: None,
        }
    }

    fn column<'a>(schema: &ProjectionSchema, row: &'a ProjectionRow, name: &str) -> Option<&'a Vec<String>> {
        let index = schema.params.iter().position(|p| p.name == name).expect("a column");
        row.values[index].as_ref()
    }

    #[test]
    fn patient_values_are_extracted_and_normalised() {
        let schema = schema_for("Patient").expect("Patient");
        let patient = json!({
            "resourceType": "Patient", "id": "x1", "meta": {"versionId": "3", "lastUpdated": "2024-05-01T12:00:00.123Z", "tag": [{"system": "urn:t", "code": "vip"}]},
            "identifier": [{"system": "urn:oid:1.2.36.146.595.217.0.1", "value": "12345"}],
            "name": [{"family": "Müller", "given": ["Anna", "Maria"]}, {"text": "Anna Müller"}],
            "gender": "female", "birthDate": "1974-12-25", "deceasedBoolean": false,
            "telecom": [{"system": "phone", "value": "555-0100"}],
            "generalPractitioner": [{"reference": "Practitioner/pr1"}],
            "address": [{"city": "Köln", "postalCode": "50667"}]
        });
        let row = project_version(schema, &stored("Patient", Some(patient))).expect("a row");
        assert_eq!((row.id.as_str(), row.version_id, row.deleted), ("x1", 3, false));
        assert_eq!(column(schema, &row, "sp_family").map(Vec::as_slice), Some(&["muller".to_string()][..]));
        assert_eq!(column(schema, &row, "sp_given").cloned(), Some(vec!["anna".to_string(), "maria".to_string()]));
        assert_eq!(
            column(schema, &row, "sp_name").cloned(),
            Some(vec!["muller".into(), "anna".into(), "maria".into(), "anna muller".into()])
        );
        assert_eq!(column(schema, &row, "sp_gender").cloned(), Some(vec!["female".to_string()]));
        assert_eq!(column(schema, &row, "sp_birthdate").cloned(), Some(vec!["1974-12-25".to_string()]));
        assert_eq!(column(schema, &row, "sp_identifier").cloned(), Some(vec!["urn:oid:1.2.36.146.595.217.0.1|12345".to_string()]));
        assert_eq!(column(schema, &row, "sp_phone").cloned(), Some(vec!["phone|555-0100".to_string()]));
        assert_eq!(column(schema, &row, "sp_general_practitioner").cloned(), Some(vec!["Practitioner/pr1".to_string()]));
        assert_eq!(column(schema, &row, "sp_address_city").cloned(), Some(vec!["koln".to_string()]));
        assert_eq!(column(schema, &row, "sp_deceased").cloned(), Some(vec!["false".to_string()]));
        assert_eq!(column(schema, &row, "sp__tag").cloned(), Some(vec!["urn:t|vip".to_string()]));
        assert_eq!(column(schema, &row, "sp_death_date"), None);
        assert!(row.resource.as_deref().is_some_and(|r| r.contains("\"Müller\"")));
    }

    #[test]
    fn observation_values_are_extracted_and_normalised() {
        let schema = schema_for("Observation").expect("Observation");
        let observation = json!({
            "resourceType": "Observation", "id": "x1", "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
            "subject": {"reference": "Patient/p1"},
            "effectiveDateTime": "2024-05-01T08:30:00+02:00",
            "valueQuantity": {"value": 72, "unit": "beats/minute", "system": "http://unitsofmeasure.org", "code": "/min"}
        });
        let row = project_version(schema, &stored("Observation", Some(observation))).expect("a row");
        assert_eq!(column(schema, &row, "sp_code").cloned(), Some(vec!["http://loinc.org|8867-4".to_string()]));
        assert_eq!(column(schema, &row, "sp_subject").cloned(), Some(vec!["Patient/p1".to_string()]));
        assert_eq!(column(schema, &row, "sp_patient").cloned(), Some(vec!["Patient/p1".to_string()]));
        assert_eq!(column(schema, &row, "sp_status").cloned(), Some(vec!["final".to_string()]));
        assert_eq!(column(schema, &row, "sp_date").cloned(), Some(vec!["2024-05-01T06:30:00Z".to_string()]));
        assert_eq!(column(schema, &row, "sp_value_quantity").cloned(), Some(vec!["72|http://unitsofmeasure.org|/min".to_string()]));
        assert_eq!(column(schema, &row, "sp_combo_code").cloned(), Some(vec!["http://loinc.org|8867-4".to_string()]));
        assert_eq!(column(schema, &row, "sp_value_concept"), None);
    }

    #[test]
    fn deletions_have_no_resource_and_no_values_and_bad_bodies_are_errors() {
        let schema = schema_for("Patient").expect("Patient");
        let row = project_version(schema, &stored("Patient", None)).expect("a row");
        assert!(row.deleted && row.resource.is_none());
        assert!(row.values.iter().all(Option::is_none));
        assert_eq!(row.values.len(), schema.params.len());

        let mut broken = stored("Patient", Some(json!({})));
        broken.body = Some(Bytes::from_static(b"not json"));
        assert!(matches!(project_version(schema, &broken), Err(ProjectionError::Body)));
        broken.body = Some(Bytes::from_static(b"[1]"));
        assert!(matches!(project_version(schema, &broken), Err(ProjectionError::Body)));
    }
}

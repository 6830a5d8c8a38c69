//! The projection schema of each resource type, derived from the generated R4 registry.
//!
//! Every projection file of one resource type has the same columns, in this order:
//!
//! | column | Arrow / Parquet type | content |
//! |---|---|---|
//! | `id` | Utf8, required | the logical id |
//! | `version_id` | Int64, required | the version number (`meta.versionId`) |
//! | `last_updated` | Timestamp(µs, UTC), required | `meta.lastUpdated` |
//! | `deleted` | Boolean, required | true when the version records a deletion |
//! | `resource` | Utf8, nullable | the resource's JSON; null for deletions |
//! | `sp_{code}` … | List(Utf8), nullable | one per search parameter, sorted by code: its normalised values, null when it has none |
//!
//! Parameter columns are named [`column_name`]`(code)`: `sp_` followed by the code with `-`
//! replaced by `_` (`birthdate` → `sp_birthdate`, `value-quantity` → `sp_value_quantity`,
//! `_tag` → `sp__tag`). The prefix keeps them apart from the fixed columns (ImplementationGuide
//! has a parameter `resource`) and the names are valid unquoted Athena/Glue identifiers. The
//! names are stable: they only change if the registry's R4 definitions do.
//!
//! Which parameters get a column: every parameter of the type with a FHIRPath expression and a
//! type of number, date, string, token, reference, quantity or uri, except `_id` and
//! `_lastUpdated` (the fixed columns `id` and `last_updated` hold them). Composite parameters
//! are left out (their components are columns of their own: `code-value-quantity` is `code` and
//! `value-quantity`), and so are `special` ones (`near`) and those without an expression
//! (`_text`, `_content`, `_query`).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use fhirlake_fhir::fhirpath::Expression;
use fhirlake_fhir::registry::{self, SearchParamType};

/// Version of the column layout, written into every file's metadata
/// (`fhirlake.projection.schema_version`). Bumped when the fixed columns or the naming change.
pub const SCHEMA_VERSION: &str = "1";

/// The fixed column holding the logical id.
pub const ID_COLUMN: &str = "id";
/// The fixed column holding the version number.
pub const VERSION_COLUMN: &str = "version_id";
/// The fixed column holding `meta.lastUpdated`.
pub const LAST_UPDATED_COLUMN: &str = "last_updated";
/// The fixed column telling deletions apart.
pub const DELETED_COLUMN: &str = "deleted";
/// The fixed column holding the resource's JSON.
pub const RESOURCE_COLUMN: &str = "resource";
/// The prefix of every search-parameter column.
pub const PARAM_COLUMN_PREFIX: &str = "sp_";
/// The name of the items of a list column.
pub(crate) const LIST_ITEM: &str = "item";

/// The time zone of `last_updated`.
pub(crate) const UTC: &str = "UTC";

/// The column of one search parameter.
#[derive(Debug)]
pub struct ParamColumn {
    /// The parameter's code (`birthdate`).
    pub code: &'static str,
    /// The column's name (`sp_birthdate`).
    pub name: String,
    /// The parameter's type, which selects the normalisation.
    pub kind: SearchParamType,
    /// The parameter's expression for this resource type, parsed once.
    pub expression: Expression,
}

/// The columns of one resource type's projection files.
#[derive(Debug)]
pub struct ProjectionSchema {
    /// The resource type.
    pub resource_type: &'static str,
    /// The search-parameter columns, sorted by parameter code.
    pub params: Vec<ParamColumn>,
    /// The Arrow schema: the fixed columns, then `params`.
    pub arrow: SchemaRef,
}

/// The column name of a search parameter code: `sp_` + the code with `-` replaced by `_`.
pub fn column_name(code: &str) -> String {
    let mut name = String::with_capacity(PARAM_COLUMN_PREFIX.len() + code.len());
    name.push_str(PARAM_COLUMN_PREFIX);
    name.extend(code.chars().map(|c| if c == '-' { '_' } else { c.to_ascii_lowercase() }));
    name
}

/// Whether a parameter of this type gets a column.
fn is_projected(kind: SearchParamType) -> bool {
    !matches!(kind, SearchParamType::Composite | SearchParamType::Special)
}

/// Parameters whose values are fixed columns already.
const IN_FIXED_COLUMNS: [&str; 2] = ["_id", "_lastUpdated"];

/// The projection schema of `resource_type`, built on first use and kept for the life of the
/// process; `None` for a name that is not an R4 resource type.
pub fn schema_for(resource_type: &str) -> Option<&'static ProjectionSchema> {
    static SCHEMAS: OnceLock<Vec<OnceLock<ProjectionSchema>>> = OnceLock::new();
    let types = registry::resource_types();
    let index = types.binary_search(&resource_type).ok()?;
    let slots = SCHEMAS.get_or_init(|| types.iter().map(|_| OnceLock::new()).collect());
    let slot = slots.get(index)?;
    Some(slot.get_or_init(|| ProjectionSchema::build(types[index])))
}

impl ProjectionSchema {
    fn build(resource_type: &'static str) -> Self {
        let mut params = Vec::new();
        for param in registry::search_params(resource_type) {
            if !is_projected(param.kind) || IN_FIXED_COLUMNS.contains(&param.code) {
                continue;
            }
            let Some(source) = param.expression_for(resource_type) else { continue };
            match Expression::parse(source) {
                Ok(expression) => {
                    params.push(ParamColumn { code: param.code, name: column_name(param.code), kind: param.kind, expression })
                }
                // The registry's expressions all parse (a test checks it); never fail a batch over one.
                Err(error) => tracing::error!(resource_type, code = param.code, %error, "search parameter expression does not parse"),
            }
        }
        let mut fields = vec![
            Field::new(ID_COLUMN, DataType::Utf8, false),
            Field::new(VERSION_COLUMN, DataType::Int64, false),
            Field::new(LAST_UPDATED_COLUMN, DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into())), false),
            Field::new(DELETED_COLUMN, DataType::Boolean, false),
            Field::new(RESOURCE_COLUMN, DataType::Utf8, true),
        ];
        fields.extend(params.iter().map(|p| Field::new(&p.name, list_type(), true)));
        let metadata = HashMap::from([
            ("fhirlake.projection.schema_version".to_string(), SCHEMA_VERSION.to_string()),
            ("fhirlake.projection.resource_type".to_string(), resource_type.to_string()),
            ("fhirlake.projection.fhir_version".to_string(), registry::fhir_version().to_string()),
        ]);
        let arrow = Arc::new(Schema::new_with_metadata(fields, metadata));
        ProjectionSchema { resource_type, params, arrow }
    }

    /// The parameter column named `name` (`sp_family`).
    pub fn param(&self, name: &str) -> Option<&ParamColumn> {
        self.params.iter().find(|p| p.name == name)
    }
}

/// The Arrow type of a parameter column: a list of non-null strings.
pub(crate) fn list_type() -> DataType {
    DataType::List(Arc::new(list_item()))
}

/// The item field of a parameter column.
pub(crate) fn list_item() -> Field {
    Field::new(LIST_ITEM, DataType::Utf8, false)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn column_names_are_prefixed_and_safe() {
        assert_eq!(column_name("birthdate"), "sp_birthdate");
        assert_eq!(column_name("value-quantity"), "sp_value_quantity");
        assert_eq!(column_name("_tag"), "sp__tag");
    }

    #[test]
    fn every_resource_type_has_unique_safe_column_names_and_parsed_expressions() {
        let mut total = 0;
        for resource_type in registry::resource_types() {
            let schema = schema_for(resource_type).expect("a schema");
            let projected = registry::search_params(resource_type)
                .filter(|p| is_projected(p.kind) && p.expression_for(resource_type).is_some() && !IN_FIXED_COLUMNS.contains(&p.code))
                .count();
            assert_eq!(schema.params.len(), projected, "{resource_type}: an expression did not parse");
            let names: HashSet<&str> = schema.arrow.fields().iter().map(|f| f.name().as_str()).collect();
            assert_eq!(names.len(), schema.arrow.fields().len(), "{resource_type}: duplicate column names");
            for name in names {
                assert!(
                    name.starts_with(|c: char| c.is_ascii_lowercase())
                        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                    "{resource_type}: {name} is not a safe column name"
                );
            }
            total += schema.params.len();
        }
        assert!(total > 1000, "only {total} parameter columns");
    }

    #[test]
    fn patient_and_observation_have_the_expected_columns() {
        let patient = schema_for("Patient").expect("Patient");
        let fixed: Vec<&str> = patient.arrow.fields().iter().take(5).map(|f| f.name().as_str()).collect();
        assert_eq!(fixed, [ID_COLUMN, VERSION_COLUMN, LAST_UPDATED_COLUMN, DELETED_COLUMN, RESOURCE_COLUMN]);
        for name in ["sp_family", "sp_gender", "sp_birthdate", "sp_identifier", "sp_name", "sp__tag", "sp__profile"] {
            assert!(patient.param(name).is_some(), "Patient lacks {name}");
        }
        assert!(patient.param("sp__id").is_none() && patient.param("sp__lastupdated").is_none());
        assert_eq!(patient.param("sp_family").map(|p| p.expression.source()), Some("Patient.name.family"));
        let observation = schema_for("Observation").expect("Observation");
        for name in ["sp_code", "sp_subject", "sp_patient", "sp_value_quantity", "sp_date", "sp_category"] {
            assert!(observation.param(name).is_some(), "Observation lacks {name}");
        }
        assert!(observation.param("sp_code_value_quantity").is_none(), "composites are left out");
        let mut codes: Vec<&str> = observation.params.iter().map(|p| p.code).collect();
        let sorted = {
            let mut s = codes.clone();
            s.sort_unstable();
            s
        };
        assert_eq!(codes, sorted);
        codes.dedup();
        assert_eq!(codes.len(), observation.params.len());
        assert!(schema_for("NotAType").is_none());
    }
}

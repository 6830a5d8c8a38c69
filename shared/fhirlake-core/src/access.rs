//! Who may do what: the access a request was authenticated with, and the one decision every
//! data-plane interaction asks of it.
//!
//! A request signed with SigV4 (or authenticated by API Gateway's IAM authorizer) has
//! [`Access::Full`]: as in HealthLake, IAM policy decides who may call the data plane at all,
//! and the data plane then serves the whole datastore. A request with a SMART on FHIR token has
//! [`Access::Smart`], and every interaction asks [`Access::permit`] first:
//!
//! - the token's scopes must allow the interaction on the resource type (deny by default);
//! - the answer is a [`Permit`]: either the whole type, or only the resources some [`Clause`]
//!   admits. A clause is a compartment and/or a SMART 2.2 scope filter:
//!   - `patient/` scopes confine to the launch patient's compartment (`Patient/{patient}`);
//!   - `user/` scopes, when the datastore enables fine-grained authorization, confine to the
//!     compartment of the `fhirUser` (`Practitioner/{id}`, `Patient/{id}`, `RelatedPerson/{id}`)
//!     and the compartments of its related patients (see [`SmartAccess::with_related_patients`]);
//!     without it they reach the whole type, as `system/` scopes do;
//!   - a filtered scope (`patient/Observation.rs?category=laboratory`) admits only resources
//!     that match its query.
//!
//! Compartment membership is decided by the very rule that writes the compartment index
//! ([`crate::index::compartment_owners_of`]), so what a permit admits and what a compartment
//! search finds are the same set.

use fhirlake_fhir::registry;
use fhirlake_fhir::search::query::{self, Handling};
use fhirlake_fhir::search::{matcher, values, Criterion};
use fhirlake_smart::{Context, Grant, Interaction, Restriction, ScopeFilter, SmartError, TokenClaims};
use serde_json::Value;

use crate::index::compartment_owners_of;

/// A compartment: its type (`Patient`) and the id of the resource that owns it.
pub type Compartment = (String, String);

/// How a request was authenticated, and so what it may touch.
#[derive(Debug, Clone)]
pub enum Access {
    /// SigV4 or IAM: the whole datastore.
    Full,
    /// A validated SMART on FHIR token.
    Smart(Box<SmartAccess>),
}

/// The grants of a SMART token on one datastore.
#[derive(Debug, Clone)]
pub struct SmartAccess {
    claims: TokenClaims,
    fine_grained: bool,
    related_patients: Vec<String>,
}

impl SmartAccess {
    /// The access of `claims` on a datastore whose FineGrainedAuthorizationEnabled is
    /// `fine_grained`.
    pub fn new(claims: TokenClaims, fine_grained: bool) -> SmartAccess {
        SmartAccess { claims, fine_grained, related_patients: Vec::new() }
    }

    /// With the patients related to the `fhirUser` (a Practitioner's patients, a
    /// RelatedPerson's patient), whose compartments fine-grained `user/` scopes reach too.
    pub fn with_related_patients(mut self, patients: Vec<String>) -> SmartAccess {
        self.related_patients = patients;
        self
    }

    /// The token's claims.
    pub fn claims(&self) -> &TokenClaims {
        &self.claims
    }
}

/// What part of a resource type an allowed interaction may touch.
#[derive(Debug, Clone, PartialEq)]
pub enum Permit {
    /// Every resource of the type.
    All,
    /// Only the resources at least one clause admits (never empty).
    Only(Vec<Clause>),
}

/// One way a resource can be admitted: it is in the compartment (if any) and matches the scope
/// filter (if any).
#[derive(Debug, Clone, PartialEq)]
pub struct Clause {
    /// The compartment the resource must belong to.
    pub compartment: Option<Compartment>,
    /// The SMART 2.2 filter the resource must match.
    pub filter: Option<ScopeFilter>,
}

impl Access {
    /// The access's launch patient compartment (`Patient/{id}`), for the audit trail.
    pub fn patient(&self) -> Option<String> {
        match self {
            Access::Smart(smart) => smart.claims.launch_patient.as_ref().map(|p| format!("Patient/{p}")),
            Access::Full => None,
        }
    }

    /// Whether this is [`Access::Full`].
    pub fn is_full(&self) -> bool {
        matches!(self, Access::Full)
    }

    /// What `interaction` on `resource_type` may touch.
    ///
    /// # Errors
    /// [`SmartError::MissingLaunchContext`] for `patient/` scopes without a launch patient;
    /// [`SmartError::InsufficientScope`] when no scope allows the interaction, or the only
    /// allowing scopes are `user/` ones on a fine-grained datastore and the token names no
    /// `fhirUser` with a compartment.
    pub fn permit(&self, resource_type: &str, interaction: Interaction) -> Result<Permit, SmartError> {
        let Access::Smart(smart) = self else { return Ok(Permit::All) };
        let grant = smart.claims.authorize(resource_type, interaction)?;
        let Grant::Allowed(contexts) = grant else { return Err(SmartError::InsufficientScope) };
        let mut clauses = Vec::new();
        for granted in contexts {
            let compartments: Vec<Option<Compartment>> = match granted.context {
                Context::System => vec![None],
                Context::User if !smart.fine_grained => vec![None],
                Context::User => match &smart.claims.fhir_user {
                    Some(user) if registry::compartment_types().any(|c| c == user.resource_type) => {
                        let own = Some((user.resource_type.clone(), user.id.clone()));
                        let related = smart.related_patients.iter().map(|p| Some(("Patient".to_string(), p.clone())));
                        std::iter::once(own).chain(related).collect()
                    }
                    _ => continue,
                },
                Context::Patient => match &smart.claims.launch_patient {
                    Some(patient) => vec![Some(("Patient".to_string(), patient.clone()))],
                    None => return Err(SmartError::MissingLaunchContext),
                },
            };
            for compartment in compartments {
                match &granted.restriction {
                    Restriction::Unfiltered if compartment.is_none() => return Ok(Permit::All),
                    Restriction::Unfiltered => clauses.push(Clause { compartment, filter: None }),
                    Restriction::AnyOf(filters) => clauses
                        .extend(filters.iter().map(|filter| Clause { compartment: compartment.clone(), filter: Some(filter.clone()) })),
                }
            }
        }
        if clauses.is_empty() {
            return Err(SmartError::InsufficientScope);
        }
        Ok(Permit::Only(clauses))
    }

    /// Whether `interaction` reaches every resource of every type: what system-wide operations
    /// (`$export`, its status and files) require.
    pub fn permits_everything(&self, interaction: Interaction) -> bool {
        registry::resource_types().iter().all(|t| matches!(self.permit(t, interaction), Ok(Permit::All)))
    }
}

impl Permit {
    /// Whether the permit admits `resource` (of `resource_type`).
    pub fn admits(&self, resource_type: &str, resource: &Value) -> bool {
        match self {
            Permit::All => true,
            Permit::Only(clauses) => clauses.iter().any(|c| c.admits(resource_type, resource)),
        }
    }

    /// The one compartment every admitted resource belongs to, when the permit is exactly that
    /// compartment (one clause, no filter): then a compartment search finds exactly what the
    /// permit admits.
    pub fn exact_compartment(&self) -> Option<&Compartment> {
        match self {
            Permit::Only(clauses) => match clauses.as_slice() {
                [Clause { compartment: Some(c), filter: None }] => Some(c),
                _ => None,
            },
            Permit::All => None,
        }
    }

    /// The one clause of a permit that has exactly one, else `None`.
    pub fn single_clause(&self) -> Option<&Clause> {
        match self {
            Permit::Only(clauses) if clauses.len() == 1 => clauses.first(),
            _ => None,
        }
    }
}

impl Clause {
    /// Whether `resource` is in the compartment and matches the filter.
    pub fn admits(&self, resource_type: &str, resource: &Value) -> bool {
        let in_compartment = match &self.compartment {
            None => true,
            Some(compartment) => in_compartment(compartment, resource_type, resource),
        };
        in_compartment && self.filter.as_ref().is_none_or(|f| matches_filter(f, resource_type, resource))
    }

    /// The filter's criteria on `resource_type`, or `None` when the filter does not parse as a
    /// search of that type (such a filter admits nothing).
    pub fn filter_criteria(&self, resource_type: &str) -> Option<Vec<Criterion>> {
        match &self.filter {
            None => Some(Vec::new()),
            Some(filter) => filter_criteria(filter, resource_type),
        }
    }
}

/// Whether `resource` belongs to `compartment`: it is the compartment's own resource, or one of
/// its compartment parameters references it.
pub fn in_compartment(compartment: &Compartment, resource_type: &str, resource: &Value) -> bool {
    let (compartment_type, owner) = compartment;
    if resource_type == compartment_type && resource.get("id").and_then(Value::as_str) == Some(owner.as_str()) {
        return true;
    }
    compartment_owners_of(compartment_type, resource_type, resource).contains(owner)
}

fn filter_criteria(filter: &ScopeFilter, resource_type: &str) -> Option<Vec<Criterion>> {
    let request = query::parse(Some(resource_type), filter.params(), Handling::Strict).ok()?;
    let simple = request.criteria.iter().all(|c| c.path.is_empty());
    (simple && !request.criteria.is_empty()).then_some(request.criteria)
}

fn matches_filter(filter: &ScopeFilter, resource_type: &str, resource: &Value) -> bool {
    let Some(criteria) = filter_criteria(filter, resource_type) else { return false };
    let now = chrono::Utc::now().timestamp();
    criteria.iter().all(|c| matcher::matches_at(c, &values::extract(resource_type, c.param, resource), now))
}

#[cfg(test)]
mod tests {
    use fhirlake_smart::{ScopeSet, SmartVersion};
    use serde_json::json;

    use super::*;

    fn smart(scope: &str, patient: Option<&str>, fhir_user: Option<&str>, fine_grained: bool) -> Access {
        let mut payload = json!({"iss": "https://idp.test", "exp": 4_000_000_000i64, "scope": scope, "sub": "u1"});
        if let Some(p) = patient {
            payload["patient"] = json!(p);
        }
        if let Some(u) = fhir_user {
            payload["fhirUser"] = json!(u);
        }
        let claims = TokenClaims::from_claims(&payload, SmartVersion::V2).unwrap();
        assert_eq!(claims.scopes, ScopeSet::parse(scope));
        Access::Smart(Box::new(SmartAccess::new(claims, fine_grained)))
    }

    fn observation(subject: &str, category: &str) -> Value {
        json!({"resourceType": "Observation", "id": "o1", "status": "final",
               "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": category}]}],
               "code": {"text": "x"}, "subject": {"reference": subject}})
    }

    #[test]
    fn full_access_permits_everything() {
        assert_eq!(Access::Full.permit("Observation", Interaction::Delete).unwrap(), Permit::All);
        assert!(Access::Full.permits_everything(Interaction::Read));
    }

    #[test]
    fn patient_scopes_confine_to_the_launch_patient() {
        let access = smart("patient/Observation.rs patient/Patient.r", Some("p1"), None, false);
        let permit = access.permit("Observation", Interaction::Search).unwrap();
        assert_eq!(permit.exact_compartment(), Some(&("Patient".to_string(), "p1".to_string())));
        assert!(permit.admits("Observation", &observation("Patient/p1", "laboratory")));
        assert!(!permit.admits("Observation", &observation("Patient/p2", "laboratory")));
        let patient = access.permit("Patient", Interaction::Read).unwrap();
        assert!(patient.admits("Patient", &json!({"resourceType": "Patient", "id": "p1"})));
        assert!(!patient.admits("Patient", &json!({"resourceType": "Patient", "id": "p2"})));
        assert_eq!(access.permit("Observation", Interaction::Create), Err(SmartError::InsufficientScope));
        assert_eq!(access.permit("Condition", Interaction::Read), Err(SmartError::InsufficientScope));
        assert_eq!(access.patient().as_deref(), Some("Patient/p1"));
        assert!(!access.permits_everything(Interaction::Read));
    }

    #[test]
    fn patient_scopes_without_a_launch_patient_are_refused() {
        let access = smart("patient/*.rs", None, None, false);
        assert_eq!(access.permit("Observation", Interaction::Read), Err(SmartError::MissingLaunchContext));
    }

    #[test]
    fn system_scopes_and_unconfined_user_scopes_reach_the_whole_type() {
        assert_eq!(smart("system/*.rs", None, None, false).permit("Observation", Interaction::Read).unwrap(), Permit::All);
        assert!(smart("system/*.read", None, None, false).permits_everything(Interaction::Search));
        let user = smart("user/*.rs", None, Some("Practitioner/dr1"), false);
        assert_eq!(user.permit("Observation", Interaction::Read).unwrap(), Permit::All);
        // A patient scope beside a system scope: the system scope wins.
        let both = smart("patient/Observation.rs system/Observation.rs", Some("p1"), None, false);
        assert_eq!(both.permit("Observation", Interaction::Search).unwrap(), Permit::All);
    }

    #[test]
    fn fine_grained_user_scopes_confine_to_the_fhir_user_compartment() {
        let access = smart("user/*.rs", None, Some("Practitioner/dr1"), true);
        let permit = access.permit("Encounter", Interaction::Read).unwrap();
        assert_eq!(permit.exact_compartment(), Some(&("Practitioner".to_string(), "dr1".to_string())));
        let mine = json!({"resourceType": "Encounter", "id": "e1", "status": "finished", "class": {"code": "AMB"},
                          "participant": [{"individual": {"reference": "Practitioner/dr1"}}]});
        let other = json!({"resourceType": "Encounter", "id": "e2", "status": "finished", "class": {"code": "AMB"},
                           "participant": [{"individual": {"reference": "Practitioner/dr2"}}]});
        assert!(permit.admits("Encounter", &mine));
        assert!(!permit.admits("Encounter", &other));
        // A practitioner's patients: their compartments are reached too, beside the practitioner's own.
        let with_patients = match smart("user/*.rs", None, Some("Practitioner/dr1"), true) {
            Access::Smart(s) => Access::Smart(Box::new(s.with_related_patients(vec!["p7".into()]))),
            Access::Full => unreachable!(),
        };
        let permit = with_patients.permit("Observation", Interaction::Read).unwrap();
        assert_eq!(permit.exact_compartment(), None);
        assert!(permit.admits("Observation", &observation("Patient/p7", "laboratory")));
        assert!(!permit.admits("Observation", &observation("Patient/p8", "laboratory")));
        // Person has no compartment: a fine-grained user scope grants nothing then.
        let person = smart("user/*.rs", None, Some("Person/x"), true);
        assert_eq!(person.permit("Encounter", Interaction::Read), Err(SmartError::InsufficientScope));
        let nobody = smart("user/*.rs", None, None, true);
        assert_eq!(nobody.permit("Encounter", Interaction::Read), Err(SmartError::InsufficientScope));
    }

    #[test]
    fn filtered_scopes_admit_only_matching_resources_of_the_compartment() {
        let access = smart("patient/Observation.rs?category=laboratory", Some("p1"), None, false);
        let permit = access.permit("Observation", Interaction::Search).unwrap();
        assert_eq!(permit.exact_compartment(), None);
        let clause = permit.single_clause().unwrap();
        assert_eq!(clause.filter_criteria("Observation").unwrap().len(), 1);
        assert!(permit.admits("Observation", &observation("Patient/p1", "laboratory")));
        assert!(!permit.admits("Observation", &observation("Patient/p1", "vital-signs")));
        assert!(!permit.admits("Observation", &observation("Patient/p2", "laboratory")));
    }

    #[test]
    fn a_filter_that_is_not_a_search_of_the_type_admits_nothing() {
        let access = smart("patient/Observation.rs?nonsense=1", Some("p1"), None, false);
        let permit = access.permit("Observation", Interaction::Read).unwrap();
        assert!(!permit.admits("Observation", &observation("Patient/p1", "laboratory")));
        assert!(permit.single_clause().unwrap().filter_criteria("Observation").is_none());
    }
}

//! What a validated SMART access token says about its bearer. Pure, no IO.
//!
//! [`TokenClaims::from_claims`] reads the JSON payload of a token whose signature and time
//! claims were already checked ([`TokenValidator`](crate::TokenValidator) does both):
//!
//! | field | claims, first present wins |
//! | --- | --- |
//! | `subject` | `sub` |
//! | `client_id` | `client_id`, `azp`, `cid` |
//! | `issuer` | `iss` (required) |
//! | `scopes` | `scope` (space-separated string), `scp` (array of strings, or a string) |
//! | `launch_patient` | `patient`, `launch_response_patient` (HealthLake) |
//! | `fhir_user` | `fhirUser` |
//! | `expires_at` | `exp` (required, seconds since the epoch) |
//! | `jwt_id` | `jti` |
//!
//! `patient` must be a FHIR id (`[A-Za-z0-9\-\.]{1,64}`). HealthLake's `launch_response_patient`
//! may be `Patient/123` or an absolute URL ending in `/Patient/123`; either is reduced to the id.
//! `fhirUser` is a relative reference `Type/id` or an absolute URL ending in one, with `Type` one
//! of `Practitioner`, `Patient`, `RelatedPerson`, `Person`. A claim that is present but does not
//! have its expected shape makes the whole token invalid rather than being skipped: these claims
//! decide whose data the bearer reaches, and an issuer that sends garbage in them is not trusted
//! to have meant anything narrower.
//!
//! A token is usable only after [`TokenClaims::check_launch_context`]: `patient/` scopes without
//! a launch patient have no compartment to apply to, so they are refused (403), not widened.
//! [`TokenClaims::authorize`] does that check and the scope check in one call.

use serde_json::{Map, Value};

use crate::error::SmartError;
use crate::scopes::{Context, Grant, Interaction, ScopeSet, SmartVersion};

/// The FHIR resource types a `fhirUser` claim may name.
pub const FHIR_USER_TYPES: [&str; 4] = ["Practitioner", "Patient", "RelatedPerson", "Person"];

/// The user a token was issued to, from the `fhirUser` claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FhirUser {
    /// One of [`FHIR_USER_TYPES`].
    pub resource_type: String,
    /// The FHIR id of that resource.
    pub id: String,
}

/// The claims of a validated SMART access token that fhirlake uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenClaims {
    /// `sub`.
    pub subject: Option<String>,
    /// `client_id`, else `azp`, else `cid`.
    pub client_id: Option<String>,
    /// `iss`.
    pub issuer: String,
    /// The parsed `scope` or `scp` claim.
    pub scopes: ScopeSet,
    /// The FHIR id of the patient in context, from `patient` or `launch_response_patient`.
    pub launch_patient: Option<String>,
    /// The `fhirUser` claim.
    pub fhir_user: Option<FhirUser>,
    /// `exp`, seconds since the Unix epoch.
    pub expires_at: i64,
    /// `jti`.
    pub jwt_id: Option<String>,
}

impl TokenClaims {
    /// Reads the claims of a token payload, parsing scopes with the rules of `version`.
    ///
    /// # Errors
    /// [`SmartError::InvalidClaim`] naming the claim when a required claim is missing or a claim
    /// has the wrong shape; [`SmartError::Malformed`] when the payload is not a JSON object.
    pub fn from_claims(payload: &Value, version: SmartVersion) -> Result<TokenClaims, SmartError> {
        let claims = payload.as_object().ok_or(SmartError::Malformed("payload is not a json object"))?;
        let issuer = optional_string(claims, "iss")?.ok_or(SmartError::InvalidClaim("iss"))?;
        let expires_at = numeric_date(claims, "exp")?.ok_or(SmartError::InvalidClaim("exp"))?;
        let client_id = match optional_string(claims, "client_id")? {
            Some(id) => Some(id),
            None => match optional_string(claims, "azp")? {
                Some(id) => Some(id),
                None => optional_string(claims, "cid")?,
            },
        };
        Ok(TokenClaims {
            subject: optional_string(claims, "sub")?,
            client_id,
            issuer,
            scopes: scopes(claims, version)?,
            launch_patient: launch_patient(claims)?,
            fhir_user: optional_string(claims, "fhirUser")?
                .map(|u| parse_fhir_user(&u).ok_or(SmartError::InvalidClaim("fhirUser")))
                .transpose()?,
            expires_at,
            jwt_id: optional_string(claims, "jti")?,
        })
    }

    /// Refuses a token whose `patient/` scopes have no launch patient to apply to.
    ///
    /// # Errors
    /// [`SmartError::MissingLaunchContext`] (403).
    pub fn check_launch_context(&self) -> Result<(), SmartError> {
        if self.scopes.has_context(Context::Patient) && self.launch_patient.is_none() {
            return Err(SmartError::MissingLaunchContext);
        }
        Ok(())
    }

    /// Checks the launch context, then what the scopes grant for `interaction` on `resource_type`.
    ///
    /// # Errors
    /// [`SmartError::MissingLaunchContext`] as in [`check_launch_context`](Self::check_launch_context),
    /// [`SmartError::InsufficientScope`] when no scope allows the interaction. An `Ok` grant is
    /// always [`Grant::Allowed`].
    pub fn authorize(&self, resource_type: &str, interaction: Interaction) -> Result<Grant, SmartError> {
        self.check_launch_context()?;
        match self.scopes.grants(resource_type, interaction) {
            Grant::Denied => Err(SmartError::InsufficientScope),
            grant => Ok(grant),
        }
    }
}

/// Whether `id` is a FHIR id: `[A-Za-z0-9\-\.]{1,64}`.
pub fn is_fhir_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

fn optional_string(claims: &Map<String, Value>, name: &'static str) -> Result<Option<String>, SmartError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(SmartError::InvalidClaim(name)),
    }
}

/// A JSON number of seconds; fractions are truncated, as RFC 7519 allows them.
fn numeric_date(claims: &Map<String, Value>, name: &'static str) -> Result<Option<i64>, SmartError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Ok(Some(i)),
            (None, Some(f)) if f.is_finite() && f.abs() < 1e15 => Ok(Some(f.trunc() as i64)),
            _ => Err(SmartError::InvalidClaim(name)),
        },
        Some(_) => Err(SmartError::InvalidClaim(name)),
    }
}

pub(crate) fn optional_numeric_date(claims: &Value, name: &'static str) -> Result<Option<i64>, SmartError> {
    match claims.as_object() {
        Some(map) => numeric_date(map, name),
        None => Err(SmartError::Malformed("payload is not a json object")),
    }
}

fn scopes(claims: &Map<String, Value>, version: SmartVersion) -> Result<ScopeSet, SmartError> {
    if let Some(scope) = optional_string(claims, "scope")? {
        return Ok(ScopeSet::parse_for(version, &scope));
    }
    match claims.get("scp") {
        None | Some(Value::Null) => Ok(ScopeSet::default()),
        Some(Value::String(s)) => Ok(ScopeSet::parse_for(version, s)),
        Some(Value::Array(items)) => {
            let items: Option<Vec<&str>> = items.iter().map(Value::as_str).collect();
            Ok(ScopeSet::from_list(version, items.ok_or(SmartError::InvalidClaim("scp"))?))
        }
        Some(_) => Err(SmartError::InvalidClaim("scp")),
    }
}

fn launch_patient(claims: &Map<String, Value>) -> Result<Option<String>, SmartError> {
    if let Some(patient) = optional_string(claims, "patient")? {
        return if is_fhir_id(&patient) { Ok(Some(patient)) } else { Err(SmartError::InvalidClaim("patient")) };
    }
    match optional_string(claims, "launch_response_patient")? {
        None => Ok(None),
        Some(reference) => match parse_reference(&reference) {
            Some(("Patient", id)) => Ok(Some(id.to_string())),
            _ => Err(SmartError::InvalidClaim("launch_response_patient")),
        },
    }
}

fn parse_fhir_user(value: &str) -> Option<FhirUser> {
    let (resource_type, id) = parse_reference(value)?;
    FHIR_USER_TYPES.contains(&resource_type).then(|| FhirUser { resource_type: resource_type.to_string(), id: id.to_string() })
}

/// `Type/id`, or an absolute http(s) URL whose path ends in `/Type/id`.
fn parse_reference(value: &str) -> Option<(&str, &str)> {
    let (resource_type, id) = match value.strip_prefix("https://").or_else(|| value.strip_prefix("http://")) {
        Some(rest) => {
            if rest.contains(['?', '#']) {
                return None;
            }
            let (host, path) = rest.split_once('/')?;
            if host.is_empty() {
                return None;
            }
            let mut segments = path.rsplitn(3, '/');
            let id = segments.next()?;
            (segments.next()?, id)
        }
        None => value.split_once('/')?,
    };
    (crate::scopes::is_resource_type_name(resource_type) && is_fhir_id(id)).then_some((resource_type, id))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn claims(extra: Value) -> Value {
        let mut base = json!({ "iss": "https://issuer.example", "exp": 2_000_000_000i64 });
        base.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        base
    }

    fn parse(extra: Value) -> Result<TokenClaims, SmartError> {
        TokenClaims::from_claims(&claims(extra), SmartVersion::V2)
    }

    #[test]
    fn reads_every_field() {
        let c = parse(json!({
            "sub": "user-1",
            "client_id": "app",
            "azp": "other",
            "scope": "launch/patient patient/*.rs",
            "patient": "pat-1",
            "fhirUser": "https://ehr.example/fhir/Practitioner/abc",
            "jti": "j-1",
            "exp": 1_900_000_000i64,
        }))
        .unwrap();
        assert_eq!(c.subject.as_deref(), Some("user-1"));
        assert_eq!(c.client_id.as_deref(), Some("app"));
        assert_eq!(c.issuer, "https://issuer.example");
        assert_eq!(c.launch_patient.as_deref(), Some("pat-1"));
        assert_eq!(c.fhir_user, Some(FhirUser { resource_type: "Practitioner".into(), id: "abc".into() }));
        assert_eq!(c.expires_at, 1_900_000_000);
        assert_eq!(c.jwt_id.as_deref(), Some("j-1"));
        assert!(c.scopes.grants("Observation", Interaction::Read).allows(Context::Patient));
        assert!(c.check_launch_context().is_ok());
    }

    #[test]
    fn required_claims() {
        let no_iss = TokenClaims::from_claims(&json!({ "exp": 1 }), SmartVersion::V2);
        assert_eq!(no_iss, Err(SmartError::InvalidClaim("iss")));
        let no_exp = TokenClaims::from_claims(&json!({ "iss": "x" }), SmartVersion::V2);
        assert_eq!(no_exp, Err(SmartError::InvalidClaim("exp")));
        assert_eq!(parse(json!({ "exp": "soon" })), Err(SmartError::InvalidClaim("exp")));
        assert_eq!(parse(json!({ "exp": 1_900_000_000.75 })).unwrap().expires_at, 1_900_000_000);
        assert_eq!(TokenClaims::from_claims(&json!([1]), SmartVersion::V2), Err(SmartError::Malformed("payload is not a json object")));
        assert_eq!(parse(json!({ "sub": 7 })), Err(SmartError::InvalidClaim("sub")));
    }

    #[test]
    fn client_id_falls_back_to_azp_then_cid() {
        assert_eq!(parse(json!({ "azp": "a", "cid": "c" })).unwrap().client_id.as_deref(), Some("a"));
        assert_eq!(parse(json!({ "cid": "c" })).unwrap().client_id.as_deref(), Some("c"));
        assert_eq!(parse(json!({})).unwrap().client_id, None);
    }

    #[test]
    fn launch_patient_from_patient_or_launch_response_patient() {
        let cases = [
            (json!({ "patient": "123" }), Some("123")),
            (json!({ "patient": "a-b.C" }), Some("a-b.C")),
            (json!({ "launch_response_patient": "Patient/123" }), Some("123")),
            (json!({ "launch_response_patient": "https://healthlake.us-east-1.amazonaws.com/datastore/abc/r4/Patient/p-9" }), Some("p-9")),
            (json!({ "patient": "first", "launch_response_patient": "Patient/second" }), Some("first")),
            (json!({}), None),
        ];
        for (extra, expected) in cases {
            assert_eq!(parse(extra.clone()).unwrap().launch_patient.as_deref(), expected, "{extra}");
        }
        let invalid = [
            json!({ "patient": "" }),
            json!({ "patient": "a/b" }),
            json!({ "patient": "x".repeat(65) }),
            json!({ "patient": "has space" }),
            json!({ "patient": 123 }),
            json!({ "launch_response_patient": "123" }),
            json!({ "launch_response_patient": "Practitioner/123" }),
            json!({ "launch_response_patient": "Patient/" }),
            json!({ "launch_response_patient": "Patient/1/_history/2" }),
            json!({ "launch_response_patient": "https://example.com/Patient/1?x=y" }),
            json!({ "launch_response_patient": "https://Patient/1" }),
            json!({ "launch_response_patient": "ftp://example.com/Patient/1" }),
        ];
        for extra in invalid {
            let name = if extra.get("patient").is_some() { "patient" } else { "launch_response_patient" };
            assert_eq!(parse(extra.clone()), Err(SmartError::InvalidClaim(name)), "{extra}");
        }
    }

    #[test]
    fn fhir_user_relative_or_absolute() {
        let ok = [
            ("Practitioner/abc", "Practitioner", "abc"),
            ("Patient/x", "Patient", "x"),
            ("RelatedPerson/rp-1", "RelatedPerson", "rp-1"),
            ("Person/p.1", "Person", "p.1"),
            ("https://ehr.example/fhir/r4/Practitioner/abc", "Practitioner", "abc"),
            ("http://localhost:8080/Patient/x", "Patient", "x"),
        ];
        for (value, resource_type, id) in ok {
            let user = parse(json!({ "fhirUser": value })).unwrap().fhir_user.unwrap();
            assert_eq!((user.resource_type.as_str(), user.id.as_str()), (resource_type, id), "{value}");
        }
        for bad in ["Organization/1", "Practitioner", "Practitioner/", "practitioner/1", "https://ehr.example/", "Practitioner/a b"] {
            assert_eq!(parse(json!({ "fhirUser": bad })), Err(SmartError::InvalidClaim("fhirUser")), "{bad}");
        }
    }

    #[test]
    fn scopes_from_scope_or_scp() {
        let c = parse(json!({ "scp": ["patient/Observation.rs", "launch/patient"], "patient": "1" })).unwrap();
        assert!(c.scopes.grants("Observation", Interaction::Search).allows(Context::Patient));
        assert!(c.scopes.has(crate::NonResourceScope::LaunchPatient));
        let c = parse(json!({ "scp": "user/*.r system/*.s" })).unwrap();
        assert!(c.scopes.grants("Patient", Interaction::Read).allows(Context::User));
        // `scope` wins over `scp`.
        let c = parse(json!({ "scope": "user/Patient.r", "scp": ["user/*.cruds"] })).unwrap();
        assert!(!c.scopes.grants("Observation", Interaction::Read).is_allowed());
        assert_eq!(parse(json!({ "scp": [1, 2] })), Err(SmartError::InvalidClaim("scp")));
        assert_eq!(parse(json!({ "scope": ["a"] })), Err(SmartError::InvalidClaim("scope")));
        assert!(parse(json!({})).unwrap().scopes.is_empty());
    }

    #[test]
    fn v1_datastore_parses_claims_with_v1_rules() {
        let c = TokenClaims::from_claims(&claims(json!({ "scope": "user/*.rs user/Patient.read" })), SmartVersion::V1).unwrap();
        assert_eq!(c.scopes.ignored(), ["user/*.rs"]);
        assert!(!c.scopes.grants("Observation", Interaction::Read).is_allowed());
    }

    #[test]
    fn patient_scope_without_launch_patient_is_denied() {
        let c = parse(json!({ "scope": "patient/Observation.rs user/Patient.r" })).unwrap();
        assert_eq!(c.check_launch_context(), Err(SmartError::MissingLaunchContext));
        assert_eq!(c.authorize("Patient", Interaction::Read), Err(SmartError::MissingLaunchContext));
        assert_eq!(SmartError::MissingLaunchContext.http_status(), 403);

        let c = parse(json!({ "scope": "user/Patient.r" })).unwrap();
        assert!(c.check_launch_context().is_ok());
        let c = parse(json!({ "scope": "patient/Observation.rs", "launch_response_patient": "Patient/7" })).unwrap();
        assert!(c.check_launch_context().is_ok());
        // An ignored patient scope does not demand a launch patient.
        let c = parse(json!({ "scope": "patient/Observation.sr user/Patient.r" })).unwrap();
        assert!(c.check_launch_context().is_ok());
    }

    #[test]
    fn authorize_denies_by_default() {
        let c = parse(json!({ "scope": "user/Patient.rs", "patient": "1" })).unwrap();
        assert!(c.authorize("Patient", Interaction::Search).unwrap().allows(Context::User));
        assert_eq!(c.authorize("Patient", Interaction::Update), Err(SmartError::InsufficientScope));
        assert_eq!(c.authorize("Observation", Interaction::Read), Err(SmartError::InsufficientScope));
    }

    #[test]
    fn fhir_ids() {
        assert!(is_fhir_id("A-z.0"));
        assert!(is_fhir_id(&"1".repeat(64)));
        assert!(!is_fhir_id(&"1".repeat(65)));
        assert!(!is_fhir_id(""));
        assert!(!is_fhir_id("a_b"));
        assert!(!is_fhir_id("é"));
    }
}

//! SMART on FHIR scopes: what a token's `scope` claim allows. Pure, no IO.
//!
//! A resource scope is `context/Type.permissions[?query]`:
//!
//! | part | grammar |
//! | --- | --- |
//! | context | `patient`, `user` or `system` ([`Context`]) |
//! | Type | `*` or a FHIR resource type name, `[A-Z][A-Za-z]+` |
//! | permissions, SMART 1 | `read` (read and search), `write` (create, update, delete), `*` (all) |
//! | permissions, SMART 2 | one or more of `c r u d s`, each at most once and in that order (`rs` yes, `sr` no) |
//! | query, SMART 2.2 | `param=value` pairs joined by `&`, percent-decoded; only with permissions within `rs` |
//!
//! The other scopes SMART defines (`launch`, `launch/patient`, `launch/encounter`, `openid`,
//! `fhirUser`, `profile`, `offline_access`, `online_access`) are kept as [`NonResourceScope`]s.
//! Anything else, or anything that does not follow the grammar, is ignored and listed in
//! [`ScopeSet::ignored`]: an unparseable scope can only ever take access away, never add it.
//!
//! # Versions
//!
//! [`SmartVersion::V1`] accepts only the SMART 1 permissions and no query. [`SmartVersion::V2`]
//! accepts SMART 2 and 2.2 syntax *and* SMART 1 permissions: the SMART 2 specification asks
//! servers to keep honouring the older scopes during the transition, and clients registered
//! before a datastore moved to SMART 2 still ask for `patient/*.read`. A v1 scope on a v2
//! datastore means exactly what it meant in SMART 1 (`read` = read + search, `write` =
//! create + update + delete), so accepting it widens nothing.
//!
//! # Granular scopes
//!
//! A SMART 2.2 scope such as
//! `patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory`
//! grants read and search of `Observation` only where every `(param, value)` of its
//! [`ScopeFilter`] matches. A filtered scope asking for `c`, `u` or `d` is ignored as a whole:
//! the filter cannot be checked on a write here, and dropping the scope is the safe reading.
//! When several scopes of one context allow an interaction, the grant for that context is the
//! union: unfiltered if any of them has no filter, else any one of their filters
//! ([`Restriction`]).
//!
//! # Resource types
//!
//! A scope's type is checked for syntax only; [`ScopeSet::grants`] matches it by exact name (or
//! `*`), so a scope naming a type that does not exist grants nothing unless the caller asks about
//! that name, and the caller asks only about types its router knows. [`ScopeSet::grants`] denies
//! any name that is not syntactically a resource type, even under `*`.
//! [`ScopeSet::resource_types`] lists the names for a caller that wants to report unknown ones.
//!
//! ```
//! use fhirlake_smart::{Context, Interaction, ScopeSet};
//!
//! let scopes = ScopeSet::parse("launch/patient patient/Observation.rs user/*.read bogus");
//! assert!(scopes.grants("Observation", Interaction::Search).allows(Context::Patient));
//! assert!(scopes.grants("Patient", Interaction::Read).allows(Context::User));
//! assert!(!scopes.grants("Patient", Interaction::Update).is_allowed());
//! assert_eq!(scopes.ignored(), ["bogus"]);
//! ```

use std::fmt;

/// Which SMART App Launch scope syntax a datastore accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SmartVersion {
    /// SMART App Launch 1.0: `read`, `write` and `*` only.
    V1,
    /// SMART App Launch 2.x: `cruds` permissions and granular queries, plus the SMART 1 forms.
    #[default]
    V2,
}

/// Whose data a resource scope reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Context {
    /// `patient/`: the launch patient's compartment only.
    Patient,
    /// `user/`: whatever the signed-in user may see.
    User,
    /// `system/`: a backend service, no user.
    System,
}

impl Context {
    /// All contexts, in the order grants list them.
    pub const ALL: [Context; 3] = [Context::Patient, Context::User, Context::System];

    /// The scope prefix, without the slash.
    pub fn as_str(self) -> &'static str {
        match self {
            Context::Patient => "patient",
            Context::User => "user",
            Context::System => "system",
        }
    }

    fn from_prefix(s: &str) -> Option<Context> {
        Context::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// A FHIR REST interaction, as SMART 2 permissions name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Interaction {
    /// `c`: create.
    Create,
    /// `r`: read, vread and history of one resource.
    Read,
    /// `u`: update and patch.
    Update,
    /// `d`: delete.
    Delete,
    /// `s`: search.
    Search,
}

impl Interaction {
    /// All interactions, in `cruds` order.
    pub const ALL: [Interaction; 5] =
        [Interaction::Create, Interaction::Read, Interaction::Update, Interaction::Delete, Interaction::Search];

    /// The SMART 2 permission letter.
    pub fn letter(self) -> char {
        match self {
            Interaction::Create => 'c',
            Interaction::Read => 'r',
            Interaction::Update => 'u',
            Interaction::Delete => 'd',
            Interaction::Search => 's',
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of [`Interaction`]s.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Interactions(u8);

impl Interactions {
    /// SMART 1 `read`: read and search.
    pub const READ: Interactions = Interactions(0b10010);
    /// SMART 1 `write`: create, update and delete.
    pub const WRITE: Interactions = Interactions(0b01101);
    /// SMART 1 `*` or SMART 2 `cruds`.
    pub const ALL: Interactions = Interactions(0b11111);

    /// Whether `interaction` is in the set.
    pub fn contains(self, interaction: Interaction) -> bool {
        self.0 & interaction.bit() != 0
    }

    /// Whether every member is read or search.
    pub fn is_read_only(self) -> bool {
        self.0 & !Interactions::READ.0 == 0
    }

    /// The members, in `cruds` order.
    pub fn iter(self) -> impl Iterator<Item = Interaction> {
        Interaction::ALL.into_iter().filter(move |i| self.contains(*i))
    }

    fn insert(&mut self, interaction: Interaction) {
        self.0 |= interaction.bit();
    }
}

impl fmt::Debug for Interactions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let letters: String = self.iter().map(Interaction::letter).collect();
        write!(f, "Interactions({letters})")
    }
}

/// A scope that names no resource type: launch context, identity and refresh requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NonResourceScope {
    /// `launch`: an EHR launch, with the context of the `launch` parameter.
    Launch,
    /// `launch/patient`: a standalone launch that asks for a patient to be selected.
    LaunchPatient,
    /// `launch/encounter`: a standalone launch that asks for an encounter to be selected.
    LaunchEncounter,
    /// `openid`: an OpenID Connect id token.
    OpenId,
    /// `fhirUser`: the `fhirUser` claim in the id token.
    FhirUser,
    /// `profile`: the SMART 1 predecessor of `fhirUser`.
    Profile,
    /// `offline_access`: a refresh token usable after the user signs out.
    OfflineAccess,
    /// `online_access`: a refresh token valid while the user is signed in.
    OnlineAccess,
}

impl NonResourceScope {
    /// All of them.
    pub const ALL: [NonResourceScope; 8] = [
        NonResourceScope::Launch,
        NonResourceScope::LaunchPatient,
        NonResourceScope::LaunchEncounter,
        NonResourceScope::OpenId,
        NonResourceScope::FhirUser,
        NonResourceScope::Profile,
        NonResourceScope::OfflineAccess,
        NonResourceScope::OnlineAccess,
    ];

    /// The scope as written in a `scope` claim.
    pub fn as_str(self) -> &'static str {
        match self {
            NonResourceScope::Launch => "launch",
            NonResourceScope::LaunchPatient => "launch/patient",
            NonResourceScope::LaunchEncounter => "launch/encounter",
            NonResourceScope::OpenId => "openid",
            NonResourceScope::FhirUser => "fhirUser",
            NonResourceScope::Profile => "profile",
            NonResourceScope::OfflineAccess => "offline_access",
            NonResourceScope::OnlineAccess => "online_access",
        }
    }
}

/// The query of a SMART 2.2 granular scope: every pair must match for the scope to apply.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ScopeFilter {
    params: Vec<(String, String)>,
}

impl ScopeFilter {
    /// The `(search parameter, value)` pairs, percent-decoded, in the order of the scope.
    pub fn params(&self) -> &[(String, String)] {
        &self.params
    }
}

/// One parsed resource scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceScope {
    /// `patient/`, `user/` or `system/`.
    pub context: Context,
    /// `*` or a resource type name.
    pub resource_type: String,
    /// What the scope allows.
    pub interactions: Interactions,
    /// The SMART 2.2 query, if any; then `interactions` is within read and search.
    pub filter: Option<ScopeFilter>,
}

impl ResourceScope {
    fn covers(&self, resource_type: &str, interaction: Interaction) -> bool {
        (self.resource_type == "*" || self.resource_type == resource_type) && self.interactions.contains(interaction)
    }
}

/// How a granted interaction is limited within one context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restriction {
    /// Some allowing scope has no filter.
    Unfiltered,
    /// Only resources matching at least one of these filters (all pairs of it) are allowed.
    AnyOf(Vec<ScopeFilter>),
}

/// The grant of one context for one interaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextGrant {
    /// The context whose scopes allow the interaction.
    pub context: Context,
    /// Whether granular filters limit it.
    pub restriction: Restriction,
}

/// What a [`ScopeSet`] allows for one resource type and interaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// No scope allows it.
    Denied,
    /// Allowed through these contexts (in [`Context::ALL`] order, never empty).
    Allowed(Vec<ContextGrant>),
}

impl Grant {
    /// Whether any context allows the interaction.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Grant::Allowed(_))
    }

    /// Whether `context` allows the interaction (filtered or not).
    pub fn allows(&self, context: Context) -> bool {
        self.restriction(context).is_some()
    }

    /// The restriction under which `context` allows the interaction, if it does.
    pub fn restriction(&self, context: Context) -> Option<&Restriction> {
        match self {
            Grant::Denied => None,
            Grant::Allowed(grants) => grants.iter().find(|g| g.context == context).map(|g| &g.restriction),
        }
    }

    /// The contexts that allow the interaction.
    pub fn contexts(&self) -> Vec<Context> {
        match self {
            Grant::Denied => Vec::new(),
            Grant::Allowed(grants) => grants.iter().map(|g| g.context).collect(),
        }
    }
}

/// The parsed `scope` claim of a token.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScopeSet {
    resource: Vec<ResourceScope>,
    other: Vec<NonResourceScope>,
    ignored: Vec<String>,
}

impl ScopeSet {
    /// Parses a space-separated `scope` claim with [`SmartVersion::V2`] rules (v2, v2.2 and v1).
    pub fn parse(scope_claim: &str) -> ScopeSet {
        ScopeSet::parse_for(SmartVersion::V2, scope_claim)
    }

    /// Parses a space-separated `scope` claim with the rules of `version`.
    pub fn parse_for(version: SmartVersion, scope_claim: &str) -> ScopeSet {
        ScopeSet::from_list(version, scope_claim.split_ascii_whitespace())
    }

    /// Parses scopes given one per item (an `scp` array). An item holding whitespace is not one
    /// scope and is ignored whole.
    pub fn from_list<'a>(version: SmartVersion, scopes: impl IntoIterator<Item = &'a str>) -> ScopeSet {
        let mut set = ScopeSet::default();
        for scope in scopes {
            if scope.is_empty() {
                continue;
            }
            if scope.chars().any(char::is_whitespace) {
                set.ignored.push(scope.to_string());
            } else if let Some(other) = NonResourceScope::ALL.into_iter().find(|s| s.as_str() == scope) {
                if !set.other.contains(&other) {
                    set.other.push(other);
                }
            } else if let Some(parsed) = parse_resource_scope(version, scope) {
                if !set.resource.contains(&parsed) {
                    set.resource.push(parsed);
                }
            } else {
                set.ignored.push(scope.to_string());
            }
        }
        set
    }

    /// What the scopes allow for `interaction` on `resource_type`. Deny by default.
    pub fn grants(&self, resource_type: &str, interaction: Interaction) -> Grant {
        if !is_resource_type_name(resource_type) {
            return Grant::Denied;
        }
        let mut grants = Vec::new();
        for context in Context::ALL {
            let mut unfiltered = false;
            let mut filters: Vec<ScopeFilter> = Vec::new();
            let mut any = false;
            for scope in self.resource.iter().filter(|s| s.context == context && s.covers(resource_type, interaction)) {
                any = true;
                match &scope.filter {
                    None => unfiltered = true,
                    Some(f) if !filters.contains(f) => filters.push(f.clone()),
                    Some(_) => {}
                }
            }
            if any {
                let restriction = if unfiltered { Restriction::Unfiltered } else { Restriction::AnyOf(filters) };
                grants.push(ContextGrant { context, restriction });
            }
        }
        if grants.is_empty() {
            Grant::Denied
        } else {
            Grant::Allowed(grants)
        }
    }

    /// The resource scopes that parsed, without duplicates, in claim order.
    pub fn resource_scopes(&self) -> &[ResourceScope] {
        &self.resource
    }

    /// The non-resource scopes present, without duplicates, in claim order.
    pub fn non_resource_scopes(&self) -> &[NonResourceScope] {
        &self.other
    }

    /// Whether the non-resource scope `scope` is present.
    pub fn has(&self, scope: NonResourceScope) -> bool {
        self.other.contains(&scope)
    }

    /// Whether any resource scope has this context.
    pub fn has_context(&self, context: Context) -> bool {
        self.resource.iter().any(|s| s.context == context)
    }

    /// The scopes that were not understood and grant nothing, as written.
    pub fn ignored(&self) -> &[String] {
        &self.ignored
    }

    /// The distinct resource type names (and `*`) that resource scopes mention, sorted.
    pub fn resource_types(&self) -> Vec<&str> {
        let mut types: Vec<&str> = self.resource.iter().map(|s| s.resource_type.as_str()).collect();
        types.sort_unstable();
        types.dedup();
        types
    }

    /// Whether nothing was granted at all (ignored scopes do not count).
    pub fn is_empty(&self) -> bool {
        self.resource.is_empty() && self.other.is_empty()
    }
}

/// Whether `name` has the shape of a FHIR resource type: `[A-Z][A-Za-z]+`, at most 64 bytes.
pub(crate) fn is_resource_type_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    (2..=64).contains(&bytes.len()) && bytes[0].is_ascii_uppercase() && bytes.iter().all(u8::is_ascii_alphabetic)
}

fn parse_resource_scope(version: SmartVersion, scope: &str) -> Option<ResourceScope> {
    let (prefix, rest) = scope.split_once('/')?;
    let context = Context::from_prefix(prefix)?;
    let (body, query) = match rest.split_once('?') {
        Some((body, query)) => (body, Some(query)),
        None => (rest, None),
    };
    let (resource_type, permissions) = body.rsplit_once('.')?;
    if resource_type != "*" && !is_resource_type_name(resource_type) {
        return None;
    }
    let (interactions, is_v1) = match permissions {
        "read" => (Interactions::READ, true),
        "write" => (Interactions::WRITE, true),
        "*" => (Interactions::ALL, true),
        letters => (parse_v2_permissions(letters)?, false),
    };
    if version == SmartVersion::V1 && (!is_v1 || query.is_some()) {
        return None;
    }
    let filter = match query {
        None => None,
        // Granular queries are SMART 2.2 syntax; on a v1 permission they are not defined.
        Some(_) if is_v1 => return None,
        Some(_) if !interactions.is_read_only() => return None,
        Some(query) => Some(parse_query(query)?),
    };
    Some(ResourceScope { context, resource_type: resource_type.to_string(), interactions, filter })
}

/// `cruds` letters, each at most once and in order; at least one.
fn parse_v2_permissions(letters: &str) -> Option<Interactions> {
    let mut set = Interactions::default();
    let mut next = 0;
    for ch in letters.chars() {
        let offset = Interaction::ALL[next..].iter().position(|i| i.letter() == ch)?;
        set.insert(Interaction::ALL[next + offset]);
        next += offset + 1;
    }
    (set != Interactions::default()).then_some(set)
}

fn parse_query(query: &str) -> Option<ScopeFilter> {
    let mut params = Vec::new();
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=')?;
        let (name, value) = (percent_decode(name)?, percent_decode(value)?);
        if name.is_empty() || value.is_empty() {
            return None;
        }
        params.push((name, value));
    }
    Some(ScopeFilter { params })
}

/// Strict percent-decoding: every `%` starts two hex digits, and the result is UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'%' && !(bytes.get(i + 1..i + 3)?.iter().all(u8::is_ascii_hexdigit)) {
            return None;
        }
    }
    percent_encoding::percent_decode_str(s).decode_utf8().ok().map(|c| c.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use Interaction::*;

    const LAB: &str = "http://terminology.hl7.org/CodeSystem/observation-category|laboratory";

    fn letters(set: &ScopeSet, resource_type: &str, context: Context) -> String {
        Interaction::ALL.into_iter().filter(|i| set.grants(resource_type, *i).allows(context)).map(Interaction::letter).collect()
    }

    #[test]
    fn table_of_scopes_and_their_grants() {
        // (scope, version, resource type asked, context, interactions granted)
        let table: &[(&str, SmartVersion, &str, Context, &str)] = &[
            ("patient/Observation.read", SmartVersion::V1, "Observation", Context::Patient, "rs"),
            ("patient/Observation.read", SmartVersion::V2, "Observation", Context::Patient, "rs"),
            ("patient/Observation.read", SmartVersion::V2, "Condition", Context::Patient, ""),
            ("user/*.write", SmartVersion::V1, "Patient", Context::User, "cud"),
            ("user/*.write", SmartVersion::V1, "Patient", Context::Patient, ""),
            ("system/*.*", SmartVersion::V1, "Encounter", Context::System, "cruds"),
            ("system/*.*", SmartVersion::V2, "Encounter", Context::System, "cruds"),
            ("user/Patient.*", SmartVersion::V2, "Patient", Context::User, "cruds"),
            ("patient/Observation.rs", SmartVersion::V2, "Observation", Context::Patient, "rs"),
            ("patient/Observation.r", SmartVersion::V2, "Observation", Context::Patient, "r"),
            ("patient/Observation.s", SmartVersion::V2, "Observation", Context::Patient, "s"),
            ("user/*.cruds", SmartVersion::V2, "MedicationRequest", Context::User, "cruds"),
            ("user/*.cud", SmartVersion::V2, "Patient", Context::User, "cud"),
            ("system/Patient.cd", SmartVersion::V2, "Patient", Context::System, "cd"),
            ("patient/*.rs", SmartVersion::V2, "AllergyIntolerance", Context::Patient, "rs"),
            ("patient/*.rs", SmartVersion::V2, "AllergyIntolerance", Context::User, ""),
            (&format!("patient/Observation.rs?category={LAB}"), SmartVersion::V2, "Observation", Context::Patient, "rs"),
        ];
        for (scope, version, resource_type, context, expected) in table {
            let set = ScopeSet::parse_for(*version, scope);
            assert!(set.ignored().is_empty(), "{scope} should parse under {version:?}");
            assert_eq!(letters(&set, resource_type, *context), *expected, "{scope} on {resource_type} as {context:?}");
        }
    }

    #[test]
    fn invalid_syntax_is_ignored_and_grants_nothing() {
        let invalid = [
            "patient/Observation.sr",   // letters out of order
            "patient/Observation.rr",   // letter twice
            "patient/Observation.x",    // unknown letter
            "patient/Observation.",     // no permissions
            "patient/Observation",      // no dot
            "patient/observation.read", // type must start upper case
            "patient/Obs3rvation.read", // letters only
            "patient/O.read",           // at least two letters
            "doctor/Observation.read",  // unknown context
            "Patient/Observation.read", // context is lower case
            "patient/Observation.readwrite",
            "patient/Observation.rs?",              // empty query
            "patient/Observation.rs?category",      // no value
            "patient/Observation.rs?=x",            // no name
            "patient/Observation.rs?category=%zz",  // bad escape
            "patient/Observation.rs?category=%ff",  // not utf-8
            "patient/Observation.cruds?category=x", // filtered write
            "patient/Observation.read?category=x",  // query on a v1 permission
            "patient/*.read.read",
            "launch/practitioner",
            "openid2",
            "",
        ];
        for scope in invalid {
            let set = ScopeSet::parse(&format!("{scope} "));
            assert!(set.resource_scopes().is_empty() && set.non_resource_scopes().is_empty(), "{scope:?} parsed");
            for i in Interaction::ALL {
                assert_eq!(set.grants("Observation", i), Grant::Denied, "{scope:?}");
            }
            if !scope.is_empty() {
                assert_eq!(set.ignored(), [scope.to_string()], "{scope:?}");
            }
        }
    }

    #[test]
    fn ignored_scopes_do_not_disturb_valid_ones() {
        let set = ScopeSet::parse("  patient/Observation.sr\tpatient/Condition.rs  nonsense ");
        assert_eq!(set.ignored(), ["patient/Observation.sr", "nonsense"]);
        assert_eq!(letters(&set, "Condition", Context::Patient), "rs");
        assert_eq!(letters(&set, "Observation", Context::Patient), "");
    }

    #[test]
    fn v1_only_mode_refuses_v2_syntax() {
        let claim = format!("patient/Observation.rs user/*.cruds system/Patient.r patient/Observation.rs?category={LAB} user/Patient.read");
        let set = ScopeSet::parse_for(SmartVersion::V1, &claim);
        assert_eq!(set.ignored().len(), 4, "{:?}", set.ignored());
        assert_eq!(letters(&set, "Observation", Context::Patient), "");
        assert_eq!(letters(&set, "Patient", Context::User), "rs");
        assert_eq!(letters(&set, "Patient", Context::System), "");
        // The same claim under v2 parses everything.
        assert!(ScopeSet::parse_for(SmartVersion::V2, &claim).ignored().is_empty());
    }

    #[test]
    fn wildcard_type_covers_every_type_but_not_junk_names() {
        let set = ScopeSet::parse("user/*.rs");
        for t in ["Patient", "Observation", "Basic", "NotARealTypeButWellFormed"] {
            assert!(set.grants(t, Read).allows(Context::User), "{t}");
        }
        for junk in ["", "*", "patient", "Patient/1", "../Patient", "P", "Pat ient"] {
            assert_eq!(set.grants(junk, Read), Grant::Denied, "{junk:?}");
        }
    }

    #[test]
    fn patient_wildcard_rs_is_read_and_search_of_everything_in_patient_context() {
        let set = ScopeSet::parse("patient/*.rs");
        assert_eq!(set.resource_types(), ["*"]);
        let grant = set.grants("Immunization", Search);
        assert_eq!(grant, Grant::Allowed(vec![ContextGrant { context: Context::Patient, restriction: Restriction::Unfiltered }]));
        assert_eq!(grant.contexts(), [Context::Patient]);
        for i in [Create, Update, Delete] {
            assert_eq!(set.grants("Immunization", i), Grant::Denied);
        }
    }

    #[test]
    fn granular_scope_keeps_decoded_filters_and_applies_to_read_and_search_only() {
        let set = ScopeSet::parse(
            "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category%7Cvital-signs&status=final",
        );
        let grant = set.grants("Observation", Search);
        let Some(Restriction::AnyOf(filters)) = grant.restriction(Context::Patient) else { panic!("{grant:?}") };
        assert_eq!(filters.len(), 1);
        assert_eq!(
            filters[0].params(),
            [
                ("category".to_string(), "http://terminology.hl7.org/CodeSystem/observation-category|vital-signs".to_string()),
                ("status".to_string(), "final".to_string())
            ]
        );
        assert!(set.grants("Observation", Read).allows(Context::Patient));
        assert_eq!(set.grants("Observation", Create), Grant::Denied);
        assert_eq!(set.grants("Condition", Search), Grant::Denied);
    }

    #[test]
    fn filters_of_one_context_union_and_an_unfiltered_scope_wins() {
        let lab = format!("patient/Observation.rs?category={LAB}");
        let vitals = "patient/Observation.rs?category=vital-signs";
        let set = ScopeSet::parse(&format!("{lab} {vitals} {lab}"));
        let Some(Restriction::AnyOf(filters)) = set.grants("Observation", Search).restriction(Context::Patient).cloned() else { panic!() };
        assert_eq!(filters.len(), 2, "duplicates are merged");

        let set = ScopeSet::parse(&format!("{lab} patient/Observation.s user/Observation.rs?category=x"));
        let grant = set.grants("Observation", Search);
        assert_eq!(grant.restriction(Context::Patient), Some(&Restriction::Unfiltered));
        assert!(matches!(grant.restriction(Context::User), Some(Restriction::AnyOf(f)) if f.len() == 1));
        assert_eq!(grant.contexts(), [Context::Patient, Context::User]);
        // Read is still only through the filtered scope.
        assert!(matches!(set.grants("Observation", Read).restriction(Context::Patient), Some(Restriction::AnyOf(_))));
    }

    #[test]
    fn non_resource_scopes_are_flags() {
        let set = ScopeSet::parse("launch launch/patient launch/encounter openid fhirUser profile offline_access online_access openid");
        assert!(set.ignored().is_empty());
        assert!(set.resource_scopes().is_empty());
        assert_eq!(set.non_resource_scopes(), NonResourceScope::ALL);
        for s in NonResourceScope::ALL {
            assert!(set.has(s));
        }
        assert!(!ScopeSet::parse("openid").has(NonResourceScope::FhirUser));
        assert!(!ScopeSet::parse("fhiruser").has(NonResourceScope::FhirUser), "scopes are case sensitive");
    }

    #[test]
    fn empty_claim_denies_everything() {
        let set = ScopeSet::parse("");
        assert!(set.is_empty());
        for i in Interaction::ALL {
            assert_eq!(set.grants("Patient", i), Grant::Denied);
        }
    }

    #[test]
    fn list_items_are_single_scopes() {
        let set = ScopeSet::from_list(SmartVersion::V2, ["patient/Patient.r", "user/*.rs launch", ""]);
        assert_eq!(set.ignored(), ["user/*.rs launch"]);
        assert!(!set.has(NonResourceScope::Launch));
        assert!(!set.grants("Observation", Read).allows(Context::User));
        assert!(set.grants("Patient", Read).allows(Context::Patient));
    }

    #[test]
    fn resource_types_lists_names_and_wildcards() {
        let set = ScopeSet::parse("patient/Observation.rs user/*.r system/Observation.s patient/Foo.r");
        assert_eq!(set.resource_types(), ["*", "Foo", "Observation"]);
        assert!(set.has_context(Context::System));
    }

    #[test]
    fn interactions_debug_and_sets() {
        assert_eq!(format!("{:?}", Interactions::READ), "Interactions(rs)");
        assert_eq!(format!("{:?}", Interactions::WRITE), "Interactions(cud)");
        assert!(Interactions::READ.is_read_only());
        assert!(!Interactions::ALL.is_read_only());
        assert_eq!(parse_v2_permissions("crds"), Some(Interactions(0b11011)));
        assert_eq!(parse_v2_permissions("dc"), None);
        assert_eq!(parse_v2_permissions(""), None);
    }
}

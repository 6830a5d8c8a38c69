//! Parsing a search's query parameters into a [`SearchRequest`] (R4 `search.html`).
//!
//! [`parse`] takes the query parameters in order, names and values already percent-decoded,
//! and returns the criteria (each repeated parameter is its own criterion: they are AND-ed;
//! comma-separated values within one are OR-ed) and the result parameters.
//!
//! The contract:
//! - Parameter names are `code[:modifier]`, possibly behind forward chains
//!   (`subject:Patient.organization.name`) and reverse chains
//!   (`_has:Observation:patient:code`). Every name is looked up in the generated registry for
//!   the type it applies to; a system search (no type) allows only the parameters common to
//!   all resources (`_id`, `_lastUpdated`, `_tag`, `_profile`, `_security`, `_source`, `_text`,
//!   `_content`) and `_type`.
//! - Unknown parameters, unknown or inapplicable modifiers, invalid chains and unsupported
//!   features depend on the [`Handling`] (search.html#errors, `Prefer: handling`): an error
//!   when strict, the name recorded in [`SearchRequest::ignored`] when lenient.
//! - A malformed value is always an error, whatever the handling.
//! - A parameter whose value is empty (`name=`), or whose comma-separated values are all
//!   empty, is dropped without being reported: R4 gives an empty value no meaning, and
//!   servers commonly treat it as absent. Empty members of an OR list (`a,,b`) are dropped.
//! - Error messages name parameters (the client's own query text) and never echo values.

mod result_params;
#[cfg(test)]
mod tests;
mod values;

use super::{Criterion, Link, Modifier, ResultParams, SearchRequest};
use crate::registry::{self, SearchParamDef, SearchParamType};

/// How unknown or unsupported parameters are treated (`Prefer: handling=strict|lenient`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Handling {
    /// Any unknown or unsupported parameter is an error.
    Strict,
    /// Unknown or unsupported parameters are ignored and listed in [`SearchRequest::ignored`]
    /// (the default of search.html when the client states no preference).
    #[default]
    Lenient,
}

/// Why a search cannot run. The API maps every variant to 400 with an OperationOutcome whose
/// issue code is [`SearchError::issue_code`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SearchError {
    /// The searched type is not a concrete R4 resource type.
    #[error("unknown resource type {0}")]
    UnknownResourceType(String),
    /// The parameter is not defined for the type it applies to.
    #[error("unknown search parameter {0}")]
    UnknownParameter(String),
    /// The modifier is unknown or does not apply to the parameter's type.
    #[error("modifier {modifier} is not supported on search parameter {param}")]
    UnsupportedModifier {
        /// The parameter name as sent.
        param: String,
        /// The modifier, without the colon.
        modifier: String,
    },
    /// A chain, `_has`, `_include` or `_revinclude` names a parameter that is not a reference.
    #[error("search parameter {0} is not a reference parameter")]
    NotReference(String),
    /// A reference parameter cannot point at the type a chain or include names.
    #[error("search parameter {param} does not reference {target}")]
    InvalidTarget {
        /// The parameter name as sent.
        param: String,
        /// The resource type that cannot be referenced.
        target: String,
    },
    /// A chain or reverse chain cannot be followed.
    #[error("invalid chain in search parameter {param}: {reason}")]
    InvalidChain {
        /// The parameter name as sent.
        param: String,
        /// What is wrong, without values.
        reason: String,
    },
    /// A value is malformed (never subject to lenient handling).
    #[error("invalid value of search parameter {param}: {reason}")]
    InvalidValue {
        /// The parameter name as sent.
        param: String,
        /// What is wrong, without the value.
        reason: String,
    },
    /// The parameter or feature exists in R4 but fhirlake does not implement it.
    #[error("search parameter {0} is not supported")]
    Unsupported(String),
    /// A conditional interaction or reference without criteria.
    #[error("a conditional interaction needs search criteria")]
    NoCriteria,
}

impl Handling {
    /// The handling a `Prefer` header asks for (search.html#errors): `handling=strict` or
    /// `handling=lenient` among its comma- or semicolon-separated preferences (names and
    /// values compared case-insensitively, RFC 7240); lenient when absent or unrecognised.
    pub fn from_prefer(header: &str) -> Handling {
        let strict = header.split([',', ';']).filter_map(|pref| pref.split_once('=')).any(|(name, value)| {
            name.trim().eq_ignore_ascii_case("handling") && value.trim().trim_matches('"').eq_ignore_ascii_case("strict")
        });
        if strict {
            Handling::Strict
        } else {
            Handling::Lenient
        }
    }
}

impl SearchError {
    /// The OperationOutcome issue code: `not-supported` for things R4 defines that fhirlake
    /// does not do, `invalid` otherwise.
    pub fn issue_code(&self) -> &'static str {
        match self {
            SearchError::Unsupported(_) | SearchError::UnsupportedModifier { .. } => "not-supported",
            _ => "invalid",
        }
    }

    /// An [`SearchError::InvalidValue`] of `param`.
    fn invalid(param: &str, reason: impl Into<String>) -> Self {
        SearchError::InvalidValue { param: param.to_owned(), reason: reason.into() }
    }
}

/// The criteria of a conditional interaction or reference (`If-None-Exist`, `PUT [type]?…`,
/// `Patient?identifier=…`): parsed strictly, since an ignored parameter would widen which
/// resource is written; `_format` and `_pretty` are dropped; `NoCriteria` when none remain.
pub fn conditional_criteria(resource_type: &str, params: &[(String, String)]) -> Result<Vec<Criterion>, SearchError> {
    let params: Vec<(String, String)> = params.iter().filter(|(k, _)| k != "_format" && k != "_pretty").cloned().collect();
    let request = parse(Some(resource_type), &params, Handling::Strict)?;
    if request.criteria.is_empty() {
        return Err(SearchError::NoCriteria);
    }
    Ok(request.criteria)
}

/// An error while parsing one parameter: `Soft` ones depend on the handling, `Hard` ones
/// (malformed values) always fail the search.
#[derive(Debug)]
enum Fault {
    Soft(SearchError),
    Hard(SearchError),
}

type Step<T> = Result<T, Fault>;

/// Where a parameter name is looked up: the searched type, or for a system search the
/// parameters common to all resources (those of `DomainResource`, which include `Resource`'s).
#[derive(Debug, Clone, Copy)]
struct Scope {
    resource_type: Option<&'static str>,
}

impl Scope {
    fn types(&self) -> Vec<&'static str> {
        vec![self.resource_type.unwrap_or("DomainResource")]
    }

    fn is_system(&self) -> bool {
        self.resource_type.is_none()
    }
}

/// Parses the decoded query parameters (in order; names and values already percent-decoded)
/// of a search on `resource_type` (`None` = system search across all types: then only the
/// parameters common to all resources and `_type` are allowed).
pub fn parse(resource_type: Option<&str>, params: &[(String, String)], handling: Handling) -> Result<SearchRequest, SearchError> {
    let scope = match resource_type {
        Some(t) => Scope { resource_type: Some(static_type(t).ok_or_else(|| SearchError::UnknownResourceType(t.to_owned()))?) },
        None => Scope { resource_type: None },
    };
    let mut request = SearchRequest {
        resource_type: scope.resource_type.map(str::to_owned),
        criteria: Vec::new(),
        result: ResultParams::default(),
        ignored: Vec::new(),
    };
    let mut seen = result_params::Seen::default();
    for (name, value) in params {
        if value.is_empty() {
            continue;
        }
        let step = if let Some((code, modifier)) = result_params::split_name(name) {
            result_params::apply(scope, name, code, modifier, value, &mut request.result, &mut seen)
        } else {
            parse_criterion(scope, name, value).map(|c| request.criteria.extend(c))
        };
        match step {
            Ok(()) => {}
            Err(Fault::Hard(e)) => return Err(e),
            Err(Fault::Soft(e)) => match handling {
                Handling::Strict => return Err(e),
                Handling::Lenient => {
                    if !request.ignored.contains(name) {
                        request.ignored.push(name.clone());
                    }
                }
            },
        }
    }
    Ok(request)
}

/// One criterion; `None` when all its values are empty.
fn parse_criterion(scope: Scope, name: &str, value: &str) -> Step<Option<Criterion>> {
    let mut path = Vec::new();
    let (param, modifier) = walk(scope, name, &mut path)?;
    // `near` (Location, special) and `_query` have no generic semantics here.
    if param.kind == SearchParamType::Special || param.code == "_query" {
        return Err(Fault::Soft(SearchError::Unsupported(name.to_owned())));
    }
    let modifier = parse_modifier(param, modifier, name)?;
    let values = values::parse(param, &modifier, value, name).map_err(Fault::Hard)?;
    if values.is_empty() {
        return Ok(None);
    }
    Ok(Some(Criterion { path, param, modifier, values }))
}

/// Follows the chains and reverse chains of `name` from the searched type, pushing one
/// [`Link`] per step, and returns the final parameter and its modifier text.
///
/// search.html#chaining: `subject:Patient.name` follows the reference parameter `subject` to
/// Patient; without `:Type` every target type is tried, and at least one must define the
/// next parameter. search.html#has: `_has:Observation:patient:code` selects resources that
/// Observations reference through `patient`.
fn walk<'n>(scope: Scope, name: &'n str, path: &mut Vec<Link>) -> Step<(&'static SearchParamDef, Option<&'n str>)> {
    let soft_unknown = || Fault::Soft(SearchError::UnknownParameter(name.to_owned()));
    let chain_error = |reason: &str| Fault::Soft(SearchError::InvalidChain { param: name.to_owned(), reason: reason.to_owned() });
    let mut types = scope.types();
    let mut rest = name;
    loop {
        if let Some(after) = rest.strip_prefix("_has:") {
            if scope.is_system() {
                return Err(soft_unknown());
            }
            let mut parts = after.splitn(3, ':');
            let (Some(source), Some(code), Some(remainder)) = (parts.next(), parts.next(), parts.next()) else {
                return Err(chain_error("expected _has:type:parameter:parameter"));
            };
            let source = static_type(source).ok_or_else(|| chain_error("unknown resource type"))?;
            let param = registry::search_param(source, code).ok_or_else(soft_unknown)?;
            if param.kind != SearchParamType::Reference {
                return Err(Fault::Soft(SearchError::NotReference(format!("{source}:{code}"))));
            }
            // The reference must be able to point at the current type (no targets: any type).
            if !param.targets.is_empty() && !types.iter().any(|t| param.targets.contains(t)) {
                let target = types.join(",");
                return Err(Fault::Soft(SearchError::InvalidTarget { param: format!("{source}:{code}"), target }));
            }
            path.push(Link::Reverse { source: source.to_owned(), param });
            types = vec![source];
            rest = remainder;
            continue;
        }
        let (head, tail) = match rest.split_once('.') {
            Some((head, tail)) => (head, Some(tail)),
            None => (rest, None),
        };
        let (code, modifier) = match head.split_once(':') {
            Some((code, modifier)) => (code, Some(modifier)),
            None => (head, None),
        };
        if code.is_empty() {
            return Err(soft_unknown());
        }
        let defs: Vec<&'static SearchParamDef> = types.iter().filter_map(|t| registry::search_param(t, code)).collect();
        let Some(&first) = defs.first() else {
            return Err(soft_unknown());
        };
        // With several candidate types the values are parsed once, for the first definition:
        // the definitions must agree on the parameter's type.
        if defs.iter().any(|d| d.kind != first.kind) {
            return Err(chain_error("the chained parameter has different types on the possible targets; name the target type"));
        }
        let Some(tail) = tail else {
            return Ok((first, modifier));
        };
        if first.kind != SearchParamType::Reference {
            return Err(Fault::Soft(SearchError::NotReference(code.to_owned())));
        }
        if tail.is_empty() {
            return Err(soft_unknown());
        }
        // The types the reference may point at, from every candidate definition.
        let mut targets: Vec<&'static str> = Vec::new();
        if defs.iter().any(|d| d.targets.is_empty()) {
            targets.extend(registry::resource_types());
        } else {
            for t in defs.iter().flat_map(|d| d.targets.iter()) {
                if !targets.contains(t) {
                    targets.push(t);
                }
            }
        }
        let target = match modifier {
            Some(m) => {
                let Some(t) = static_type(m).filter(|t| targets.contains(t)) else {
                    return Err(Fault::Soft(SearchError::UnsupportedModifier { param: name.to_owned(), modifier: m.to_owned() }));
                };
                types = vec![t];
                Some(t.to_owned())
            }
            None => {
                let single = match targets.as_slice() {
                    [single] => Some((*single).to_owned()),
                    _ => None,
                };
                types = targets;
                single
            }
        };
        path.push(Link::Forward { param: first, target });
        rest = tail;
    }
}

/// The modifier of `param` (search.html#modifiers, R4):
/// `:missing` on every type; `:exact` on string; `:contains` on string and uri; `:text`,
/// `:not`, `:in`, `:not-in` and `:of-type` on token; `:above` and `:below` on token and uri;
/// `:identifier` and `:[type]` on reference (the type among the parameter's targets when it
/// lists any). R4 defines `:text` as searching `CodeableConcept.text`, `Coding.display` or
/// `Identifier.type.text`: token only (`Reference.display` came with R5).
fn parse_modifier(param: &'static SearchParamDef, modifier: Option<&str>, name: &str) -> Step<Modifier> {
    use SearchParamType as T;
    let Some(m) = modifier else {
        return Ok(Modifier::None);
    };
    let kind = param.kind;
    let parsed = match m {
        "missing" => Some(Modifier::Missing),
        "exact" if kind == T::String => Some(Modifier::Exact),
        "contains" if matches!(kind, T::String | T::Uri) => Some(Modifier::Contains),
        "text" if kind == T::Token => Some(Modifier::Text),
        "not" if kind == T::Token => Some(Modifier::Not),
        "above" if matches!(kind, T::Token | T::Uri) => Some(Modifier::Above),
        "below" if matches!(kind, T::Token | T::Uri) => Some(Modifier::Below),
        "in" if kind == T::Token => Some(Modifier::In),
        "not-in" if kind == T::Token => Some(Modifier::NotIn),
        "of-type" if kind == T::Token => Some(Modifier::OfType),
        "identifier" if kind == T::Reference => Some(Modifier::Identifier),
        _ if kind == T::Reference => {
            static_type(m).filter(|t| param.targets.is_empty() || param.targets.contains(t)).map(|t| Modifier::Type(t.to_owned()))
        }
        _ => None,
    };
    // A definition may restrict its modifiers (none of R4's core definitions does).
    let listed = param.modifiers.is_empty() || param.modifiers.contains(&m) || matches!(parsed, Some(Modifier::Type(_)));
    match parsed {
        Some(modifier) if listed => Ok(modifier),
        _ => Err(Fault::Soft(SearchError::UnsupportedModifier { param: name.to_owned(), modifier: m.to_owned() })),
    }
}

/// The registry's `'static` spelling of a concrete resource type.
fn static_type(name: &str) -> Option<&'static str> {
    let types = registry::resource_types();
    types.binary_search(&name).ok().and_then(|i| types.get(i).copied())
}

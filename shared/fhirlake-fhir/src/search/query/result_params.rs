//! The result parameters (search.html#return): `_count`, `_sort`, `_include`, `_revinclude`,
//! `_total`, `_summary`, `_elements`, fhirlake's paging `_cursor`, `_type` on system searches,
//! the accepted-and-ignored `_format` and `_pretty`, and the R4 parameters fhirlake does not
//! implement (`_contained`, `_containedType`, `_query`, `_filter`, `_list`).
//!
//! Single-valued ones (`_count`, `_sort`, `_total`, `_summary`, `_elements`, `_cursor`, `_type`)
//! given twice are an error: which one the client meant is unknowable. A `_sort`, `_include` or
//! `_revinclude` naming an unknown parameter is handled like an unknown parameter: in lenient
//! handling that whole parameter is ignored (the self link then omits it).

use super::{Fault, Scope, SearchError, Step};
use crate::registry::{self, SearchParamType};
use crate::search::{Include, ResultParams, SortKey, SummaryMode, TotalMode};

/// The codes handled here rather than as search criteria.
const RESULT_PARAMS: &[&str] = &[
    "_count",
    "_sort",
    "_include",
    "_revinclude",
    "_total",
    "_summary",
    "_elements",
    "_cursor",
    "_format",
    "_pretty",
    "_type",
    "_contained",
    "_containedType",
    "_query",
    "_filter",
    "_list",
];

/// The single-valued result parameters already given.
#[derive(Debug, Default)]
pub(super) struct Seen(Vec<&'static str>);

/// `(code, modifier)` when `name` is a result parameter (`_include:iterate`); `None` for
/// search criteria.
pub(super) fn split_name(name: &str) -> Option<(&'static str, Option<&str>)> {
    let (code, modifier) = match name.split_once(':') {
        Some((code, modifier)) => (code, Some(modifier)),
        None => (name, None),
    };
    RESULT_PARAMS.iter().find(|c| **c == code).map(|c| (*c, modifier))
}

/// Applies one result parameter to `result`; nothing changes on error.
pub(super) fn apply(
    scope: Scope,
    name: &str,
    code: &'static str,
    modifier: Option<&str>,
    value: &str,
    result: &mut ResultParams,
    seen: &mut Seen,
) -> Step<()> {
    let iterate = match (code, modifier) {
        (_, None) => false,
        // search.html#revinclude: `:iterate`, and `:recurse`, its R4 alias from STU3.
        ("_include" | "_revinclude", Some("iterate" | "recurse")) => true,
        (_, Some(m)) => return Err(Fault::Soft(SearchError::UnsupportedModifier { param: name.to_owned(), modifier: m.to_owned() })),
    };
    let single = matches!(code, "_count" | "_sort" | "_total" | "_summary" | "_elements" | "_cursor" | "_type");
    if single && seen.0.contains(&code) {
        return Err(Fault::Hard(SearchError::invalid(name, "given more than once")));
    }
    let hard = |reason: &str| Fault::Hard(SearchError::invalid(name, reason));
    match code {
        "_count" => result.count = Some(count(value).ok_or_else(|| hard("expected a non-negative integer"))?),
        "_sort" => result.sort = sort(scope, name, value)?,
        "_include" => result.include.push(include(name, value, iterate)?),
        "_revinclude" => result.revinclude.push(include(name, value, iterate)?),
        "_total" => {
            result.total = Some(match value {
                "none" => TotalMode::None,
                "estimate" => TotalMode::Estimate,
                "accurate" => TotalMode::Accurate,
                _ => return Err(hard("expected none, estimate or accurate")),
            })
        }
        "_summary" => {
            result.summary = Some(match value {
                "true" => SummaryMode::True,
                "false" => SummaryMode::False,
                "text" => SummaryMode::Text,
                "data" => SummaryMode::Data,
                "count" => SummaryMode::Count,
                _ => return Err(hard("expected true, false, text, data or count")),
            })
        }
        "_elements" => result.elements = elements(value),
        "_cursor" => result.cursor = Some(value.to_owned()),
        // Content negotiation and pretty printing are the API's concern.
        "_format" | "_pretty" => {}
        "_type" => {
            // search.html#all: `_type` restricts a system search to some types; on a type-level
            // search the type is already fixed.
            if !scope.is_system() {
                return Err(Fault::Soft(SearchError::Unsupported(name.to_owned())));
            }
            result.types = types(value).ok_or_else(|| hard("unknown resource type"))?;
        }
        _ => return Err(Fault::Soft(SearchError::Unsupported(name.to_owned()))),
    }
    if single {
        seen.0.push(code);
    }
    Ok(())
}

/// `_count`: a non-negative integer (`0` asks for no entries, search.html#count); larger than
/// the machine's range saturates (the caller clamps to its maximum anyway).
fn count(value: &str) -> Option<usize> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(value.parse().unwrap_or(usize::MAX))
}

/// `_sort=a,-b`: parameters of the searched type (`_id`, `_lastUpdated` included), `-` for
/// descending (search.html#sort).
fn sort(scope: Scope, name: &str, value: &str) -> Step<Vec<SortKey>> {
    let mut keys = Vec::new();
    for key in value.split(',').filter(|k| !k.is_empty()) {
        let (code, descending) = match key.strip_prefix('-') {
            Some(code) => (code, true),
            None => (key, false),
        };
        if code.is_empty() {
            return Err(Fault::Hard(SearchError::invalid(name, "a sort key names a parameter")));
        }
        let param = scope.types().iter().find_map(|t| registry::search_param(t, code));
        let Some(param) = param.filter(|p| p.kind != SearchParamType::Special && p.expression.is_some()) else {
            return Err(Fault::Soft(SearchError::UnknownParameter(format!("{name}={code}"))));
        };
        keys.push(SortKey { param, descending });
    }
    Ok(keys)
}

/// `_include` / `_revinclude`: `*`, `Source:param`, `Source:param:Target` or `Source:*`
/// (every reference parameter of `Source`).
fn include(name: &str, value: &str, iterate: bool) -> Step<Include> {
    if value == "*" {
        return Ok(Include { source: "*".to_owned(), param: None, target: None, iterate });
    }
    let parts: Vec<&str> = value.split(':').collect();
    let (source, code, target) = match parts.as_slice() {
        [source, code] => (*source, *code, None),
        [source, code, target] => (*source, *code, Some(*target)),
        _ => return Err(Fault::Hard(SearchError::invalid(name, "expected type:parameter[:type]"))),
    };
    if source.is_empty() || code.is_empty() || target.is_some_and(str::is_empty) {
        return Err(Fault::Hard(SearchError::invalid(name, "expected type:parameter[:type]")));
    }
    let unknown = || Fault::Soft(SearchError::UnknownParameter(format!("{name}={source}:{code}")));
    let source = super::static_type(source).ok_or_else(unknown)?;
    let param = if code == "*" {
        None
    } else {
        let param = registry::search_param(source, code).ok_or_else(unknown)?;
        if param.kind != SearchParamType::Reference {
            return Err(Fault::Soft(SearchError::NotReference(format!("{source}:{code}"))));
        }
        Some(param)
    };
    let target = match target {
        None => None,
        Some(t) => {
            let allowed = super::static_type(t).filter(|t| param.is_none_or(|p| p.targets.is_empty() || p.targets.contains(t)));
            let Some(t) = allowed else {
                return Err(Fault::Soft(SearchError::InvalidTarget { param: format!("{source}:{code}"), target: t.to_owned() }));
            };
            Some(t.to_owned())
        }
    };
    Ok(Include { source: source.to_owned(), param, target, iterate })
}

/// `_elements=name,Patient.birthDate`: element names, a leading `Type.` removed.
fn elements(value: &str) -> Vec<String> {
    value
        .split(',')
        .filter(|e| !e.is_empty())
        .map(|e| match e.split_once('.') {
            Some((t, rest)) if registry::is_resource_type(t) => rest.to_owned(),
            _ => e.to_owned(),
        })
        .filter(|e| !e.is_empty())
        .collect()
}

/// `_type=Patient,Observation`: concrete resource types; `None` if one is unknown.
fn types(value: &str) -> Option<Vec<String>> {
    value.split(',').filter(|t| !t.is_empty()).map(|t| super::static_type(t).map(str::to_owned)).collect()
}

//! Uris (R4 search.html#uri): "the search value is matched exactly" (uris are case-sensitive);
//! `:below` ("the uri is the search value or begins with it": `url:below=http://acme.org/fhir/`
//! matches every url under it) and `:above` (the stored uri is the search value or a leading
//! part of it: `url:above=http://acme.org/fhir/ValueSet/123/_history/5` matches
//! `http://acme.org/fhir/ValueSet/123` and `http://acme.org/fhir/`) compare whole path
//! segments, so `http://acme.org/fhir` is not above `http://acme.org/fhirx`; `:contains` is a
//! substring, case and accent insensitive as for strings.

use crate::search::values::fold;
use crate::search::{Modifier, QueryValue, SearchValue};

/// Whether a Uri value matches the query under `modifier`.
pub(super) fn matches(modifier: &Modifier, query: &QueryValue, values: &[SearchValue]) -> bool {
    let (QueryValue::Uri(query) | QueryValue::String(query) | QueryValue::Reference(query)) = query else { return false };
    let uris = values.iter().filter_map(|v| match v {
        SearchValue::Uri(u) => Some(u.as_str()),
        _ => None,
    });
    match modifier {
        Modifier::None => uris.into_iter().any(|u| u == query),
        Modifier::Below => uris.into_iter().any(|u| is_within(u, query)),
        Modifier::Above => uris.into_iter().any(|u| is_within(query, u)),
        Modifier::Contains => {
            let query = fold(query);
            uris.map(fold).any(|u| u.contains(&query))
        }
        _ => false,
    }
}

/// Whether `uri` is `base` or lies under it, at a path segment boundary.
fn is_within(uri: &str, base: &str) -> bool {
    let Some(rest) = uri.strip_prefix(base) else { return false };
    rest.is_empty() || base.ends_with('/') || rest.starts_with('/')
}

//! Search values (being written; the fold below is the projection's, moved here).

use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

/// Lower-cases, removes accents (NFKD without combining marks) and collapses whitespace.
pub fn fold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut pending_space = false;
    for c in s.to_lowercase().nfkd().filter(|c| !is_combining_mark(*c)) {
        if c.is_whitespace() {
            pending_space = !out.is_empty();
            continue;
        }
        if pending_space {
            out.push(' ');
            pending_space = false;
        }
        out.push(c);
    }
    out
}

/// The values `param` selects from `resource` (being written).
pub fn extract(_resource_type: &str, _param: &crate::registry::SearchParamDef, _resource: &serde_json::Value) -> Vec<super::SearchValue> {
    Vec::new()
}

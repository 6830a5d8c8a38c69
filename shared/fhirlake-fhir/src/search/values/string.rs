//! String values: strings and markdown as written, the parts of HumanNames and Addresses
//! (R4 search.html#string), the narrative for `_text` and every string for `_content`; and
//! the folding string search compares with.

use serde_json::Value;
use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

use super::member;
use crate::search::SearchValue;

/// The parts of a HumanName or an Address that a string search matches.
const PARTS: [&str; 11] = ["family", "given", "prefix", "suffix", "text", "line", "city", "district", "state", "postalCode", "country"];

/// Pushes a string, or the parts of a name or address.
pub(super) fn values(element: &Value, out: &mut Vec<SearchValue>) {
    match element {
        Value::String(s) => push(s, out),
        Value::Object(object) => {
            for part in PARTS {
                match member(object, part) {
                    Some(Value::String(s)) => push(s, out),
                    Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).for_each(|s| push(s, out)),
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

/// `_text`: the narrative without its markup, one value.
pub(super) fn text(resource: &Value, out: &mut Vec<SearchValue>) {
    if let Some(div) = resource.get("text").and_then(|t| t.get("div")).and_then(Value::as_str) {
        push(&narrative_text(div), out);
    }
}

/// `_content`: every string in the resource (the narrative without markup; not `resourceType`).
pub(super) fn content(resource: &Value, out: &mut Vec<SearchValue>) {
    fn walk(value: &Value, key: Option<&str>, out: &mut Vec<SearchValue>) {
        match value {
            Value::String(s) if key == Some("div") => push(&narrative_text(s), out),
            Value::String(s) if key != Some("resourceType") => push(s, out),
            Value::Array(items) => items.iter().for_each(|item| walk(item, key, out)),
            Value::Object(object) => object.iter().for_each(|(k, v)| walk(v, Some(k), out)),
            _ => {}
        }
    }
    walk(resource, None, out);
}

/// Pushes `s` unless it is blank.
fn push(s: &str, out: &mut Vec<SearchValue>) {
    if !s.trim().is_empty() {
        out.push(SearchValue::String(s.to_string()));
    }
}

/// The text of an XHTML narrative: tags removed (each as a space), the XML and common HTML
/// character references decoded, whitespace collapsed.
pub fn narrative_text(xhtml: &str) -> String {
    let mut text = String::with_capacity(xhtml.len());
    let mut rest = xhtml;
    while let Some(c) = rest.chars().next() {
        match c {
            '<' => {
                rest = rest.find('>').map_or("", |end| &rest[end + 1..]);
                text.push(' ');
            }
            '&' => match rest.find(';').filter(|&end| end <= 10).and_then(|end| entity(&rest[1..end]).map(|c| (c, end))) {
                Some((decoded, end)) => {
                    text.push(decoded);
                    rest = &rest[end + 1..];
                }
                None => {
                    text.push('&');
                    rest = &rest[1..];
                }
            },
            _ => {
                text.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The character an entity name (between `&` and `;`) stands for.
fn entity(name: &str) -> Option<char> {
    match name {
        "amp" => Some('&'),
        "lt" => Some('<'),
        "gt" => Some('>'),
        "quot" => Some('"'),
        "apos" => Some('\''),
        "nbsp" => Some(' '),
        _ => {
            let number = name.strip_prefix('#')?;
            let code = match number.strip_prefix(['x', 'X']) {
                Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                None => number.parse().ok()?,
            };
            char::from_u32(code)
        }
    }
}

/// Folds a string for the default and `:contains` string searches, which R4 makes
/// insensitive to case and accents: lower-cased, compatibility-decomposed (NFKD) with combining
/// marks removed, whitespace runs collapsed to one space and trimmed (`  Ärzte  Müller ` →
/// `arzte muller`).
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

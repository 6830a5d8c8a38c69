//! Search values: splitting on unescaped separators, unescaping, and parsing each value for
//! its parameter's type and modifier.
//!
//! search.html#escaping: `\,` `\$` `\|` and `\\` stand for the character itself; `,` separates
//! OR-ed values, `$` the components of a composite value and `|` the parts of token and
//! quantity values. Any other backslash (an unknown escape, a trailing one) is kept literally.

use super::SearchError;
use crate::registry::{SearchParamDef, SearchParamType};
use crate::search::{DateRange, Decimal, Modifier, Prefix, QueryValue};

/// The OR-ed values of one parameter; empty when every value is empty.
///
/// `SearchParameter.multipleOr = false` (R4's composite definitions) allows one value only.
pub(super) fn parse(param: &'static SearchParamDef, modifier: &Modifier, value: &str, name: &str) -> Result<Vec<QueryValue>, SearchError> {
    let parts: Vec<&str> = split(value, ',').into_iter().filter(|p| !p.is_empty()).collect();
    if parts.len() > 1 && param.multiple_or == Some(false) {
        return Err(SearchError::invalid(name, "the parameter takes a single value"));
    }
    parts.into_iter().map(|part| parse_one(param, modifier, part).map_err(|reason| SearchError::invalid(name, reason))).collect()
}

/// One value (between unescaped commas).
fn parse_one(param: &'static SearchParamDef, modifier: &Modifier, text: &str) -> Result<QueryValue, String> {
    match modifier {
        Modifier::Missing => match unescape(text).as_str() {
            "true" => Ok(QueryValue::Missing(true)),
            "false" => Ok(QueryValue::Missing(false)),
            _ => Err(":missing takes true or false".to_owned()),
        },
        // search.html#token: `:text` is a string search on the display text.
        Modifier::Text => Ok(QueryValue::String(unescape(text))),
        // `:in` / `:not-in` name a value set by (relative or absolute) uri.
        Modifier::In | Modifier::NotIn => Ok(QueryValue::Uri(unescape(text))),
        Modifier::OfType => of_type(text),
        // `:identifier` takes a token `[system]|[value]`.
        Modifier::Identifier => token(text),
        _ => by_kind(param, text),
    }
}

/// A value parsed for the parameter's own type.
fn by_kind(param: &'static SearchParamDef, text: &str) -> Result<QueryValue, String> {
    match param.kind {
        SearchParamType::Number => {
            let (prefix, rest) = prefix(param, text)?;
            let value = Decimal::parse(&unescape(rest)).ok_or("invalid number")?;
            Ok(QueryValue::Number { prefix, value })
        }
        SearchParamType::Date => {
            let (prefix, rest) = prefix(param, text)?;
            let value = DateRange::parse(&unescape(rest)).ok_or("invalid date")?;
            Ok(QueryValue::Date { prefix, value })
        }
        SearchParamType::String => Ok(QueryValue::String(unescape(text))),
        SearchParamType::Token => token(text),
        SearchParamType::Reference => Ok(QueryValue::Reference(unescape(text))),
        SearchParamType::Quantity => quantity(param, text),
        SearchParamType::Uri => Ok(QueryValue::Uri(unescape(text))),
        SearchParamType::Composite => composite(param, text),
        SearchParamType::Special => Err("special parameters have no generic value syntax".to_owned()),
    }
}

/// search.html#prefix: a number, date or quantity may start with a two-letter comparator.
/// Any other two-letter alphabetic start is an error (no number or date starts with letters).
fn prefix<'t>(param: &'static SearchParamDef, text: &'t str) -> Result<(Prefix, &'t str), String> {
    let bytes = text.as_bytes();
    if bytes.len() < 2 || !bytes[0].is_ascii_alphabetic() || !bytes[1].is_ascii_alphabetic() {
        return Ok((Prefix::Eq, text));
    }
    // Both bytes are ASCII, so 2 is a char boundary.
    let (code, rest) = text.split_at(2);
    let prefix = match code {
        "eq" => Prefix::Eq,
        "ne" => Prefix::Ne,
        "gt" => Prefix::Gt,
        "lt" => Prefix::Lt,
        "ge" => Prefix::Ge,
        "le" => Prefix::Le,
        "sa" => Prefix::Sa,
        "eb" => Prefix::Eb,
        "ap" => Prefix::Ap,
        _ => return Err("unknown prefix".to_owned()),
    };
    // SearchParameter.comparator lists the prefixes a definition allows, when it lists any.
    if !param.comparators.is_empty() && !param.comparators.contains(&code) {
        return Err(format!("prefix {code} is not allowed"));
    }
    Ok((prefix, rest))
}

/// search.html#token: `[code]`, `[system]|[code]`, `|[code]` (no system) or `[system]|`
/// (any code of the system).
fn token(text: &str) -> Result<QueryValue, String> {
    match split(text, '|').as_slice() {
        [code] => Ok(QueryValue::Token { system: None, code: Some(unescape(code)) }),
        [system, code] => {
            if system.is_empty() && code.is_empty() {
                return Err("a token needs a system or a code".to_owned());
            }
            let code = (!code.is_empty()).then(|| unescape(code));
            Ok(QueryValue::Token { system: Some(unescape(system)), code })
        }
        _ => Err("a token has at most one unescaped '|'".to_owned()),
    }
}

/// search.html#token `:of-type`: `[type-system]|[type-code]|[value]`, all three present.
fn of_type(text: &str) -> Result<QueryValue, String> {
    match split(text, '|').as_slice() {
        [type_system, type_code, value] if !type_system.is_empty() && !type_code.is_empty() && !value.is_empty() => {
            Ok(QueryValue::OfType { type_system: unescape(type_system), type_code: unescape(type_code), value: unescape(value) })
        }
        _ => Err(":of-type takes system|code|value, all three present".to_owned()),
    }
}

/// search.html#quantity: `[prefix][number]|[system]|[code]`, `[prefix][number]||[code]` (any
/// system, code or unit) or `[prefix][number]` (any unit).
fn quantity(param: &'static SearchParamDef, text: &str) -> Result<QueryValue, String> {
    let parts = split(text, '|');
    let (number, system, code) = match parts.as_slice() {
        [number] => (*number, None, None),
        [number, system, code] => {
            let opt = |s: &str| (!s.is_empty()).then(|| unescape(s));
            (*number, opt(system), opt(code))
        }
        _ => return Err("a quantity is number, or number|system|code".to_owned()),
    };
    let (prefix, number) = prefix(param, number)?;
    let value = Decimal::parse(&unescape(number)).ok_or("invalid number")?;
    Ok(QueryValue::Quantity { prefix, value, system, code })
}

/// search.html#composite: one value per component, separated by unescaped `$`, each parsed
/// with the type of the component's own definition.
fn composite(param: &'static SearchParamDef, text: &str) -> Result<QueryValue, String> {
    let parts = split(text, '$');
    if parts.len() != param.components.len() {
        return Err(format!("expected {} components separated by '$'", param.components.len()));
    }
    let mut values = Vec::with_capacity(parts.len());
    for ((_, def), part) in param.component_defs().zip(parts) {
        let def = def.ok_or("a component's definition is unknown")?;
        if part.is_empty() {
            return Err("empty component".to_owned());
        }
        if def.kind == SearchParamType::Composite {
            return Err("nested composite components are not supported".to_owned());
        }
        values.push(by_kind(def, part)?);
    }
    Ok(QueryValue::Composite(values))
}

/// `text` split on every `sep` not preceded by an escaping backslash; the parts keep their
/// escapes (so that nested splits still see them).
fn split(text: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        if c == '\\' {
            chars.next();
        } else if c == sep {
            parts.push(&text[start..i]);
            start = i + c.len_utf8();
        }
    }
    parts.push(&text[start..]);
    parts
}

/// `text` with `\,` `\$` `\|` `\\` replaced by the character escaped; other backslashes kept.
fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(&next @ (',' | '$' | '|' | '\\')) = chars.peek() {
                out.push(next);
                chars.next();
                continue;
            }
        }
        out.push(c);
    }
    out
}

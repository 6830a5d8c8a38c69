//! Tokenizer for FHIRPath expressions.

use super::FhirPathError;

/// One lexical token with the byte offset where it starts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub kind: Tok,
    pub pos: usize,
}

/// Token kinds.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    /// A plain or backtick-delimited identifier (keywords are identifiers too; the parser decides).
    Ident(String),
    /// A delimited identifier (`` `div` ``): never a keyword.
    Delimited(String),
    /// A string literal, escapes resolved.
    Str(String),
    /// An integer literal.
    Int(i64),
    /// A decimal literal, kept as written.
    Dec(String),
    /// A date, date-time or time literal without the leading `@`.
    DateTime(String),
    /// `%name` or `%'name'`.
    Env(String),
    /// `$this`, `$index`, `$total`.
    Special(String),
    /// Punctuation and operators.
    Sym(&'static str),
    /// End of input.
    Eof,
}

const SYMS: [&str; 19] = ["<=", ">=", "!=", "!~", ".", "[", "]", "(", ")", "{", "}", ",", "+", "-", "*", "/", "|", "&", "="];

/// Splits `src` into tokens.
pub(crate) fn tokenize(src: &str) -> Result<Vec<Token>, FhirPathError> {
    let bytes = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        // comments
        if c == b'/' && bytes.get(i + 1) == Some(&b'/') {
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        if c == b'/' && bytes.get(i + 1) == Some(&b'*') {
            let end = src[i + 2..].find("*/").ok_or_else(|| FhirPathError::parse("unterminated comment", i))?;
            i += end + 4;
            continue;
        }
        let start = i;
        if c.is_ascii_alphabetic() || c == b'_' {
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            out.push(Token { kind: Tok::Ident(src[start..i].to_string()), pos: start });
            continue;
        }
        if c.is_ascii_digit() {
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            let mut is_dec = false;
            if i + 1 < bytes.len() && bytes[i] == b'.' && bytes[i + 1].is_ascii_digit() {
                is_dec = true;
                i += 1;
                while i < bytes.len() && bytes[i].is_ascii_digit() {
                    i += 1;
                }
            }
            let text = &src[start..i];
            let kind = if is_dec {
                Tok::Dec(text.to_string())
            } else {
                match text.parse::<i64>() {
                    Ok(n) => Tok::Int(n),
                    Err(_) => return Err(FhirPathError::parse("integer literal out of range", start)),
                }
            };
            out.push(Token { kind, pos: start });
            continue;
        }
        match c {
            b'\'' | b'`' => {
                let (text, next) = read_quoted(src, i, c)?;
                let kind = if c == b'\'' { Tok::Str(text) } else { Tok::Delimited(text) };
                out.push(Token { kind, pos: start });
                i = next;
            }
            b'@' => {
                i += 1;
                // A `.` belongs to the literal only before fractional seconds (`@T10:00:00.5`), not before `.is(...)`.
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric()
                        || matches!(bytes[i], b'-' | b':' | b'+' | b'T')
                        || (bytes[i] == b'.' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit)))
                {
                    i += 1;
                }
                if i == start + 1 {
                    return Err(FhirPathError::parse("empty date/time literal", start));
                }
                out.push(Token { kind: Tok::DateTime(src[start + 1..i].to_string()), pos: start });
            }
            b'%' => {
                i += 1;
                if bytes.get(i) == Some(&b'\'') || bytes.get(i) == Some(&b'`') {
                    let (text, next) = read_quoted(src, i, bytes[i])?;
                    out.push(Token { kind: Tok::Env(text), pos: start });
                    i = next;
                } else {
                    while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || matches!(bytes[i], b'_' | b'-')) {
                        i += 1;
                    }
                    if i == start + 1 {
                        return Err(FhirPathError::parse("empty environment variable name", start));
                    }
                    out.push(Token { kind: Tok::Env(src[start + 1..i].to_string()), pos: start });
                }
            }
            b'$' => {
                i += 1;
                while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
                    i += 1;
                }
                out.push(Token { kind: Tok::Special(src[start + 1..i].to_string()), pos: start });
            }
            b'<' | b'>' if bytes.get(i + 1) != Some(&b'=') => {
                out.push(Token { kind: Tok::Sym(if c == b'<' { "<" } else { ">" }), pos: start });
                i += 1;
            }
            b'~' => {
                out.push(Token { kind: Tok::Sym("~"), pos: start });
                i += 1;
            }
            _ => {
                let rest = &src[i..];
                match SYMS.iter().find(|s| rest.starts_with(**s)) {
                    Some(s) => {
                        out.push(Token { kind: Tok::Sym(s), pos: start });
                        i += s.len();
                    }
                    None => return Err(FhirPathError::parse("unexpected character", start)),
                }
            }
        }
    }
    out.push(Token { kind: Tok::Eof, pos: src.len() });
    Ok(out)
}

/// Reads a quoted string starting at `start` (the quote), resolving escapes. Returns the text and the offset after the closing quote.
fn read_quoted(src: &str, start: usize, quote: u8) -> Result<(String, usize), FhirPathError> {
    let mut out = String::new();
    let mut chars = src[start + 1..].char_indices();
    while let Some((off, ch)) = chars.next() {
        let at = start + 1 + off;
        if ch as u32 == quote as u32 {
            return Ok((out, at + 1));
        }
        if ch != '\\' {
            out.push(ch);
            continue;
        }
        let (_, esc) = chars.next().ok_or_else(|| FhirPathError::parse("unterminated string", start))?;
        match esc {
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'f' => out.push('\u{c}'),
            'u' => {
                let mut code = String::new();
                for _ in 0..4 {
                    let (_, h) = chars.next().ok_or_else(|| FhirPathError::parse("bad unicode escape", at))?;
                    code.push(h);
                }
                let n = u32::from_str_radix(&code, 16).map_err(|_| FhirPathError::parse("bad unicode escape", at))?;
                out.push(char::from_u32(n).ok_or_else(|| FhirPathError::parse("bad unicode escape", at))?);
            }
            other => out.push(other),
        }
    }
    Err(FhirPathError::parse("unterminated string", start))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(s: &str) -> Vec<Tok> {
        tokenize(s).unwrap().into_iter().map(|t| t.kind).collect()
    }

    #[test]
    fn tokenizes_paths_strings_and_operators() {
        assert_eq!(
            kinds("Patient.name.where(use != 'o\\'k')"),
            vec![
                Tok::Ident("Patient".into()),
                Tok::Sym("."),
                Tok::Ident("name".into()),
                Tok::Sym("."),
                Tok::Ident("where".into()),
                Tok::Sym("("),
                Tok::Ident("use".into()),
                Tok::Sym("!="),
                Tok::Str("o'k".into()),
                Tok::Sym(")"),
                Tok::Eof
            ]
        );
    }

    #[test]
    fn tokenizes_literals() {
        assert_eq!(
            kinds("1.5 42 @2020-01-01T10:00:00Z %resource $this `div` <= <"),
            vec![
                Tok::Dec("1.5".into()),
                Tok::Int(42),
                Tok::DateTime("2020-01-01T10:00:00Z".into()),
                Tok::Env("resource".into()),
                Tok::Special("this".into()),
                Tok::Delimited("div".into()),
                Tok::Sym("<="),
                Tok::Sym("<"),
                Tok::Eof
            ]
        );
    }

    #[test]
    fn rejects_garbage() {
        assert!(tokenize("'abc").is_err());
        assert!(tokenize("a # b").is_err());
        assert!(tokenize("99999999999999999999").is_err());
        assert!(tokenize("'\\u12").is_err());
    }
}

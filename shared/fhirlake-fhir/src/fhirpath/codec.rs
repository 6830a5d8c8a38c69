//! `encode()`/`decode()` (base64, urlbase64, hex) and `escape()`/`unescape()` (html, json) for FHIRPath strings.

const STD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Encodes `s` (its UTF-8 bytes) in `format`; `None` for an unknown format.
pub(crate) fn encode(s: &str, format: &str) -> Option<String> {
    let bytes = s.as_bytes();
    match format {
        "hex" => Some(bytes.iter().map(|b| format!("{b:02x}")).collect()),
        "base64" => Some(base64(bytes, STD)),
        "urlbase64" => Some(base64(bytes, URL)),
        _ => None,
    }
}

/// Decodes `s` from `format` to a UTF-8 string; `None` for an unknown format or input that does not decode.
pub(crate) fn decode(s: &str, format: &str) -> Option<String> {
    let bytes = match format {
        "hex" => {
            if !s.len().is_multiple_of(2) || !s.is_ascii() {
                return None;
            }
            (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok()).collect::<Option<Vec<u8>>>()?
        }
        "base64" => unbase64(s, STD)?,
        "urlbase64" => unbase64(s, URL)?,
        _ => return None,
    };
    String::from_utf8(bytes).ok()
}

fn base64(bytes: &[u8], alphabet: &[u8; 64]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(alphabet[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn unbase64(s: &str, alphabet: &[u8; 64]) -> Option<Vec<u8>> {
    let data = s.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(data.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in data {
        let v = alphabet.iter().position(|a| a == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
        }
    }
    Some(out)
}

/// Escapes `s` for `target` (`html` or `json`); `None` for an unknown target.
pub(crate) fn escape(s: &str, target: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match (target, c) {
            ("html", '<') => out.push_str("&lt;"),
            ("html", '>') => out.push_str("&gt;"),
            ("html", '&') => out.push_str("&amp;"),
            ("html", '"') => out.push_str("&quot;"),
            ("html", '\'') => out.push_str("&#39;"),
            ("json", '"') => out.push_str("\\\""),
            ("json", '\\') => out.push_str("\\\\"),
            ("json", '\n') => out.push_str("\\n"),
            ("json", '\r') => out.push_str("\\r"),
            ("json", '\t') => out.push_str("\\t"),
            ("html" | "json", c) => out.push(c),
            _ => return None,
        }
    }
    Some(out)
}

/// Reverses [`escape`]; `None` for an unknown target.
pub(crate) fn unescape(s: &str, target: &str) -> Option<String> {
    match target {
        "html" => Some(
            s.replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&#39;", "'")
                .replace("&apos;", "'")
                .replace("&amp;", "&"),
        ),
        "json" => {
            let mut out = String::with_capacity(s.len());
            let mut chars = s.chars();
            while let Some(c) = chars.next() {
                if c != '\\' {
                    out.push(c);
                    continue;
                }
                match chars.next() {
                    Some('n') => out.push('\n'),
                    Some('r') => out.push('\r'),
                    Some('t') => out.push('\t'),
                    Some(other) => out.push(other),
                    None => out.push('\\'),
                }
            }
            Some(out)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for s in ["", "t", "te", "tes", "test", "subjects?_d", "é"] {
            for f in ["hex", "base64", "urlbase64"] {
                assert_eq!(decode(&encode(s, f).unwrap(), f).as_deref(), Some(s), "{f} {s}");
            }
        }
        assert_eq!(encode("test", "base64").as_deref(), Some("dGVzdA=="));
        assert_eq!(encode("subjects?_d", "urlbase64").as_deref(), Some("c3ViamVjdHM_X2Q="));
        assert_eq!(decode("zz", "hex"), None);
        assert_eq!(decode("@@", "base64"), None);
        assert_eq!(escape("\"1<2\"", "html").as_deref(), Some("&quot;1&lt;2&quot;"));
        assert_eq!(unescape("\\\"1<2\\\"", "json").as_deref(), Some("\"1<2\""));
        assert_eq!(encode("x", "rot13"), None);
    }
}

//! SigV4 canonicalisation, shared by the [`crate::Verifier`] and the [`crate::Signer`].
//!
//! Follows botocore's `SigV4Auth` for non-S3 services exactly:
//!
//! | part | rule |
//! |---|---|
//! | method | upper-cased |
//! | URI | dot segments and empty segments removed, then URI-encoded with `/` and `~` kept, so an already percent-encoded path is encoded a second time (`%20` becomes `%2520`) |
//! | query | pairs sorted by (key, value); see [`QueryStyle`] for the three encodings clients use |
//! | headers | names lower-cased, values trimmed with inner runs of whitespace collapsed to one space, repeated headers joined with `,`, in the order of `SignedHeaders` |
//! | payload | the `x-amz-content-sha256` header when present, else the hex SHA-256 of the body |

use std::fmt;

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::{Digest, Sha256};

/// Everything except RFC 3986's unreserved characters (`A-Z a-z 0-9 - _ . ~`).
const RFC3986: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
/// As [`RFC3986`] but keeping `/`: the encoding of a canonical URI.
const RFC3986_PATH: &AsciiSet = &RFC3986.remove(b'/');

/// The hex SHA-256 of an empty body.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/// The payload hash a client sends in `x-amz-content-sha256` when it does not sign the body.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// The lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The canonical URI of a raw (still percent-encoded) request path, as botocore computes it for
/// non-S3 services: normalised, then encoded once more.
pub fn canonical_uri(raw_path: &str) -> String {
    utf8_percent_encode(&normalize_path(raw_path), RFC3986_PATH).to_string()
}

/// Removes `.` and `..` segments and empty segments (`//`), keeping a leading and a trailing
/// slash; an empty path becomes `/`. This is botocore's `normalize_url_path`.
pub fn normalize_path(path: &str) -> String {
    if path.is_empty() {
        return "/".to_string();
    }
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    let mut out = String::with_capacity(path.len());
    if path.starts_with('/') {
        out.push('/');
    }
    out.push_str(&segments.join("/"));
    if path.ends_with('/') && !segments.is_empty() {
        out.push('/');
    }
    out
}

/// How a client turned its query parameters into the canonical query string.
///
/// SigV4 says: decode, encode with RFC 3986, sort. Real clients differ: botocore signs the
/// query of a URL exactly as written (only sorting the pairs), and the AWS SDK for Rust decodes
/// `+` as a space first. A verifier computes each style and accepts a signature that matches
/// any of them; all three are deterministic functions of the bytes received, and the secret is
/// still needed to produce a matching signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryStyle {
    /// Decode percent escapes, re-encode with RFC 3986 (the SigV4 specification).
    Rfc3986,
    /// Pairs exactly as they appear in the URL, sorted (botocore for a URL with a query).
    Raw,
    /// As [`QueryStyle::Rfc3986`] but `+` decodes to a space (form encoding).
    Form,
}

impl QueryStyle {
    /// Every style, in the order a verifier tries them.
    pub const ALL: [QueryStyle; 3] = [QueryStyle::Rfc3986, QueryStyle::Raw, QueryStyle::Form];
}

/// The canonical query string of `raw_query` (no leading `?`) in `style`, leaving out every
/// parameter named `exclude` (the presigned `X-Amz-Signature`).
pub fn canonical_query(raw_query: &str, style: QueryStyle, exclude: Option<&str>) -> String {
    if raw_query.is_empty() {
        return String::new();
    }
    let mut pairs: Vec<(String, String)> = raw_query
        .split('&')
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if exclude.is_some_and(|excluded| decode(key, style) == excluded.as_bytes()) {
                return None;
            }
            Some(match style {
                QueryStyle::Raw => (key.to_string(), value.to_string()),
                QueryStyle::Rfc3986 | QueryStyle::Form => (encode(key, style), encode(value, style)),
            })
        })
        .collect();
    pairs.sort_unstable();
    let mut out = String::with_capacity(raw_query.len() + 8);
    for (i, (key, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(key);
        out.push('=');
        out.push_str(value);
    }
    out
}

/// Percent-decodes one query component; `+` is a space only in [`QueryStyle::Form`].
pub(crate) fn decode(component: &str, style: QueryStyle) -> Vec<u8> {
    if style == QueryStyle::Form && component.contains('+') {
        percent_decode_str(&component.replace('+', " ")).collect()
    } else {
        percent_decode_str(component).collect()
    }
}

fn encode(component: &str, style: QueryStyle) -> String {
    percent_encoding::percent_encode(&decode(component, style), RFC3986).to_string()
}

/// Encodes one query component with RFC 3986 (for building request URLs that every style
/// canonicalises identically).
pub fn encode_query_component(component: &str) -> String {
    utf8_percent_encode(component, RFC3986).to_string()
}

/// Trims a header value and collapses inner runs of whitespace to one space, as Python's
/// `' '.join(value.split())` does in botocore.
pub fn trim_all(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for word in value.split(is_python_whitespace).filter(|w| !w.is_empty()) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// What Python's `str.split()` splits on: Unicode whitespace plus the ASCII separators.
fn is_python_whitespace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// The credential scope: `date/region/service/aws4_request`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialScope {
    /// The signing date, `YYYYMMDD`.
    pub date: String,
    /// The region, e.g. `us-east-1`.
    pub region: String,
    /// The service, `healthlake` for fhirlake.
    pub service: String,
}

impl fmt::Display for CredentialScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}/aws4_request", self.date, self.region, self.service)
    }
}

/// Assembles the canonical request from its canonicalised parts.
///
/// `canonical_headers` holds one `name:value` line per signed header, each ending in `\n`.
pub fn canonical_request(
    method: &str,
    canonical_uri: &str,
    canonical_query: &str,
    canonical_headers: &str,
    signed_headers: &str,
    payload_hash: &str,
) -> String {
    let mut out = String::with_capacity(
        method.len()
            + canonical_uri.len()
            + canonical_query.len()
            + canonical_headers.len()
            + signed_headers.len()
            + payload_hash.len()
            + 8,
    );
    for c in method.chars() {
        out.push(c.to_ascii_uppercase());
    }
    for part in [canonical_uri, canonical_query, canonical_headers, signed_headers] {
        out.push('\n');
        out.push_str(part);
    }
    out.push('\n');
    out.push_str(payload_hash);
    out
}

/// The string to sign for a canonical request signed at `timestamp` (`YYYYMMDDTHHMMSSZ`).
pub fn string_to_sign(timestamp: &str, scope: &CredentialScope, canonical_request: &str) -> String {
    format!("{}\n{timestamp}\n{scope}\n{}", super::ALGORITHM, sha256_hex(canonical_request.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_is_normalised_and_encoded_twice() {
        assert_eq!(canonical_uri(""), "/");
        assert_eq!(canonical_uri("/"), "/");
        assert_eq!(canonical_uri("/a/./b/../c//d/"), "/a/c/d/");
        assert_eq!(canonical_uri("/../.."), "/");
        assert_eq!(canonical_uri("/a%20b/$x:y"), "/a%2520b/%24x%3Ay");
        assert_eq!(canonical_uri("/~user/é"), "/~user/%C3%A9");
    }

    #[test]
    fn query_styles() {
        let q = "b=2&a=x+y&a=%41&c&_since=2024-01-01T00:00:00Z";
        assert_eq!(canonical_query(q, QueryStyle::Rfc3986, None), "_since=2024-01-01T00%3A00%3A00Z&a=A&a=x%2By&b=2&c=");
        assert_eq!(canonical_query(q, QueryStyle::Raw, None), "_since=2024-01-01T00:00:00Z&a=%41&a=x+y&b=2&c=");
        assert_eq!(canonical_query(q, QueryStyle::Form, None), "_since=2024-01-01T00%3A00%3A00Z&a=A&a=x%20y&b=2&c=");
        assert_eq!(canonical_query("", QueryStyle::Raw, None), "");
    }

    #[test]
    fn query_sorts_by_key_then_value_not_by_pair_text() {
        // "a-b=1" sorts before "a=2" as text, but the key "a" sorts before "a-b".
        assert_eq!(canonical_query("a-b=1&a=2", QueryStyle::Rfc3986, None), "a=2&a-b=1");
        assert_eq!(canonical_query("a-b=1&a=2", QueryStyle::Raw, None), "a=2&a-b=1");
    }

    #[test]
    fn query_excludes_the_signature() {
        assert_eq!(canonical_query("X-Amz-Signature=ab&x=1", QueryStyle::Rfc3986, Some("X-Amz-Signature")), "x=1");
        assert_eq!(canonical_query("X-Amz-Signature=ab&x=1", QueryStyle::Raw, Some("X-Amz-Signature")), "x=1");
    }

    #[test]
    fn header_values_are_trimmed() {
        assert_eq!(trim_all("  a   b\t c  "), "a b c");
        assert_eq!(trim_all(""), "");
        assert_eq!(trim_all("\"a  b\""), "\"a b\"");
    }

    #[test]
    fn canonical_request_layout() {
        let scope = CredentialScope { date: "20240101".into(), region: "us-east-1".into(), service: "healthlake".into() };
        let cr = canonical_request("get", "/", "", "host:x\n", "host", EMPTY_SHA256);
        assert_eq!(cr, format!("GET\n/\n\nhost:x\n\nhost\n{EMPTY_SHA256}"));
        let sts = string_to_sign("20240101T000000Z", &scope, &cr);
        assert!(sts.starts_with("AWS4-HMAC-SHA256\n20240101T000000Z\n20240101/us-east-1/healthlake/aws4_request\n"));
        assert_eq!(sha256_hex(b""), EMPTY_SHA256);
    }
}

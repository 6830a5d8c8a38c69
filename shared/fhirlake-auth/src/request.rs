//! The parts of an HTTP request that SigV4 covers, independent of any HTTP framework.

/// What the signature covers of the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload<'a> {
    /// The body itself; the verifier hashes it.
    Bytes(&'a [u8]),
    /// The lowercase (or uppercase) hex SHA-256 of the body, computed by the caller.
    Sha256Hex(&'a str),
}

/// A request as received (or about to be sent), borrowed from whatever holds it.
///
/// Header names may be in any case (`N` and `V` are anything byte-like: `String`, `&str`,
/// `&[u8]`, so an `http::HeaderMap` maps over with `(name.as_str(), value.as_bytes())`); a name may repeat (values are then joined with `,` in
/// the order given, as SigV4 specifies). Values are the raw header bytes.
#[derive(Debug, Clone, Copy)]
pub struct HttpRequest<'a, N = String, V = String> {
    /// The method, e.g. `GET`.
    pub method: &'a str,
    /// The path exactly as it appears on the request line, still percent-encoded.
    pub path: &'a str,
    /// The raw query string without the leading `?` (empty when there is none).
    pub query: &'a str,
    /// The request headers as (name, value) pairs.
    pub headers: &'a [(N, V)],
    /// The body, or its hash.
    pub payload: Payload<'a>,
}

impl<'a, N: AsRef<[u8]>, V: AsRef<[u8]>> HttpRequest<'a, N, V> {
    /// Borrows the parts of a request.
    pub fn new(method: &'a str, path: &'a str, query: &'a str, headers: &'a [(N, V)], payload: Payload<'a>) -> Self {
        HttpRequest { method, path, query, headers, payload }
    }

    /// Every value of header `name` (compared case-insensitively), in order.
    pub(crate) fn header_values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'a [u8]> + 's {
        self.headers.iter().filter(move |(n, _)| n.as_ref().eq_ignore_ascii_case(name.as_bytes())).map(|(_, v)| v.as_ref())
    }

    /// The value of header `name` when it occurs exactly once.
    pub(crate) fn single_header(&self, name: &str) -> SingleHeader<'a> {
        let mut values = self.header_values(name);
        match (values.next(), values.next()) {
            (None, _) => SingleHeader::Absent,
            (Some(v), None) => SingleHeader::One(v),
            (Some(_), Some(_)) => SingleHeader::Repeated,
        }
    }
}

/// The outcome of looking up a header that must not repeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SingleHeader<'a> {
    /// The header is not present.
    Absent,
    /// The header is present once with this value.
    One(&'a [u8]),
    /// The header is present more than once.
    Repeated,
}

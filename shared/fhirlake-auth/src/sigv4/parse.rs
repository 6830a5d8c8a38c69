//! Reading the signature out of a request: the `Authorization` header or, for presigned URLs,
//! the `X-Amz-*` query parameters.

use chrono::{DateTime, Utc};

use super::canonical::{decode, CredentialScope, QueryStyle};
use super::{timestamp, ALGORITHM};
use crate::request::SingleHeader;
use crate::{AuthError, HttpRequest};

/// The longest lifetime a presigned URL may ask for: 7 days, as AWS allows.
const MAX_PRESIGNED_EXPIRES_SECONDS: i64 = 7 * 24 * 60 * 60;

/// The query parameter carrying a presigned signature.
pub(crate) const SIGNATURE_PARAM: &str = "X-Amz-Signature";

/// What a request claims about its signature.
#[derive(Debug)]
pub(crate) struct SignatureInfo {
    pub access_key_id: String,
    pub scope: CredentialScope,
    /// The `SignedHeaders` list exactly as sent (`;`-separated, lowercase).
    pub signed_headers: String,
    pub signature: [u8; 32],
    /// The signing time as it enters the string to sign (`YYYYMMDDTHHMMSSZ`).
    pub timestamp: String,
    pub signed_at: DateTime<Utc>,
    /// `Some(seconds)` for a presigned URL.
    pub expires_in: Option<i64>,
}

impl SignatureInfo {
    /// The names in `SignedHeaders`.
    pub fn signed_header_names(&self) -> impl Iterator<Item = &str> {
        self.signed_headers.split(';')
    }
}

/// Finds and parses the signature of `request`.
pub(crate) fn signature_info<N: AsRef<[u8]>, V: AsRef<[u8]>>(request: &HttpRequest<'_, N, V>) -> Result<SignatureInfo, AuthError> {
    let presigned =
        query_params(request.query).any(|(key, _)| matches!(key.as_slice(), b"X-Amz-Algorithm" | b"X-Amz-Credential" | b"X-Amz-Signature"));
    match (request.single_header("authorization"), presigned) {
        (SingleHeader::Absent, false) => Err(AuthError::Missing),
        (SingleHeader::Repeated, _) => Err(AuthError::Malformed("more than one authorization header")),
        (SingleHeader::One(_), true) => Err(AuthError::Malformed("only one authentication mechanism is allowed")),
        (SingleHeader::One(value), false) => from_header(request, value),
        (SingleHeader::Absent, true) => from_query(request.query),
    }
}

fn from_header<N: AsRef<[u8]>, V: AsRef<[u8]>>(request: &HttpRequest<'_, N, V>, value: &[u8]) -> Result<SignatureInfo, AuthError> {
    let value = std::str::from_utf8(value).map_err(|_| AuthError::Malformed("authorization header is not text"))?;
    let Some(rest) = value.trim().strip_prefix(ALGORITHM) else {
        return Err(AuthError::Malformed("unsupported authorization scheme"));
    };
    if !rest.starts_with(' ') {
        return Err(AuthError::Malformed("unsupported authorization scheme"));
    }
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for component in rest.split(',') {
        let Some((name, value)) = component.trim().split_once('=') else {
            return Err(AuthError::Malformed("authorization header component without a value"));
        };
        let slot = match name {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed_headers,
            "Signature" => &mut signature,
            _ => return Err(AuthError::Malformed("unknown authorization header component")),
        };
        if slot.replace(value).is_some() {
            return Err(AuthError::Malformed("repeated authorization header component"));
        }
    }
    let credential = credential.ok_or(AuthError::Malformed("authorization header lacks credential"))?;
    let signed_headers = signed_headers.ok_or(AuthError::Malformed("authorization header lacks signed headers"))?;
    let signature = signature.ok_or(AuthError::Malformed("authorization header lacks signature"))?;

    let (timestamp, signed_at) = header_timestamp(request)?;
    let (access_key_id, scope) = parse_credential(credential)?;
    Ok(SignatureInfo {
        access_key_id,
        scope,
        signed_headers: parse_signed_headers(signed_headers)?,
        signature: parse_signature(signature)?,
        timestamp,
        signed_at,
        expires_in: None,
    })
}

/// `X-Amz-Date`, else `Date`.
fn header_timestamp<N: AsRef<[u8]>, V: AsRef<[u8]>>(request: &HttpRequest<'_, N, V>) -> Result<(String, DateTime<Utc>), AuthError> {
    let as_text = |v: &[u8]| std::str::from_utf8(v).map(str::trim).map(str::to_string);
    match request.single_header("x-amz-date") {
        SingleHeader::One(value) => {
            let value = as_text(value).map_err(|_| AuthError::Malformed("x-amz-date is not a valid timestamp"))?;
            let time = timestamp::parse_amz_date(&value).ok_or(AuthError::Malformed("x-amz-date is not a valid timestamp"))?;
            Ok((value, time))
        }
        SingleHeader::Repeated => Err(AuthError::Malformed("more than one x-amz-date header")),
        SingleHeader::Absent => match request.single_header("date") {
            SingleHeader::One(value) => {
                let time = as_text(value)
                    .ok()
                    .and_then(|v| timestamp::parse_http_date(&v))
                    .ok_or(AuthError::Malformed("date header is not a valid http date"))?;
                Ok((timestamp::format(time), time))
            }
            SingleHeader::Repeated => Err(AuthError::Malformed("more than one date header")),
            SingleHeader::Absent => Err(AuthError::Malformed("request has neither an x-amz-date nor a date header")),
        },
    }
}

fn from_query(raw_query: &str) -> Result<SignatureInfo, AuthError> {
    let (mut algorithm, mut credential, mut date, mut expires, mut signed_headers, mut signature) = (None, None, None, None, None, None);
    for (key, value) in query_params(raw_query) {
        let slot = match key.as_slice() {
            b"X-Amz-Algorithm" => &mut algorithm,
            b"X-Amz-Credential" => &mut credential,
            b"X-Amz-Date" => &mut date,
            b"X-Amz-Expires" => &mut expires,
            b"X-Amz-SignedHeaders" => &mut signed_headers,
            b"X-Amz-Signature" => &mut signature,
            _ => continue,
        };
        let value = String::from_utf8(value).map_err(|_| AuthError::Malformed("presigned parameter is not text"))?;
        if slot.replace(value).is_some() {
            return Err(AuthError::Malformed("repeated presigned parameter"));
        }
    }
    let missing = |what| AuthError::Malformed(what);
    if algorithm.ok_or(missing("presigned url lacks x-amz-algorithm"))? != ALGORITHM {
        return Err(AuthError::Malformed("unsupported signing algorithm"));
    }
    let credential = credential.ok_or(missing("presigned url lacks x-amz-credential"))?;
    let date = date.ok_or(missing("presigned url lacks x-amz-date"))?;
    let expires = expires.ok_or(missing("presigned url lacks x-amz-expires"))?;
    let signed_headers = signed_headers.ok_or(missing("presigned url lacks x-amz-signedheaders"))?;
    let signature = signature.ok_or(missing("presigned url lacks x-amz-signature"))?;

    let signed_at = timestamp::parse_amz_date(&date).ok_or(AuthError::Malformed("x-amz-date is not a valid timestamp"))?;
    let expires_in = match expires.parse::<i64>() {
        Ok(seconds) if (1..=MAX_PRESIGNED_EXPIRES_SECONDS).contains(&seconds) && !expires.starts_with('+') => seconds,
        _ => return Err(AuthError::Malformed("x-amz-expires must be between 1 and 604800 seconds")),
    };
    let (access_key_id, scope) = parse_credential(&credential)?;
    Ok(SignatureInfo {
        access_key_id,
        scope,
        signed_headers: parse_signed_headers(&signed_headers)?,
        signature: parse_signature(&signature)?,
        timestamp: date,
        signed_at,
        expires_in: Some(expires_in),
    })
}

/// The decoded (key, value) pairs of a raw query string.
fn query_params(raw_query: &str) -> impl Iterator<Item = (Vec<u8>, Vec<u8>)> + '_ {
    raw_query.split('&').filter(|pair| !pair.is_empty()).map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(key, QueryStyle::Rfc3986), decode(value, QueryStyle::Rfc3986))
    })
}

/// `AKID/YYYYMMDD/region/service/aws4_request`.
fn parse_credential(credential: &str) -> Result<(String, CredentialScope), AuthError> {
    let mut parts = credential.rsplitn(5, '/');
    let (Some(terminator), Some(service), Some(region), Some(date), Some(access_key_id)) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed("credential must have the form key/date/region/service/aws4_request"));
    };
    if terminator != "aws4_request" {
        return Err(AuthError::Malformed("credential scope must end with aws4_request"));
    }
    if access_key_id.is_empty() || access_key_id.bytes().any(|b| !b.is_ascii_graphic()) {
        return Err(AuthError::Malformed("credential has an invalid access key id"));
    }
    if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AuthError::Malformed("credential scope date must be yyyymmdd"));
    }
    if region.is_empty() || service.is_empty() {
        return Err(AuthError::Malformed("credential scope lacks a region or service"));
    }
    let scope = CredentialScope { date: date.to_string(), region: region.to_string(), service: service.to_string() };
    Ok((access_key_id.to_string(), scope))
}

fn parse_signed_headers(list: &str) -> Result<String, AuthError> {
    let valid_name = |name: &str| !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':' && !b.is_ascii_uppercase());
    if !list.split(';').all(valid_name) {
        return Err(AuthError::Malformed("signed headers must be lowercase names separated by semicolons"));
    }
    if !list.split(';').any(|name| name == "host") {
        return Err(AuthError::Malformed("the host header must be signed"));
    }
    Ok(list.to_string())
}

fn parse_signature(signature: &str) -> Result<[u8; 32], AuthError> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(signature, &mut bytes).map_err(|_| AuthError::Malformed("signature must be 64 hexadecimal characters"))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Payload;

    fn info(headers: &[(&str, &str)], query: &str) -> Result<SignatureInfo, AuthError> {
        signature_info(&HttpRequest::new("GET", "/", query, headers, Payload::Bytes(b"")))
    }

    const SIG: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn auth(credential: &str, signed: &str) -> String {
        format!("AWS4-HMAC-SHA256 Credential={credential}, SignedHeaders={signed}, Signature={SIG}")
    }

    #[test]
    fn parses_a_botocore_header() {
        let a = auth("AKID/20240501/us-east-1/healthlake/aws4_request", "host;x-amz-date");
        let i = info(&[("Authorization", &a), ("X-Amz-Date", "20240501T120000Z")], "").unwrap();
        assert_eq!(i.access_key_id, "AKID");
        assert_eq!(i.scope.to_string(), "20240501/us-east-1/healthlake/aws4_request");
        assert_eq!(i.signed_header_names().collect::<Vec<_>>(), ["host", "x-amz-date"]);
        assert_eq!(i.timestamp, "20240501T120000Z");
        assert_eq!(i.expires_in, None);
    }

    #[test]
    fn date_header_is_a_fallback() {
        let a = auth("AKID/20240501/us-east-1/healthlake/aws4_request", "date;host");
        let i = info(&[("authorization", &a), ("date", "Wed, 01 May 2024 12:00:00 GMT")], "").unwrap();
        assert_eq!(i.timestamp, "20240501T120000Z");
    }

    #[test]
    fn missing_and_malformed() {
        assert_eq!(info(&[], "").unwrap_err(), AuthError::Missing);
        assert_eq!(info(&[("x-amz-date", "20240501T120000Z")], "a=b").unwrap_err(), AuthError::Missing);
        let good = auth("AKID/20240501/us-east-1/healthlake/aws4_request", "host;x-amz-date");
        let date = ("x-amz-date", "20240501T120000Z");
        let cases: Vec<Vec<(&str, String)>> = vec![
            vec![("authorization", "Bearer abc".into())],
            vec![("authorization", "AWS4-HMAC-SHA256Credential=x".into())],
            vec![("authorization", good.replace("Credential=", "Cred="))],
            vec![("authorization", good.replace(", Signature=", ", Signature=zz"))],
            vec![("authorization", good.replace("/aws4_request", "/aws4"))],
            vec![("authorization", good.replace("AKID/20240501", "AKID/2024050"))],
            vec![("authorization", good.replace("AKID/", ""))],
            vec![("authorization", good.replace("host;x-amz-date", "x-amz-date"))],
            vec![("authorization", good.replace("host;x-amz-date", "Host;x-amz-date"))],
            vec![("authorization", good.replace("host;x-amz-date", "host;;x-amz-date"))],
            vec![("authorization", format!("{good}, Signature={SIG}"))],
            vec![("authorization", good.clone()), ("authorization", good.clone())],
        ];
        for case in cases {
            let mut headers: Vec<(&str, &str)> = case.iter().map(|(n, v)| (*n, v.as_str())).collect();
            headers.push(date);
            assert!(matches!(info(&headers, ""), Err(AuthError::Malformed(_))), "{case:?}");
        }
        let no_date = [("authorization", good.as_str())];
        assert!(matches!(info(&no_date, ""), Err(AuthError::Malformed(_))));
        let bad_date = [("authorization", good.as_str()), ("x-amz-date", "2024-05-01")];
        assert!(matches!(info(&bad_date, ""), Err(AuthError::Malformed(_))));
        let both = [("authorization", good.as_str()), date];
        assert!(matches!(info(&both, "X-Amz-Signature=ab"), Err(AuthError::Malformed(_))));
    }

    #[test]
    fn parses_a_presigned_query() {
        let q = format!(
            "a=1&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKID%2F20240501%2Fus-east-1%2Fhealthlake%2Faws4_request\
             &X-Amz-Date=20240501T120000Z&X-Amz-Expires=300&X-Amz-SignedHeaders=host&X-Amz-Signature={SIG}"
        );
        let i = info(&[], &q).unwrap();
        assert_eq!(i.access_key_id, "AKID");
        assert_eq!(i.expires_in, Some(300));
        assert!(matches!(info(&[], &q.replace("Expires=300", "Expires=0")), Err(AuthError::Malformed(_))));
        assert!(matches!(info(&[], &q.replace("Expires=300", "Expires=604801")), Err(AuthError::Malformed(_))));
        assert!(matches!(info(&[], &q.replace("&X-Amz-Date=20240501T120000Z", "")), Err(AuthError::Malformed(_))));
        assert!(matches!(info(&[], &format!("{q}&X-Amz-Expires=1")), Err(AuthError::Malformed(_))));
    }
}

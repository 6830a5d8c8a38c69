//! Content negotiation, `Prefer` and `If-Match`: JSON is the only format this server speaks.

use http::{header, HeaderMap, StatusCode};

use super::error::FhirError;

/// What the client asked the server to return after a write (`Prefer: return=...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReturnPreference {
    /// No body.
    Minimal,
    /// The resource as stored (the default).
    Representation,
    /// An OperationOutcome describing the result.
    OperationOutcome,
}

/// The body kinds a request may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestBody {
    /// A FHIR resource as JSON.
    Resource,
    /// A JSON Patch document.
    JsonPatch,
}

fn is_json_media(media: &str) -> bool {
    matches!(media, "application/fhir+json" | "application/json" | "application/json+fhir" | "json")
}

fn is_xml_media(media: &str) -> bool {
    matches!(media, "application/fhir+xml" | "application/xml" | "text/xml" | "application/xml+fhir" | "xml" | "text/html" | "html")
}

fn media_type(value: &str) -> String {
    value.split(';').next().unwrap_or("").trim().to_ascii_lowercase()
}

/// Checks that the client accepts JSON (`Accept` and `_format`); 406 otherwise.
pub fn check_accept(headers: &HeaderMap, format_param: Option<&str>) -> Result<(), FhirError> {
    if let Some(format) = format_param {
        let media = media_type(format);
        if !is_json_media(&media) {
            return Err(not_acceptable(&media));
        }
        return Ok(());
    }
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else { return Ok(()) };
    let ranges: Vec<String> = accept.split(',').map(media_type).filter(|m| !m.is_empty()).collect();
    if ranges.is_empty() {
        return Ok(());
    }
    let acceptable = ranges.iter().any(|m| is_json_media(m) || m == "*/*" || m == "application/*");
    if acceptable {
        Ok(())
    } else {
        Err(not_acceptable(ranges.first().map(String::as_str).unwrap_or("")))
    }
}

fn not_acceptable(media: &str) -> FhirError {
    let what = if is_xml_media(media) { "xml is not supported" } else { "the requested format is not supported" };
    FhirError::new(StatusCode::NOT_ACCEPTABLE, "not-supported", format!("{what}: this server returns application/fhir+json only"))
}

/// Checks the request's `Content-Type` against what the interaction accepts; 415 otherwise.
/// A missing content type is read as FHIR JSON.
pub fn check_content_type(headers: &HeaderMap, allow_json_patch: bool) -> Result<RequestBody, FhirError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else { return Ok(RequestBody::Resource) };
    let media = media_type(value.to_str().unwrap_or(""));
    if is_json_media(&media) {
        return Ok(RequestBody::Resource);
    }
    if allow_json_patch && media == "application/json-patch+json" {
        return Ok(RequestBody::JsonPatch);
    }
    let what = if is_xml_media(&media) { "xml bodies are not supported" } else { "unsupported content type" };
    Err(FhirError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "not-supported", format!("{what}: send application/fhir+json")))
}

/// Reads `Prefer: return=...`; unknown preferences are ignored as RFC 7240 requires.
pub fn return_preference(headers: &HeaderMap) -> ReturnPreference {
    for value in headers.get_all("prefer").iter().filter_map(|v| v.to_str().ok()) {
        for token in value.split([',', ';']) {
            match token.trim().to_ascii_lowercase().as_str() {
                "return=minimal" => return ReturnPreference::Minimal,
                "return=representation" => return ReturnPreference::Representation,
                "return=operationoutcome" => return ReturnPreference::OperationOutcome,
                _ => {}
            }
        }
    }
    ReturnPreference::Representation
}

/// Reads `If-Match: W/"n"` (or `"n"`, or `n`); 400 when malformed.
pub fn if_match(headers: &HeaderMap) -> Result<Option<u64>, FhirError> {
    let Some(value) = headers.get(header::IF_MATCH) else { return Ok(None) };
    let raw = value.to_str().map_err(|_| FhirError::bad_request("malformed If-Match header"))?.trim();
    let unweak = raw.strip_prefix("W/").unwrap_or(raw);
    let bare = unweak.trim_matches('"');
    bare.parse::<u64>().map(Some).map_err(|_| FhirError::bad_request("If-Match must be a version ETag such as W/\"1\""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn accept_negotiation() {
        assert!(check_accept(&headers(&[]), None).is_ok());
        assert!(check_accept(&headers(&[("accept", "application/fhir+json")]), None).is_ok());
        assert!(check_accept(&headers(&[("accept", "application/fhir+xml, */*;q=0.1")]), None).is_ok());
        assert_eq!(check_accept(&headers(&[("accept", "application/fhir+xml")]), None).unwrap_err().status, StatusCode::NOT_ACCEPTABLE);
        assert_eq!(check_accept(&headers(&[]), Some("xml")).unwrap_err().status, StatusCode::NOT_ACCEPTABLE);
        assert!(check_accept(&headers(&[("accept", "application/fhir+xml")]), Some("json")).is_ok());
    }

    #[test]
    fn content_types() {
        assert_eq!(
            check_content_type(&headers(&[("content-type", "application/fhir+json; charset=utf-8")]), false).unwrap(),
            RequestBody::Resource
        );
        assert_eq!(check_content_type(&headers(&[("content-type", "application/json-patch+json")]), true).unwrap(), RequestBody::JsonPatch);
        assert_eq!(
            check_content_type(&headers(&[("content-type", "application/json-patch+json")]), false).unwrap_err().status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
        assert_eq!(
            check_content_type(&headers(&[("content-type", "application/fhir+xml")]), true).unwrap_err().status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
    }

    #[test]
    fn prefer_and_if_match() {
        assert_eq!(return_preference(&headers(&[("prefer", "return=minimal")])), ReturnPreference::Minimal);
        assert_eq!(
            return_preference(&headers(&[("prefer", "handling=strict, return=OperationOutcome")])),
            ReturnPreference::OperationOutcome
        );
        assert_eq!(return_preference(&headers(&[])), ReturnPreference::Representation);
        assert_eq!(if_match(&headers(&[("if-match", "W/\"3\"")])).unwrap(), Some(3));
        assert_eq!(if_match(&headers(&[("if-match", "\"4\"")])).unwrap(), Some(4));
        assert!(if_match(&headers(&[("if-match", "W/\"x\"")])).is_err());
    }
}

//! Building data-plane responses: content type, ETag, Last-Modified, Location.

use axum::body::Body;
use axum::response::Response;
use fhirlake_core::resources::StoredVersion;
use fhirlake_fhir::resource::http_date;
use http::{header, HeaderValue, StatusCode};

/// The media type of every data-plane body.
pub const FHIR_JSON: &str = "application/fhir+json;charset=utf-8";

/// A response with a FHIR JSON body.
pub fn fhir_json(status: StatusCode, body: impl Into<Body>) -> Response {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    response
}

/// The weak ETag of a version: `W/"n"`.
pub fn etag(version: u64) -> String {
    format!("W/\"{version}\"")
}

/// Adds ETag and Last-Modified for `version` (and Location when given).
pub fn with_version_headers(mut response: Response, version: &StoredVersion, location: Option<&str>) -> Response {
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag(version.version)) {
        headers.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&http_date(version.last_updated)) {
        headers.insert(header::LAST_MODIFIED, v);
    }
    if let Some(location) = location.and_then(|l| HeaderValue::from_str(l).ok()) {
        headers.insert(header::LOCATION, location.clone());
        headers.insert(header::CONTENT_LOCATION, location);
    }
    response
}

//! fhirlake's HTTP surface: one axum [`router`] serving the HealthLake control plane (`POST /`
//! with `X-Amz-Target`) and the FHIR R4 data plane (`/datastore/{id}/r4/...`). The same router
//! is hosted by `fhirlake serve` and by the Lambda functions.
//!
//! Every request is authenticated before anything else happens, except the SMART discovery
//! document (`GET /datastore/{id}/r4/.well-known/smart-configuration`), which is public;
//! failures are answered in the dialect of the plane the request addressed (AWS JSON errors or
//! OperationOutcomes).
#![warn(missing_docs)]

mod audit;
mod audit_events;
mod auth;
mod bearer;
pub mod control_plane;
pub mod fhir;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::Router;
use bytes::{Bytes, BytesMut};
use fhirlake_core::Services;
use fhirlake_ports::audit::AuditLog;
use http::{Method, StatusCode};
use http_body_util::BodyExt;

pub use audit_events::AuditEventResources;
pub use auth::{AuthFailure, Authentication, Caller, CredentialRefresh, GatewayPrincipal, RequestAuthenticator};
pub use bearer::{BearerAuthenticator, Introspection, OneIntrospector};

/// Largest request body accepted, in bytes (a Lambda response is at most 6 MB; HealthLake
/// accepts 5 MB per request).
pub const MAX_REQUEST_BYTES: usize = 5 * 1024 * 1024;

/// What every request handler shares.
pub struct AppState {
    /// The services.
    pub services: Services,
    /// Authenticates SigV4-signed (or gateway-authenticated) requests.
    pub authenticator: RequestAuthenticator,
    /// Authenticates SMART on FHIR bearer tokens on the data plane.
    pub bearer: BearerAuthenticator,
    /// Where every request's audit record goes.
    pub audit: Arc<dyn AuditLog>,
}

/// The router of both planes.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new().fallback(handle).with_state(state)
}

/// The data-plane path of the SMART discovery document.
const SMART_DISCOVERY: [&str; 2] = [".well-known", "smart-configuration"];

/// Which plane a request addresses, from its path.
enum Plane {
    Control,
    Data {
        datastore_id: String,
        segments: Vec<String>,
    },
    /// `GET /datastore/{id}/r4/.well-known/smart-configuration`: public, SMART clients read it
    /// before they hold any credential.
    SmartDiscovery {
        datastore_id: String,
    },
    Unknown,
}

fn classify(method: &Method, path: &str) -> Plane {
    if path == "/" {
        return if method == Method::POST { Plane::Control } else { Plane::Unknown };
    }
    let mut parts = path.trim_start_matches('/').split('/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("datastore"), Some(id), Some("r4")) if !id.is_empty() => {
            let segments: Option<Vec<String>> = parts
                .filter(|s| !s.is_empty())
                .map(|s| percent_encoding::percent_decode_str(s).decode_utf8().ok().map(|c| c.into_owned()))
                .collect();
            match segments {
                Some(segments) if method == Method::GET && segments.iter().map(String::as_str).eq(SMART_DISCOVERY) => {
                    Plane::SmartDiscovery { datastore_id: id.to_string() }
                }
                Some(segments) => Plane::Data { datastore_id: id.to_string(), segments },
                None => Plane::Unknown,
            }
        }
        _ => Plane::Unknown,
    }
}

async fn handle(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let plane = classify(&parts.method, parts.uri.path());
    let request_id = parts.extensions.get::<RequestId>().map_or_else(|| uuid::Uuid::new_v4().to_string(), |id| id.0.clone());
    let (body, caller, mut response) = match read_body(body).await {
        BodyRead::Complete(body) => {
            let (caller, response) = serve(&state, &plane, &parts, &body).await;
            (body, caller, response)
        }
        BodyRead::TooLarge => {
            let message = format!("the request body exceeds {MAX_REQUEST_BYTES} bytes");
            let mut response = match plane {
                Plane::Control => control_plane::aws_error(StatusCode::PAYLOAD_TOO_LARGE, "ValidationException", &message),
                _ => fhir::FhirError::new(StatusCode::PAYLOAD_TOO_LARGE, "too-costly", message).into_response(),
            };
            response.headers_mut().insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
            (Bytes::new(), None, response)
        }
        BodyRead::Failed => {
            let response = fhir::FhirError::new(StatusCode::BAD_REQUEST, "structure", "the request body could not be read").into_response();
            (Bytes::new(), None, response)
        }
    };
    if let Ok(value) = http::HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    let done = audit::Completed {
        request_id: &request_id,
        parts: &parts,
        plane: &plane,
        body: &body,
        caller: caller.as_ref(),
        status: response.status().as_u16(),
        location: response.headers().get(http::header::LOCATION).and_then(|v| v.to_str().ok()),
    };
    audit::record(state.audit.as_ref(), done).await;
    response
}

/// The response header carrying the request's id, as AWS services name it.
pub const REQUEST_ID_HEADER: &str = "x-amzn-requestid";

/// A request id the host already has (API Gateway's), as a request extension; without one the
/// router makes one up. It is returned in [`REQUEST_ID_HEADER`] and recorded in the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

/// Authenticates and answers a request whose whole body was read; returns who made it (when
/// authentication succeeded) and the response.
async fn serve(state: &AppState, plane: &Plane, parts: &http::request::Parts, body: &Bytes) -> (Option<Caller>, Response) {
    if let Plane::SmartDiscovery { datastore_id } = plane {
        let caller = Caller::full("anonymous", Authentication::None);
        return (Some(caller), fhir::smart_configuration(&state.services, datastore_id).await);
    }
    let caller = match authenticate(state, plane, parts, body).await {
        Ok(caller) => caller,
        Err(response) => return (None, response),
    };
    let response = match plane {
        Plane::Control => {
            let target = parts.headers.get("x-amz-target").and_then(|v| v.to_str().ok());
            control_plane::handle(&state.services, target, body).await
        }
        Plane::Data { datastore_id, segments } => {
            let query = parts.uri.query().map(|q| url::form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default();
            let request = fhir::FhirRequest {
                method: &parts.method,
                datastore_id,
                segments: segments.clone(),
                query,
                headers: &parts.headers,
                body: body.clone(),
                access: &caller.access,
            };
            fhir::handle(&state.services, request).await
        }
        Plane::SmartDiscovery { .. } | Plane::Unknown => {
            fhir::FhirError::new(StatusCode::NOT_FOUND, "not-found", "no such endpoint").into_response()
        }
    };
    (Some(caller), response)
}

/// Authenticates a request: a bearer token on the data plane is a SMART on FHIR token of the
/// addressed datastore; anything else goes to the [`RequestAuthenticator`]. A refusal is the
/// response to send, already recorded in the audit trail.
async fn authenticate(state: &AppState, plane: &Plane, parts: &http::request::Parts, body: &[u8]) -> Result<Caller, Response> {
    let authorization = parts.headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let bearer = authorization.filter(|a| a.get(..7).is_some_and(|scheme| scheme.eq_ignore_ascii_case("bearer ")));
    match (plane, bearer) {
        (Plane::Data { datastore_id, segments }, Some(authorization)) => {
            let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
            let has_query = parts.uri.query().is_some_and(|q| !q.is_empty());
            let operation = fhirlake_core::operation::data_operation(parts.method.as_str(), &segments, has_query).name;
            state.bearer.authenticate(&state.services, datastore_id, authorization, operation).await.map_err(|e| {
                audit::denied(parts, e.status.as_str());
                e.into_response()
            })
        }
        (Plane::Control, Some(_)) => {
            audit::denied(parts, "AccessDeniedException");
            Err(control_plane::aws_error(
                StatusCode::FORBIDDEN,
                "AccessDeniedException",
                "bearer tokens are accepted on the data plane of SMART on FHIR datastores only",
            ))
        }
        _ => match state.authenticator.authenticate(parts, body).await {
            Ok(caller) => Ok(caller),
            Err(e) => {
                audit::denied(parts, e.aws_error_type());
                let presigned = parts.uri.query().is_some_and(|q| q.contains("X-Amz-Signature="));
                Err(match plane {
                    Plane::Control => control_plane::aws_error(StatusCode::FORBIDDEN, e.aws_error_type(), &e.to_string()),
                    // A SMART client without credentials is told to bring a token (RFC 6750 §3).
                    Plane::Data { datastore_id, .. }
                        if authorization.is_none() && !presigned && state.bearer.takes_tokens(&state.services, datastore_id).await =>
                    {
                        fhir::FhirError::from(fhirlake_smart::SmartError::MissingToken).into_response()
                    }
                    _ => fhir::FhirError::new(StatusCode::FORBIDDEN, "security", e.to_string()).into_response(),
                })
            }
        },
    }
}

/// An error response in the dialect of the plane `method` and `path` address: an AWS JSON
/// error with `aws_error_type` for the control plane, else an OperationOutcome with one issue
/// of `issue_code`. For hosts that must refuse a request before the router sees it.
pub fn plane_error(
    method: &Method,
    path: &str,
    status: StatusCode,
    aws_error_type: &str,
    issue_code: &'static str,
    message: &str,
) -> Response {
    match classify(method, path) {
        Plane::Control => control_plane::aws_error(status, aws_error_type, message),
        _ => fhir::FhirError::new(status, issue_code, message).into_response(),
    }
}

/// An oversized body is still read (and discarded) up to this many bytes, so that the client,
/// which is usually still sending, receives the 413 instead of a connection reset.
const MAX_DRAINED_BYTES: usize = 64 * 1024 * 1024;

enum BodyRead {
    Complete(Bytes),
    TooLarge,
    Failed,
}

/// Reads the whole body if it is at most [`MAX_REQUEST_BYTES`].
async fn read_body(mut body: Body) -> BodyRead {
    let mut buffer = BytesMut::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { return BodyRead::Failed };
        let Ok(data) = frame.into_data() else { continue };
        seen = seen.saturating_add(data.len());
        if seen <= MAX_REQUEST_BYTES {
            buffer.extend_from_slice(&data);
        } else if seen > MAX_DRAINED_BYTES {
            return BodyRead::TooLarge;
        } else if !buffer.is_empty() {
            buffer = BytesMut::new();
        }
    }
    if seen > MAX_REQUEST_BYTES {
        BodyRead::TooLarge
    } else {
        BodyRead::Complete(buffer.freeze())
    }
}

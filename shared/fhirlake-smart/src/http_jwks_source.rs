//! [`HttpJwksSource`]: the [`JwksSource`] that fetches JWKS documents over HTTPS.
//!
//! It is a hyper 1 client (hyper-util's pooled client, hyper-rustls with the aws-lc-rs provider
//! and the machine's native root certificates, the same stack the AWS SDK uses in fhirlake).
//! Each fetch is one `GET` that must answer `200` within [`HttpJwksSource::DEFAULT_TIMEOUT`] (2 seconds,
//! connection, TLS and body included) with a body of at most [`HttpJwksSource::DEFAULT_MAX_BYTES`] (1 MiB).
//! Redirects are not followed. The URI must be `https`, except `http` to a loopback host
//! (`127.0.0.1`, `localhost`, `[::1]`), which local development and tests use; any other plain
//! `http` URI is refused with [`SmartError::Config`] before anything is sent.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::error::SmartError;
use crate::jwks::JwksSource;

/// Fetches JWKS documents with a hyper client (see the module doc).
#[derive(Clone)]
pub struct HttpJwksSource {
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    timeout: Duration,
    max_bytes: usize,
}

impl HttpJwksSource {
    /// The time a JWKS fetch may take, from connecting to the last body byte.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

    /// The largest JWKS document accepted.
    pub const DEFAULT_MAX_BYTES: usize = 1024 * 1024;

    /// A source trusting the machine's native root certificates, with the default limits.
    ///
    /// # Errors
    /// [`SmartError::Config`] when no root certificate can be loaded.
    pub fn new() -> Result<HttpJwksSource, SmartError> {
        let connector = HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .map_err(|_| SmartError::Config("no trusted root certificates for jwks fetches"))?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(HttpJwksSource::with_connector(connector))
    }

    /// A source using `tls` (for example with a private CA's roots), with the default limits.
    pub fn with_tls_config(tls: rustls::ClientConfig) -> HttpJwksSource {
        HttpJwksSource::with_connector(HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http().enable_http1().build())
    }

    /// The same source with another timeout and size cap.
    pub fn with_limits(mut self, timeout: Duration, max_bytes: usize) -> HttpJwksSource {
        self.timeout = timeout;
        self.max_bytes = max_bytes;
        self
    }

    fn with_connector(connector: HttpsConnector<HttpConnector>) -> HttpJwksSource {
        let client =
            Client::builder(TokioExecutor::new()).pool_timer(TokioTimer::new()).pool_idle_timeout(Duration::from_secs(60)).build(connector);
        HttpJwksSource { client, timeout: HttpJwksSource::DEFAULT_TIMEOUT, max_bytes: HttpJwksSource::DEFAULT_MAX_BYTES }
    }

    async fn get(&self, uri: http::Uri) -> Result<String, SmartError> {
        let request = http::Request::get(uri)
            .header(http::header::ACCEPT, "application/jwk-set+json, application/json")
            .header(http::header::USER_AGENT, concat!("fhirlake-smart/", env!("CARGO_PKG_VERSION")))
            .body(Empty::<Bytes>::new())
            .map_err(|_| SmartError::Config("jwks uri is not a valid request target"))?;
        let response = self.client.request(request).await.map_err(|e| {
            tracing::warn!(error = %e, "jwks request failed");
            SmartError::KeysUnavailable("jwks endpoint unreachable")
        })?;
        if response.status() != http::StatusCode::OK {
            tracing::warn!(status = %response.status(), "jwks endpoint answered with an error status");
            return Err(SmartError::KeysUnavailable("jwks endpoint answered with an error status"));
        }
        let declared = response.headers().get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|len| len > self.max_bytes as u64) {
            return Err(SmartError::KeysUnavailable("jwks document too large"));
        }
        let body = Limited::new(response.into_body(), self.max_bytes).collect().await.map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                SmartError::KeysUnavailable("jwks document too large")
            } else {
                SmartError::KeysUnavailable("jwks response body could not be read")
            }
        })?;
        String::from_utf8(body.to_bytes().to_vec()).map_err(|_| SmartError::KeysUnavailable("jwks document is not utf-8"))
    }
}

impl std::fmt::Debug for HttpJwksSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpJwksSource").field("timeout", &self.timeout).field("max_bytes", &self.max_bytes).finish_non_exhaustive()
    }
}

#[async_trait]
impl JwksSource for HttpJwksSource {
    async fn fetch(&self, jwks_uri: &str) -> Result<String, SmartError> {
        let uri = checked_uri(jwks_uri)?;
        match tokio::time::timeout(self.timeout, self.get(uri)).await {
            Ok(result) => result,
            Err(_) => {
                tracing::warn!(jwks_uri, "jwks fetch timed out");
                Err(SmartError::KeysUnavailable("jwks fetch timed out"))
            }
        }
    }
}

/// `jwks_uri` as a URI, if it is https or plain http to a loopback host.
fn checked_uri(jwks_uri: &str) -> Result<http::Uri, SmartError> {
    let uri: http::Uri = jwks_uri.parse().map_err(|_| SmartError::Config("jwks uri is not a valid uri"))?;
    let authority = uri.authority().ok_or(SmartError::Config("jwks uri is not absolute"))?;
    if authority.as_str().contains('@') {
        return Err(SmartError::Config("jwks uri must not carry credentials"));
    }
    match uri.scheme_str() {
        Some("https") => Ok(uri),
        Some("http") if matches!(authority.host(), "127.0.0.1" | "localhost" | "[::1]") => Ok(uri),
        _ => Err(SmartError::Config("jwks uri must use https")),
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A source that needs no root store: the tests only talk plain http to loopback.
    fn source() -> HttpJwksSource {
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        HttpJwksSource::with_tls_config(tls)
    }

    /// Serves `response` (raw HTTP) to each of `connections` connections on 127.0.0.1, and
    /// returns the base URL and the requests it read.
    async fn serve(response: Vec<u8>, connections: usize) -> (String, tokio::task::JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let server = tokio::spawn(async move {
            let mut requests = Vec::new();
            for _ in 0..connections {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = socket.read(&mut buf).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    request.extend_from_slice(&buf[..n]);
                }
                requests.push(String::from_utf8_lossy(&request).into_owned());
                if response.is_empty() {
                    // Hold the connection open without answering.
                    tokio::time::sleep(Duration::from_secs(5)).await;
                } else {
                    let _ = socket.write_all(&response).await;
                    let _ = socket.shutdown().await;
                }
            }
            requests
        });
        (base, server)
    }

    fn http_response(status: &str, body: &[u8]) -> Vec<u8> {
        let mut r =
            format!("HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", body.len())
                .into_bytes();
        r.extend_from_slice(body);
        r
    }

    #[tokio::test]
    async fn fetches_a_jwks_from_a_loopback_server() {
        let body = br#"{"keys":[{"kty":"EC","crv":"P-256","x":"a","y":"b"}]}"#;
        let (base, server) = serve(http_response("200 OK", body), 1).await;
        let document = source().fetch(&format!("{base}/.well-known/jwks.json")).await.unwrap();
        assert_eq!(document.as_bytes(), body);
        let requests = server.await.unwrap();
        assert!(requests[0].starts_with("GET /.well-known/jwks.json HTTP/1.1\r\n"), "{}", requests[0]);
        assert!(requests[0].to_lowercase().contains("accept: application/jwk-set+json"));
    }

    #[tokio::test]
    async fn error_status_is_unavailable() {
        let (base, _server) = serve(http_response("500 Internal Server Error", b"{}"), 1).await;
        let e = source().fetch(&format!("{base}/jwks")).await.unwrap_err();
        assert_eq!(e, SmartError::KeysUnavailable("jwks endpoint answered with an error status"));
        assert_eq!(e.http_status(), 503);
    }

    #[tokio::test]
    async fn oversize_document_is_refused() {
        let body = vec![b' '; 4096];
        let (base, _server) = serve(http_response("200 OK", &body), 1).await;
        let e = source().with_limits(HttpJwksSource::DEFAULT_TIMEOUT, 1024).fetch(&format!("{base}/jwks")).await.unwrap_err();
        assert_eq!(e, SmartError::KeysUnavailable("jwks document too large"));

        // Without a content-length the cap applies while reading.
        let mut response = b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n".to_vec();
        response.extend_from_slice(&body);
        let (base, _server) = serve(response, 1).await;
        let e = source().with_limits(HttpJwksSource::DEFAULT_TIMEOUT, 1024).fetch(&format!("{base}/jwks")).await.unwrap_err();
        assert_eq!(e, SmartError::KeysUnavailable("jwks document too large"));
    }

    #[tokio::test]
    async fn slow_server_times_out() {
        let (base, _server) = serve(Vec::new(), 1).await;
        let started = std::time::Instant::now();
        let e = source()
            .with_limits(Duration::from_millis(200), HttpJwksSource::DEFAULT_MAX_BYTES)
            .fetch(&format!("{base}/jwks"))
            .await
            .unwrap_err();
        assert_eq!(e, SmartError::KeysUnavailable("jwks fetch timed out"));
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn closed_port_is_unavailable() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let e = source().fetch(&format!("http://127.0.0.1:{port}/jwks")).await.unwrap_err();
        assert_eq!(e, SmartError::KeysUnavailable("jwks endpoint unreachable"));
    }

    #[tokio::test]
    async fn plain_http_to_other_hosts_is_refused_before_connecting() {
        for uri in [
            "http://issuer.example/jwks",
            "http://10.0.0.1/jwks",
            "http://127.0.0.1.example.com/jwks",
            "http://localhost@issuer.example/jwks",
            "ftp://issuer.example/jwks",
            "/relative/jwks",
            "not a uri",
        ] {
            let e = source().fetch(uri).await.unwrap_err();
            assert!(matches!(e, SmartError::Config(_)), "{uri}: {e:?}");
        }
        assert!(checked_uri("https://issuer.example/jwks").is_ok());
        assert!(checked_uri("http://localhost:8080/jwks").is_ok());
        assert!(checked_uri("http://[::1]:8080/jwks").is_ok());
        assert!(checked_uri("https://user:pw@issuer.example/jwks").is_err());
    }
}

//! Request authentication for fhirlake.
//!
//! Today this is AWS Signature Version 4 (the `AWS_AUTH` mode of HealthLake): a pure,
//! framework-free [`Verifier`] that checks a request signed for service `healthlake` by the AWS
//! CLI, boto3, botocore's `SigV4Auth` or any AWS SDK, and a matching [`Signer`] for fhirlake's
//! own clients, tests and benchmarks. Both share one canonicalisation ([`canonical`]), which
//! follows botocore byte for byte; the test vectors in `tests/vectors.json` are produced by
//! botocore itself (`tests/tools/make_sigv4_vectors.py`). [`Verifier::precheck`] runs the checks
//! that need no body, for API Gateway's Lambda authorizer.
//!
//! ```
//! use chrono::{TimeZone, Utc};
//! use fhirlake_auth::{Credentials, HttpRequest, Payload, Signer, StaticCredentials, Verifier};
//!
//! let creds = Credentials::new("AKIDEXAMPLE", "secret");
//! let now = Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap();
//! let mut headers = vec![("host".to_string(), "localhost:8080".to_string())];
//! let request = HttpRequest::new("GET", "/datastore/abc/r4/Patient/1", "", &headers, Payload::Bytes(b""));
//! let signed = Signer::new("us-east-1").sign(&creds, &request, now).unwrap();
//! headers.extend(signed.headers());
//!
//! let store = StaticCredentials::new("AKIDEXAMPLE", "secret");
//! let request = HttpRequest::new("GET", "/datastore/abc/r4/Patient/1", "", &headers, Payload::Bytes(b""));
//! let principal = Verifier::new("us-east-1").verify(&request, now, &store).unwrap();
//! assert_eq!(principal.access_key_id, "AKIDEXAMPLE");
//! ```
#![warn(missing_docs)]

mod credentials;
mod error;
mod request;
pub mod sigv4;

pub use credentials::{CredentialStore, Credentials, Secret, StaticCredentials};
pub use error::AuthError;
pub use request::{HttpRequest, Payload};
pub use sigv4::canonical;
pub use sigv4::precheck::Prechecked;
pub use sigv4::signer::{SignedHeaders, Signer};
pub use sigv4::verifier::{Principal, Verifier};
pub use sigv4::{ALGORITHM, DEFAULT_MAX_SKEW_SECONDS, SERVICE};

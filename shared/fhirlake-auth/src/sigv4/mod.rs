//! AWS Signature Version 4: canonicalisation, verification and signing.

pub mod canonical;
mod parse;
pub mod precheck;
pub mod signer;
mod signing_key;
mod timestamp;
pub mod verifier;

/// The only SigV4 algorithm fhirlake accepts.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// The service name HealthLake clients sign for.
pub const SERVICE: &str = "healthlake";
/// How far a signing time may be from the server's clock, as AWS allows: 15 minutes.
pub const DEFAULT_MAX_SKEW_SECONDS: i64 = 15 * 60;

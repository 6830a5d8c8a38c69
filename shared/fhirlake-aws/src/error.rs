//! Normalisation of SDK errors to port errors: only an error code and a short reason cross the
//! port, never an SDK type or a request's contents.

use std::time::Duration;

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use fhirlake_ports::{StorageError, StorageErrorKind};

/// Error codes AWS services use to ask the caller to slow down.
const THROTTLING_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "SlowDown",
    "LimitExceededException",
];

/// True when `code` is a throttling error code.
fn is_throttling_code(code: &str) -> bool {
    THROTTLING_CODES.contains(&code)
}

/// The port error kind for a service error code, where the code alone decides it.
fn kind_for_code(code: &str) -> StorageErrorKind {
    match code {
        _ if is_throttling_code(code) => StorageErrorKind::Throttled,
        "ConditionalCheckFailedException" => StorageErrorKind::ConditionFailed,
        "ValidationException" | "InvalidArgument" | "InvalidRequest" | "SerializationException" => StorageErrorKind::Invalid,
        "NoSuchKey" | "NotFound" => StorageErrorKind::NotFound,
        "ItemCollectionSizeLimitExceededException" | "EntityTooLarge" | "RequestEntityTooLarge" => StorageErrorKind::TooLarge,
        _ => StorageErrorKind::Internal,
    }
}

/// The service error code of `error`, when the service answered with one.
pub(crate) fn service_code<E: ProvideErrorMetadata, R>(error: &SdkError<E, R>) -> Option<&str> {
    match error {
        SdkError::ServiceError(service) => service.err().code(),
        _ => None,
    }
}

/// Normalises an SDK error of `operation` to a port error.
pub(crate) fn sdk_error<E, R>(operation: &str, error: &SdkError<E, R>) -> StorageError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match error {
        SdkError::ServiceError(_) => {
            let code = service_code(error).unwrap_or("unknown error");
            StorageError::new(kind_for_code(code), format!("{operation} failed: {code}"))
        }
        SdkError::TimeoutError(_) => StorageError::internal(format!("{operation} timed out")),
        other => StorageError::internal(format!("{operation} failed: {}", DisplayErrorContext(other))),
    }
}

/// Exponential backoff with jitter for retries the SDK does not do itself (unprocessed batch
/// keys, transactions cancelled by conflicts or throttling).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Backoff {
    attempt: u32,
    max_attempts: u32,
}

impl Backoff {
    /// At most `max_attempts` waits.
    pub(crate) fn new(max_attempts: u32) -> Self {
        Backoff { attempt: 0, max_attempts }
    }

    /// Sleeps before the next retry; `false` when the retries are exhausted.
    pub(crate) async fn wait(&mut self) -> bool {
        if self.attempt >= self.max_attempts {
            return false;
        }
        let base = Duration::from_millis(25u64 << self.attempt.min(8)).min(Duration::from_secs(5));
        let jitter = jitter_millis(base.as_millis() as u64 / 2 + 1);
        self.attempt += 1;
        tokio::time::sleep(base / 2 + Duration::from_millis(jitter)).await;
        true
    }
}

/// A pseudo-random number below `bound` from the clock's sub-second nanos (jitter only).
fn jitter_millis(bound: u64) -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    u64::from(nanos) % bound.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_map_to_port_kinds() {
        assert_eq!(kind_for_code("ProvisionedThroughputExceededException"), StorageErrorKind::Throttled);
        assert_eq!(kind_for_code("SlowDown"), StorageErrorKind::Throttled);
        assert_eq!(kind_for_code("ConditionalCheckFailedException"), StorageErrorKind::ConditionFailed);
        assert_eq!(kind_for_code("ValidationException"), StorageErrorKind::Invalid);
        assert_eq!(kind_for_code("NoSuchKey"), StorageErrorKind::NotFound);
        assert_eq!(kind_for_code("InternalServerError"), StorageErrorKind::Internal);
    }

    #[tokio::test]
    async fn backoff_gives_up_after_its_attempts() {
        let mut backoff = Backoff::new(2);
        assert!(backoff.wait().await);
        assert!(backoff.wait().await);
        assert!(!backoff.wait().await);
    }
}

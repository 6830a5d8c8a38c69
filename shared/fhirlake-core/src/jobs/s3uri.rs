//! `s3://bucket/key` locations, as jobs name their input and output.

use std::sync::LazyLock;

use regex::Regex;

use crate::{CoreError, CoreResult};

static S3_URI: LazyLock<Regex> = LazyLock::new(|| {
    // HealthLake's pattern, anchored; a literal checked by the tests below.
    Regex::new(r"^s3://(?P<bucket>[a-z0-9][\.\-a-z0-9]{1,61}[a-z0-9])(?P<key>/.*)?$").unwrap_or_else(|e| panic!("S3 URI pattern: {e}"))
});

/// A bucket and a key (or key prefix) in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    /// The bucket.
    pub bucket: String,
    /// The key or prefix, without a leading `/` (may be empty: the whole bucket).
    pub key: String,
}

impl S3Location {
    /// Parses `s3://bucket[/key]`. Errors: `Invalid` naming `member`.
    pub fn parse(member: &str, uri: &str) -> CoreResult<Self> {
        if uri.len() > 1024 {
            return Err(CoreError::Invalid(format!("{member} must be at most 1024 characters long")));
        }
        let captures = S3_URI.captures(uri).ok_or_else(|| CoreError::Invalid(format!("{member} must be an s3://bucket/prefix URI")))?;
        let bucket = captures.name("bucket").map(|m| m.as_str().to_string()).unwrap_or_default();
        let key = captures.name("key").map(|m| m.as_str().trim_start_matches('/').to_string()).unwrap_or_default();
        if key.split('/').any(|s| s == "." || s == "..") {
            return Err(CoreError::Invalid(format!("{member} must not contain . or .. segments")));
        }
        Ok(S3Location { bucket, key })
    }

    /// The URI of `key` in the same bucket.
    pub fn uri_of(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }

    /// This location as a folder: the key with a trailing `/` (empty for the bucket root).
    pub fn folder(&self) -> String {
        if self.key.is_empty() || self.key.ends_with('/') {
            self.key.clone()
        } else {
            format!("{}/", self.key)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_buckets_and_prefixes() {
        let loc = S3Location::parse("S3Uri", "s3://my-bucket/in/put/").expect("valid");
        assert_eq!(loc, S3Location { bucket: "my-bucket".into(), key: "in/put/".into() });
        assert_eq!(loc.folder(), "in/put/");
        assert_eq!(S3Location::parse("S3Uri", "s3://my-bucket").expect("valid").key, "");
        assert_eq!(S3Location::parse("S3Uri", "s3://my-bucket/a.ndjson").expect("valid").folder(), "a.ndjson/");
        assert_eq!(loc.uri_of("x/y"), "s3://my-bucket/x/y");
        for bad in ["http://b/x", "s3://B/x", "s3://a/x", "s3:/bucket/x", "s3://bucket/../x", "s3://-bucket/x"] {
            assert!(S3Location::parse("S3Uri", bad).is_err(), "{bad}");
        }
    }
}

//! Where projection files live in the object store.
//!
//! ```text
//! projections/{datastore_id}/{ResourceType}/date={YYYY-MM-DD}/{batch_id}.parquet
//! ```
//!
//! - `date` is the UTC date of the versions' `meta.lastUpdated`, as a Hive-style partition
//!   (`date=2024-05-01`), so Athena or Glue can prune by day.
//! - `batch_id` is `{sequence number, zero-padded to 40 digits}-{16 hex digits}`: the DynamoDB
//!   Streams sequence number of the first stream record whose version the file holds, and the
//!   start of the SHA-256 of that record's `eventID` (sequence numbers are ordered within a shard;
//!   the event id keeps files of different shards apart). A retried batch therefore writes the
//!   same keys again and replaces its own files: see [`Projector`](crate::Projector) for why
//!   no row is ever written twice.
//!
//! Keys sort by datastore, type, day, then stream order.

use chrono::NaiveDate;
use sha2::{Digest, Sha256};

/// The prefix of every projection file.
pub const PROJECTIONS_PREFIX: &str = "projections/";

/// The longest DynamoDB Streams sequence number (40 digits).
pub const MAX_SEQUENCE_DIGITS: usize = 40;

/// The key of one projection file.
pub fn projection_key(datastore_id: &str, resource_type: &str, date: NaiveDate, batch_id: &str) -> String {
    format!("{PROJECTIONS_PREFIX}{datastore_id}/{resource_type}/date={}/{batch_id}.parquet", date.format("%Y-%m-%d"))
}

/// The prefix of one datastore's projection files of one type.
pub fn type_prefix(datastore_id: &str, resource_type: &str) -> String {
    format!("{PROJECTIONS_PREFIX}{datastore_id}/{resource_type}/")
}

/// The batch id of a file whose first record has `sequence_number` and `event_id`; `None`
/// when the sequence number is not 1 to 40 decimal digits.
pub fn batch_id(sequence_number: &str, event_id: &str) -> Option<String> {
    if !is_sequence_number(sequence_number) {
        return None;
    }
    let digest = Sha256::digest(event_id.as_bytes());
    Some(format!("{sequence_number:0>width$}-{}", hex::encode(&digest[..8]), width = MAX_SEQUENCE_DIGITS))
}

/// Whether `s` has the shape of a DynamoDB Streams sequence number: 1 to 40 decimal digits.
pub fn is_sequence_number(s: &str) -> bool {
    (1..=MAX_SEQUENCE_DIGITS).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_hive_partitioned_by_day() {
        let date = NaiveDate::from_ymd_opt(2024, 5, 1).expect("a date");
        let key = projection_key("7ad17b6c9d48056865a8800b86cc2797", "Patient", date, "b1");
        assert_eq!(key, "projections/7ad17b6c9d48056865a8800b86cc2797/Patient/date=2024-05-01/b1.parquet");
        assert!(key.starts_with(&type_prefix("7ad17b6c9d48056865a8800b86cc2797", "Patient")));
    }

    #[test]
    fn batch_ids_are_stable_padded_and_sort_in_stream_order() {
        let a = batch_id("4000000000000000000012", "e1").expect("an id");
        assert_eq!(a, batch_id("4000000000000000000012", "e1").expect("an id"));
        assert_eq!(a.len(), 40 + 1 + 16);
        assert!(a.starts_with(&format!("{}4000000000000000000012-", "0".repeat(18))));
        assert_ne!(a, batch_id("4000000000000000000012", "e2").expect("an id"));
        assert!(batch_id("999", "e") < batch_id("1000", "e"));
        assert_eq!(batch_id("12a", "e"), None);
        assert_eq!(batch_id("", "e"), None);
        assert_eq!(batch_id(&"1".repeat(41), "e"), None);
        assert_eq!(batch_id("../1", "e"), None);
    }
}

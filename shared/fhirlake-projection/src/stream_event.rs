//! The DynamoDB Streams Lambda event, as `aws_lambda_events` decodes it, turned into the
//! records the projector acts on.
//!
//! Only `INSERT` and `MODIFY` records of resource version items (`r#…` / `v#…`) carry work;
//! everything else the table holds (history entries, control-plane records, client tokens) and
//! every `REMOVE` is ignored: versions are immutable, a FHIR delete is itself a new version,
//! and the projection is append-only.

use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use fhirlake_core::layout;
use fhirlake_ports::{AttrValue, Attrs, Item, Key};
use serde_dynamo::AttributeValue;

use crate::object_layout::is_sequence_number;

/// One stream record, classified.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeRecord {
    /// The record's sequence number, when it has a valid one (the `itemIdentifier` of a batch
    /// item failure).
    pub sequence_number: Option<String>,
    /// The record's `eventID`.
    pub event_id: String,
    /// What the record means for the projection.
    pub change: Change,
}

/// What a stream record means for the projection.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A resource version item was written: its new image.
    Version(Item),
    /// Nothing to project.
    Ignored(IgnoreReason),
    /// The record cannot be used (a misconfigured stream or a foreign table).
    Malformed(MalformedReason),
}

/// Why a record carries nothing to project. These are expected and not logged one by one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IgnoreReason {
    /// The item is not a resource version (history entry, control-plane item).
    NotAVersion,
    /// An item was removed.
    Removed,
    /// A version staged by a transaction larger than one `TransactWriteItems`: undecided. If it
    /// commits, the rewrite without its `tx` tag arrives later as a MODIFY and is projected then
    /// (see `fhirlake_core::commit_record`).
    Staged,
}

/// Why a record is unusable. Each is counted and logged (keys only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MalformedReason {
    /// No valid sequence number.
    SequenceNumber,
    /// No string `pk`/`sk` keys.
    Keys,
    /// An event name other than INSERT, MODIFY and REMOVE.
    EventName,
    /// A version item without a new image: the stream does not carry NEW_IMAGE or NEW_AND_OLD_IMAGES.
    NoNewImage,
    /// An attribute of a type fhirlake never writes, or a number that is not a 64-bit integer.
    Attribute,
}

impl IgnoreReason {
    /// A short name for logs and counters.
    pub fn as_str(self) -> &'static str {
        match self {
            IgnoreReason::NotAVersion => "not_a_version",
            IgnoreReason::Removed => "removed",
            IgnoreReason::Staged => "staged_by_transaction",
        }
    }
}

impl MalformedReason {
    /// A short name for logs and counters.
    pub fn as_str(self) -> &'static str {
        match self {
            MalformedReason::SequenceNumber => "bad_sequence_number",
            MalformedReason::Keys => "bad_keys",
            MalformedReason::EventName => "bad_event_name",
            MalformedReason::NoNewImage => "no_new_image",
            MalformedReason::Attribute => "bad_attribute",
        }
    }
}

/// The records of `event`, in stream order.
pub fn change_records(event: &Event) -> Vec<ChangeRecord> {
    event.records.iter().map(change_record).collect()
}

fn change_record(record: &EventRecord) -> ChangeRecord {
    let sequence_number = record.change.sequence_number.clone().filter(|s| is_sequence_number(s));
    let change = if sequence_number.is_none() { Change::Malformed(MalformedReason::SequenceNumber) } else { classify(record) };
    ChangeRecord { sequence_number, event_id: record.event_id.clone(), change }
}

fn classify(record: &EventRecord) -> Change {
    let stream = &record.change;
    let keys = if stream.keys.is_empty() { &stream.new_image } else { &stream.keys };
    let (Some(pk), Some(sk)) = (string_attr(keys, "pk"), string_attr(keys, "sk")) else {
        return Change::Malformed(MalformedReason::Keys);
    };
    match record.event_name.as_str() {
        "REMOVE" => return Change::Ignored(IgnoreReason::Removed),
        "INSERT" | "MODIFY" => {}
        _ => return Change::Malformed(MalformedReason::EventName),
    }
    let key = Key::new(pk, sk);
    if layout::parse_version_key(&key).is_none() {
        return Change::Ignored(IgnoreReason::NotAVersion);
    }
    if stream.new_image.is_empty() {
        return Change::Malformed(MalformedReason::NoNewImage);
    }
    match item_of_image(key, &stream.new_image) {
        Some(item) if item.get(layout::TRANSACTION_ATTR).is_some() => Change::Ignored(IgnoreReason::Staged),
        Some(item) => Change::Version(item),
        None => Change::Malformed(MalformedReason::Attribute),
    }
}

fn string_attr<'a>(image: &'a serde_dynamo::Item, name: &str) -> Option<&'a str> {
    match image.get(name) {
        Some(AttributeValue::S(s)) => Some(s),
        _ => None,
    }
}

/// The port item of a stream image (`pk`/`sk` taken from `key`); `None` when an attribute has
/// a type fhirlake never writes.
fn item_of_image(key: Key, image: &serde_dynamo::Item) -> Option<Item> {
    let mut attrs = Attrs::new();
    for (name, value) in image.iter() {
        if name == "pk" || name == "sk" {
            continue;
        }
        let value = match value {
            AttributeValue::S(s) => AttrValue::S(s.clone()),
            AttributeValue::N(n) => AttrValue::N(n.parse().ok()?),
            AttributeValue::B(b) => AttrValue::B(b.clone()),
            AttributeValue::Bool(b) => AttrValue::Bool(*b),
            _ => return None,
        };
        attrs.insert(name.clone(), value);
    }
    Some(Item { key, attrs })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event(records: serde_json::Value) -> Event {
        serde_json::from_value(json!({ "Records": records })).expect("an event")
    }

    fn record(name: &str, seq: &str, keys: serde_json::Value, new_image: Option<serde_json::Value>) -> serde_json::Value {
        let mut dynamodb = json!({"ApproximateCreationDateTime": 1714564800, "Keys": keys, "SequenceNumber": seq, "SizeBytes": 100, "StreamViewType": "NEW_AND_OLD_IMAGES"});
        if let Some(image) = new_image {
            dynamodb["NewImage"] = image;
        }
        json!({"eventID": format!("id-{seq}"), "eventName": name, "eventVersion": "1.1", "eventSource": "aws:dynamodb", "awsRegion": "us-east-1", "dynamodb": dynamodb})
    }

    fn keys(pk: &str, sk: &str) -> serde_json::Value {
        json!({"pk": {"S": pk}, "sk": {"S": sk}})
    }

    #[test]
    fn version_items_become_port_items_and_the_rest_is_ignored() {
        let pk = "r#7ad17b6c9d48056865a8800b86cc2797#Patient#p1";
        let image = json!({"pk": {"S": pk}, "sk": {"S": "v#000000000001"}, "ts": {"N": "1714564800000000"}, "op": {"S": "create"}, "body": {"B": "AQID"}});
        let records = change_records(&event(json!([
            record("INSERT", "100", keys(pk, "v#000000000001"), Some(image)),
            record(
                "INSERT",
                "101",
                keys("ht#7ad17b6c9d48056865a8800b86cc2797#Patient#2", "01714564800000000#Patient#p1#000000000001"),
                None
            ),
            record("MODIFY", "102", keys("CP#datastores", "DS#7ad17b6c9d48056865a8800b86cc2797"), None),
            record("REMOVE", "103", keys(pk, "v#000000000001"), None),
        ])));
        let Change::Version(item) = &records[0].change else { panic!("{:?}", records[0]) };
        assert_eq!(item.key, Key::new(pk, "v#000000000001"));
        assert_eq!(item.get_i64("ts"), Some(1_714_564_800_000_000));
        assert_eq!(item.get_str("op"), Some("create"));
        assert_eq!(item.get_bytes("body"), Some(&[1u8, 2, 3][..]));
        assert_eq!(item.get("pk"), None);
        assert_eq!(records[0].sequence_number.as_deref(), Some("100"));
        assert_eq!(records[0].event_id, "id-100");
        assert_eq!(records[1].change, Change::Ignored(IgnoreReason::NotAVersion));
        assert_eq!(records[2].change, Change::Ignored(IgnoreReason::NotAVersion));
        assert_eq!(records[3].change, Change::Ignored(IgnoreReason::Removed));
    }

    #[test]
    fn versions_staged_by_a_large_transaction_wait_for_their_settled_rewrite() {
        let pk = "r#7ad17b6c9d48056865a8800b86cc2797#Patient#p1";
        let settled = json!({"pk": {"S": pk}, "sk": {"S": "v#000000000001"}, "ts": {"N": "1714564800000000"}, "op": {"S": "create"}, "body": {"B": "AQID"}});
        let mut staged = settled.clone();
        staged["tx"] = json!({"S": "0123456789abcdef0123456789abcdef"});
        let records = change_records(&event(json!([
            record("INSERT", "100", keys(pk, "v#000000000001"), Some(staged)),
            record("MODIFY", "101", keys(pk, "v#000000000001"), Some(settled)),
        ])));
        assert_eq!(records[0].change, Change::Ignored(IgnoreReason::Staged));
        assert!(matches!(&records[1].change, Change::Version(item) if item.get("tx").is_none()));
    }

    #[test]
    fn unusable_records_are_malformed() {
        let pk = "r#7ad17b6c9d48056865a8800b86cc2797#Patient#p1";
        let records = change_records(&event(json!([
            record("INSERT", "12x", keys(pk, "v#000000000001"), None),
            record("INSERT", "2", json!({"pk": {"N": "1"}, "sk": {"S": "v#1"}}), None),
            record("UPSERT", "3", keys(pk, "v#000000000001"), None),
            record("INSERT", "4", keys(pk, "v#000000000001"), None),
            record(
                "INSERT",
                "5",
                keys(pk, "v#000000000001"),
                Some(json!({"pk": {"S": pk}, "sk": {"S": "v#000000000001"}, "ts": {"N": "1.5"}}))
            ),
            record(
                "INSERT",
                "6",
                keys(pk, "v#000000000001"),
                Some(json!({"pk": {"S": pk}, "sk": {"S": "v#000000000001"}, "x": {"SS": ["a"]}}))
            ),
        ])));
        let reasons: Vec<Change> = records.into_iter().map(|r| r.change).collect();
        assert_eq!(
            reasons,
            [
                Change::Malformed(MalformedReason::SequenceNumber),
                Change::Malformed(MalformedReason::Keys),
                Change::Malformed(MalformedReason::EventName),
                Change::Malformed(MalformedReason::NoNewImage),
                Change::Malformed(MalformedReason::Attribute),
                Change::Malformed(MalformedReason::Attribute),
            ]
        );
    }
}

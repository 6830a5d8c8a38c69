//! Every key pattern fhirlake writes to the item table and the object store, in one place.
//! docs/storage-layout.md tabulates them with worked examples.
//!
//! | item                | pk                               | sk                                   |
//! |---------------------|----------------------------------|--------------------------------------|
//! | resource version    | `r#{ds}#{type}#{id}`             | `v#{version:012}`                    |
//! | type history entry  | `ht#{ds}#{type}#{shard}`         | `{micros:017}#{type}#{id}#{version:012}` |
//! | system history entry| `hs#{ds}#{shard}`                | same as type history                 |
//! | type listing entry  | `l#{ds}#{type}`                  | `{id}#{token}`                        |
//! | equality index entry| `x#{ds}#{type}#{param}#{blinded term}` | `{id}#{token}`                  |
//! | ordered index entry | `o#{ds}#{type}#{param}#{l|h}[{d|y|w}][#{blinded unit}]` | `{order key}#{id}#{token}` |
//! | compartment entry   | `c#{ds}#{compartment}#{owner id}` | `{type}#{id}#{token}`               |
//! | type presence       | `p#{ds}`                         | `{type}`                              |
//! | commit record       | `t#{ds}`                         | `{txid}`; its version list `{txid}#{chunk:04}` |
//!
//! History and index entries are written before the version item they belong to and carry its
//! write token (`token`, also stored in the version item as `wt`): an entry counts only while
//! its version exists with that token and is the latest (see `docs/search.md`).
//!
//! The latest version of a resource is the last `v#` item of its partition, so a read is one
//! single-item query, and writing version n+1 with the condition "does not exist" is the
//! optimistic-concurrency check: two writers can never both create the same version.
//! History partitions are sharded by a hash of the resource id so that one busy resource type
//! never concentrates its writes on a single DynamoDB partition.

use std::hash::{Hash, Hasher};

use fhirlake_fhir::search::terms::{Side, Span};
use fhirlake_ports::Key;

/// Number of shards of each history partition. Changing it re-partitions history.
pub const HISTORY_SHARDS: u32 = 4;

/// Encrypted bodies larger than this go to the object store, leaving a pointer in the item
/// (DynamoDB items are limited to 400 KB including names and other attributes).
pub const INLINE_BODY_LIMIT: usize = 350 * 1024;

/// Partition-key prefix shared by all resource-version partitions.
pub const RESOURCE_PREFIX: &str = "r#";

/// Partition of one resource's versions.
pub fn resource_pk(ds: &str, resource_type: &str, id: &str) -> String {
    joined(&["r", ds, resource_type, id])
}

/// Splits a resource partition key into (datastore id, resource type, logical id); `None` for
/// any other key (history shards, control-plane partitions).
pub fn parse_resource_pk(pk: &str) -> Option<(&str, &str, &str)> {
    let mut parts = pk.strip_prefix(RESOURCE_PREFIX)?.splitn(3, '#');
    let ds = parts.next().filter(|s| !s.is_empty())?;
    let resource_type = parts.next().filter(|s| !s.is_empty())?;
    let id = parts.next().filter(|s| !s.is_empty() && !s.contains('#'))?;
    Some((ds, resource_type, id))
}

/// The parts of a resource version item's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionKey<'a> {
    /// The datastore id.
    pub datastore_id: &'a str,
    /// The resource type.
    pub resource_type: &'a str,
    /// The logical id.
    pub id: &'a str,
    /// The version number.
    pub version: u64,
}

/// Recognises the key of a resource version item (`r#{ds}#{type}#{id}`, `v#{version:012}`);
/// `None` for every other item the table holds.
pub fn parse_version_key(key: &Key) -> Option<VersionKey<'_>> {
    let (datastore_id, resource_type, id) = parse_resource_pk(&key.pk)?;
    let version = parse_version_sk(&key.sk)?;
    Some(VersionKey { datastore_id, resource_type, id, version })
}

/// Sort-key prefix shared by all version items.
pub const VERSION_PREFIX: &str = "v#";

/// Sort key of one version.
pub fn version_sk(version: u64) -> String {
    let mut sk = String::with_capacity(VERSION_PREFIX.len() + VERSION_DIGITS);
    sk.push_str(VERSION_PREFIX);
    push_padded(&mut sk, version, VERSION_DIGITS);
    sk
}

/// Key of one version item.
pub fn version_key(ds: &str, resource_type: &str, id: &str, version: u64) -> Key {
    Key::new(resource_pk(ds, resource_type, id), version_sk(version))
}

/// Parses a version sort key.
pub fn parse_version_sk(sk: &str) -> Option<u64> {
    sk.strip_prefix(VERSION_PREFIX)?.parse().ok()
}

/// The shard of a resource id in the history partitions (stable across processes and releases).
pub fn history_shard(id: &str) -> u32 {
    // FNV-1a: fixed, dependency-free and stable, unlike std's randomly seeded hasher.
    let mut h = Fnv1a(0xcbf2_9ce4_8422_2325);
    id.hash(&mut h);
    (h.finish() % u64::from(HISTORY_SHARDS)) as u32
}

/// Partition of a type-level history shard.
pub fn type_history_pk(ds: &str, resource_type: &str, shard: u32) -> String {
    format!("ht#{ds}#{resource_type}#{shard}")
}

/// Partition of a system-level history shard.
pub fn system_history_pk(ds: &str, shard: u32) -> String {
    format!("hs#{ds}#{shard}")
}

/// Sort key of a history entry: time-ordered, then unique per write of a version.
pub fn history_sk(micros: i64, resource_type: &str, id: &str, version: u64, token: &str) -> String {
    let Ok(micros) = u64::try_from(micros) else {
        return format!("{micros:017}#{resource_type}#{id}#{version:012}#{token}");
    };
    let mut sk = String::with_capacity(MICROS_DIGITS + resource_type.len() + id.len() + VERSION_DIGITS + token.len() + 4);
    push_padded(&mut sk, micros, MICROS_DIGITS);
    for part in [resource_type, id] {
        sk.push('#');
        sk.push_str(part);
    }
    sk.push('#');
    push_padded(&mut sk, version, VERSION_DIGITS);
    sk.push('#');
    sk.push_str(token);
    sk
}

/// The lowest history sort key at or after `micros`.
pub fn history_sk_floor(micros: i64) -> String {
    format!("{:017}", micros.max(0))
}

/// The parts of a history sort key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryKey<'a> {
    /// When the version was written.
    pub micros: i64,
    /// The resource type.
    pub resource_type: &'a str,
    /// The logical id.
    pub id: &'a str,
    /// The version number.
    pub version: u64,
    /// The write token of the version.
    pub token: &'a str,
}

/// Splits a history sort key.
pub fn parse_history_sk(sk: &str) -> Option<HistoryKey<'_>> {
    let mut parts = sk.splitn(5, '#');
    let micros = parts.next()?.parse().ok()?;
    let resource_type = parts.next()?;
    let id = parts.next()?;
    let version = parts.next()?.parse().ok()?;
    let token = parts.next()?;
    Some(HistoryKey { micros, resource_type, id, version, token })
}

/// Partition listing every resource of a type (one entry per current version).
pub fn listing_pk(ds: &str, resource_type: &str) -> String {
    joined(&["l", ds, resource_type])
}

/// Partition of the entries of one blinded equality term of a parameter.
pub fn term_pk(ds: &str, resource_type: &str, param: &str, blinded: &str) -> String {
    joined(&["x", ds, resource_type, param, blinded])
}

/// Partition of a parameter's ordered entries, by side, (for dates) width class and (for
/// quantities) blinded unit.
pub fn ordered_pk(ds: &str, resource_type: &str, param: &str, side: Side, span: Option<Span>, unit: Option<&str>) -> String {
    let side = match side {
        Side::Low => 'l',
        Side::High => 'h',
    };
    let unit_len = unit.map_or(0, |u| 1 + u.len());
    let mut pk = joined_with_capacity(&["o", ds, resource_type, param], 2 + unit_len);
    pk.push('#');
    pk.push(side);
    if let Some(span) = span {
        pk.push(span.code());
    }
    if let Some(unit) = unit {
        pk.push('#');
        pk.push_str(unit);
    }
    pk
}

/// Partition naming every resource type a datastore has held: one item per type, sort key the type.
pub fn type_presence_pk(ds: &str) -> String {
    format!("p#{ds}")
}

/// The item recording that a datastore has held resources of a type.
pub fn type_presence_key(ds: &str, resource_type: &str) -> Key {
    Key::new(type_presence_pk(ds), resource_type)
}

/// Partition listing the members of one compartment (`Patient`, `p1`).
pub fn compartment_pk(ds: &str, compartment: &str, owner: &str) -> String {
    joined(&["c", ds, compartment, owner])
}

/// Sort key of a compartment entry: members sort by type, then id.
pub fn compartment_sk(resource_type: &str, id: &str, token: &str) -> String {
    joined(&[resource_type, id, token])
}

/// The resource type at the start of a compartment entry's sort key.
pub fn compartment_member_type(sk: &str) -> Option<&str> {
    sk.split_once('#').map(|(t, _)| t).filter(|t| !t.is_empty())
}

/// Sort key of a listing or equality entry.
pub fn entry_sk(id: &str, token: &str) -> String {
    joined(&[id, token])
}

/// Sort key of an ordered entry.
pub fn ordered_sk(key: &str, id: &str, token: &str) -> String {
    joined(&[key, id, token])
}

/// The (id, token) at the end of an index entry's sort key.
pub fn parse_entry_sk(sk: &str) -> Option<(&str, &str)> {
    let (rest, token) = sk.rsplit_once('#')?;
    let id = rest.rsplit_once('#').map_or(rest, |(_, id)| id);
    (!id.is_empty() && !token.is_empty()).then_some((id, token))
}

/// Attribute of a version item written by a transaction larger than one `TransactWriteItems`:
/// the id of the commit record that decides whether the version is visible (see
/// `fhirlake_core::commit_record`). Removed once the transaction is settled.
pub const TRANSACTION_ATTR: &str = "tx";

/// Partition of a datastore's commit records: only transactions in flight (or interrupted) have one.
pub fn commit_record_pk(ds: &str) -> String {
    format!("t#{ds}")
}

/// Key of a transaction's commit record.
pub fn commit_record_key(ds: &str, txid: &str) -> Key {
    Key::new(commit_record_pk(ds), txid)
}

/// Key of one chunk of a transaction's version list.
pub fn commit_versions_key(ds: &str, txid: &str, chunk: usize) -> Key {
    Key::new(commit_record_pk(ds), format!("{txid}#{chunk:04}"))
}

/// Object-store key of a body too large to inline.
pub fn body_object_key(ds: &str, resource_type: &str, id: &str, version: u64) -> String {
    format!("bodies/{ds}/{resource_type}/{id}/{version:012}")
}

/// Associated data binding a ciphertext to exactly one version of one resource.
pub fn body_aad(ds: &str, resource_type: &str, id: &str, version: u64) -> String {
    format!("{ds}/{resource_type}/{id}/{version}")
}

/// Digits of the zero-padded version numbers in keys (`v#{version:012}`).
const VERSION_DIGITS: usize = 12;
/// Digits of the zero-padded times of history sort keys (`{micros:017}`).
const MICROS_DIGITS: usize = 17;

/// `parts` joined by `#`, built without the formatting machinery (index keys are built by the
/// million during an import).
fn joined(parts: &[&str]) -> String {
    joined_with_capacity(parts, 0)
}

/// [`joined`] with room for `extra` more bytes.
fn joined_with_capacity(parts: &[&str], extra: usize) -> String {
    let len = parts.iter().map(|p| p.len()).sum::<usize>() + parts.len().saturating_sub(1);
    let mut out = String::with_capacity(len + extra);
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push('#');
        }
        out.push_str(part);
    }
    out
}

/// Appends `n` in decimal, zero-padded to at least `width` digits (as `{n:0width$}` does).
fn push_padded(out: &mut String, n: u64, width: usize) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    let mut rest = n;
    loop {
        start -= 1;
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    let len = digits.len() - start;
    out.extend(std::iter::repeat_n('0', width.saturating_sub(len)));
    out.extend(digits[start..].iter().map(|d| char::from(*d)));
}

struct Fnv1a(u64);

impl Hasher for Fnv1a {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_keys_sort_numerically() {
        assert!(version_sk(9) < version_sk(10));
        assert_eq!(parse_version_sk(&version_sk(42)), Some(42));
        assert_eq!(parse_version_sk("x#1"), None);
    }

    #[test]
    fn version_keys_are_recognised_and_nothing_else() {
        let key = version_key("7ad1", "Patient", "p-1.a", 3);
        let parsed = parse_version_key(&key).expect("a version key");
        assert_eq!(parsed, VersionKey { datastore_id: "7ad1", resource_type: "Patient", id: "p-1.a", version: 3 });
        assert_eq!(parse_version_key(&Key::new(type_history_pk("7ad1", "Patient", 0), history_sk(1, "Patient", "p", 1, "t"))), None);
        assert_eq!(parse_version_key(&Key::new("CP#datastores", "DS#7ad1")), None);
        assert_eq!(parse_version_key(&Key::new("r#7ad1#Patient", "v#000000000001")), None);
        assert_eq!(parse_version_key(&Key::new("r#7ad1#Patient#p#x", "v#000000000001")), None);
        assert_eq!(parse_version_key(&Key::new(resource_pk("7ad1", "Patient", "p"), "v#x")), None);
    }

    #[test]
    fn history_keys_round_trip_and_sort_by_time() {
        let sk = history_sk(1_700_000_000_000_000, "Patient", "a-b.c", 7, "t0k");
        let key = HistoryKey { micros: 1_700_000_000_000_000, resource_type: "Patient", id: "a-b.c", version: 7, token: "t0k" };
        assert_eq!(parse_history_sk(&sk), Some(key));
        assert!(history_sk(999, "Z", "z", 1, "t") < history_sk(1000, "A", "a", 1, "t"));
        assert!(history_sk_floor(1000) <= history_sk(1000, "A", "a", 1, "t"));
    }

    #[test]
    fn index_entry_keys_end_with_id_and_token() {
        assert_eq!(parse_entry_sk(&entry_sk("p-1.a", "00ff")), Some(("p-1.a", "00ff")));
        assert_eq!(parse_entry_sk(&ordered_sk("P5001", "p-1.a", "00ff")), Some(("p-1.a", "00ff")));
        assert_eq!(parse_entry_sk("nothing"), None);
        assert_eq!(ordered_pk("d", "Observation", "date", Side::High, Some(Span::Day), None), "o#d#Observation#date#hd");
        assert_eq!(ordered_pk("d", "Observation", "date", Side::Low, Some(Span::Wide), None), "o#d#Observation#date#lw");
        assert_eq!(ordered_pk("d", "Observation", "value-quantity", Side::Low, None, Some("u")), "o#d#Observation#value-quantity#l#u");
    }

    #[test]
    fn keys_are_spelled_exactly() {
        assert_eq!(resource_pk("ds", "Patient", "p1"), "r#ds#Patient#p1");
        assert_eq!(listing_pk("ds", "Patient"), "l#ds#Patient");
        assert_eq!(term_pk("ds", "Patient", "name", "AbC-_x"), "x#ds#Patient#name#AbC-_x");
        assert_eq!(compartment_pk("ds", "Patient", "p1"), "c#ds#Patient#p1");
        assert_eq!(compartment_sk("Observation", "o1", "00ff"), "Observation#o1#00ff");
        assert_eq!(entry_sk("p1", "00ff"), "p1#00ff");
        assert_eq!(ordered_sk("000123", "p1", "00ff"), "000123#p1#00ff");
        assert_eq!(ordered_pk("ds", "Observation", "date", Side::Low, Some(Span::Year), None), "o#ds#Observation#date#ly");
        assert_eq!(ordered_pk("ds", "Observation", "value-quantity", Side::High, None, None), "o#ds#Observation#value-quantity#h");
        assert_eq!(ordered_pk("ds", "Observation", "v", Side::Low, Some(Span::Day), Some("u")), "o#ds#Observation#v#ld#u");
        assert_eq!(ordered_pk("", "", "", Side::Low, None, Some("")), "o####l#");
        assert_eq!(entry_sk("", ""), "#");
        for n in [0, 1, 9, 10, 99, 100, 999_999_999_999, 1_000_000_000_000, 123_456_789_012_345, u64::MAX] {
            assert_eq!(version_sk(n), format!("v#{n:012}"));
            assert_eq!(history_sk(1_700_000_000_000_000, "Patient", "p1", n, "t"), format!("01700000000000000#Patient#p1#{n:012}#t"));
        }
        for micros in [i64::MIN, -1_000_000, -1, 0, 1, 12_345, 99_999_999_999_999_999, i64::MAX] {
            assert_eq!(history_sk(micros, "Patient", "p-1.a", 7, "t0k"), format!("{micros:017}#Patient#p-1.a#000000000007#t0k"));
        }
    }

    #[test]
    fn shards_are_stable_and_spread() {
        assert_eq!(history_shard("abc"), history_shard("abc"));
        let used: std::collections::HashSet<u32> = (0..100).map(|i| history_shard(&i.to_string())).collect();
        assert_eq!(used.len() as u32, HISTORY_SHARDS);
    }
}

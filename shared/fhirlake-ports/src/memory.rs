//! In-memory adapters of every port, for fast domain tests.
//!
//! They implement the same contracts as the embedded and AWS adapters (the conformance suite in
//! `testsuite` runs against them), including DynamoDB's limits, so a domain test that passes here
//! does not fail later on a limit the test never met. Nothing here is durable.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::{Bound, Range};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use aes_gcm::aead::KeyInit;
use aes_gcm::Aes256Gcm;
use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};
use rand::RngCore;
use zeroize::Zeroizing;

use crate::{
    check_part_list, check_part_number, Attrs, Clock, Condition, DataKey, IdSource, Item, ItemTable, Key, KeyService, ObjectList,
    ObjectMeta, ObjectStore, Query, QueryPage, SkRange, StorageError, StorageErrorKind, StorageResult, Upload, UploadedPart, Write,
};

use crate::key_wrap;
use crate::limits::{validate_item, validate_key, validate_query, validate_transaction, MAX_PAGE_BYTES};

type Partition = BTreeMap<String, Attrs>;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave these maps half-updated (every update is a
    // single insert or remove after all checks), so the data is still consistent.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn condition_holds(condition: &Condition, current: Option<&Attrs>) -> bool {
    match condition {
        Condition::Always => true,
        Condition::NotExists => current.is_none(),
        Condition::Exists => current.is_some(),
        Condition::Equals(name, value) => current.and_then(|attrs| attrs.get(name)) == Some(value),
    }
}

/// The tighter of two lower bounds.
fn max_lower<'a>(a: Bound<&'a str>, b: Bound<&'a str>) -> Bound<&'a str> {
    match (a, b) {
        (Bound::Unbounded, other) | (other, Bound::Unbounded) => other,
        (Bound::Included(x), Bound::Excluded(y)) | (Bound::Excluded(y), Bound::Included(x)) => {
            if y >= x {
                Bound::Excluded(y)
            } else {
                Bound::Included(x)
            }
        }
        (Bound::Included(x), Bound::Included(y)) => Bound::Included(x.max(y)),
        (Bound::Excluded(x), Bound::Excluded(y)) => Bound::Excluded(x.max(y)),
    }
}

/// The tighter of two upper bounds.
fn min_upper<'a>(a: Bound<&'a str>, b: Bound<&'a str>) -> Bound<&'a str> {
    match (a, b) {
        (Bound::Unbounded, other) | (other, Bound::Unbounded) => other,
        (Bound::Included(x), Bound::Excluded(y)) | (Bound::Excluded(y), Bound::Included(x)) => {
            if y <= x {
                Bound::Excluded(y)
            } else {
                Bound::Included(x)
            }
        }
        (Bound::Included(x), Bound::Included(y)) => Bound::Included(x.min(y)),
        (Bound::Excluded(x), Bound::Excluded(y)) => Bound::Excluded(x.min(y)),
    }
}

/// True when no string lies between the bounds (so `BTreeMap::range` must not be called).
fn is_empty_range(lower: Bound<&str>, upper: Bound<&str>) -> bool {
    match (lower, upper) {
        (Bound::Included(a), Bound::Included(b)) => a > b,
        (Bound::Included(a) | Bound::Excluded(a), Bound::Included(b) | Bound::Excluded(b)) => a >= b,
        _ => false,
    }
}

/// The sort-key bounds a query scans, before the range's own filter.
fn query_bounds(query: &Query) -> (Bound<&str>, Bound<&str>) {
    let (lower, upper) = match &query.range {
        SkRange::All => (Bound::Unbounded, Bound::Unbounded),
        SkRange::Prefix(p) => (Bound::Included(p.as_str()), Bound::Unbounded),
        SkRange::Between(lo, hi) => (Bound::Included(lo.as_str()), Bound::Included(hi.as_str())),
        SkRange::AtLeast(lo) => (Bound::Included(lo.as_str()), Bound::Unbounded),
        SkRange::AtMost(hi) => (Bound::Unbounded, Bound::Included(hi.as_str())),
    };
    match (&query.start_after, query.forward) {
        (Some(after), true) => (max_lower(lower, Bound::Excluded(after.as_str())), upper),
        (Some(before), false) => (lower, min_upper(upper, Bound::Excluded(before.as_str()))),
        (None, _) => (lower, upper),
    }
}

/// Collects one page from `entries` (already in the requested order and inside the range).
fn collect_page<'a>(pk: &str, entries: impl Iterator<Item = (&'a String, &'a Attrs)>, limit: usize) -> QueryPage {
    let mut entries = entries.peekable();
    let mut page = QueryPage::default();
    let mut bytes = 0usize;
    while let Some((sk, attrs)) = entries.next() {
        let item = Item { key: Key::new(pk, sk.as_str()), attrs: attrs.clone() };
        bytes += item.size();
        page.items.push(item);
        if page.items.len() >= limit || bytes >= MAX_PAGE_BYTES {
            if entries.peek().is_some() {
                page.last_evaluated = Some(sk.clone());
            }
            break;
        }
    }
    page
}

/// An [`ItemTable`] held in a map behind a mutex.
#[derive(Debug, Default)]
pub struct MemoryItemTable {
    partitions: Mutex<BTreeMap<String, Partition>>,
}

impl MemoryItemTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of items stored (for test assertions).
    pub fn len(&self) -> usize {
        lock(&self.partitions).values().map(BTreeMap::len).sum()
    }

    /// True when no item is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every stored item, in key order (for test assertions).
    pub fn items(&self) -> Vec<Item> {
        lock(&self.partitions)
            .iter()
            .flat_map(|(pk, partition)| {
                partition.iter().map(move |(sk, attrs)| Item { key: Key::new(pk.clone(), sk.clone()), attrs: attrs.clone() })
            })
            .collect()
    }
}

fn current<'a>(partitions: &'a BTreeMap<String, Partition>, key: &Key) -> Option<&'a Attrs> {
    partitions.get(&key.pk).and_then(|p| p.get(&key.sk))
}

fn store(partitions: &mut BTreeMap<String, Partition>, item: Item) {
    partitions.entry(item.key.pk).or_default().insert(item.key.sk, item.attrs);
}

fn remove(partitions: &mut BTreeMap<String, Partition>, key: &Key) {
    if let Some(partition) = partitions.get_mut(&key.pk) {
        partition.remove(&key.sk);
        if partition.is_empty() {
            partitions.remove(&key.pk);
        }
    }
}

#[async_trait]
impl ItemTable for MemoryItemTable {
    async fn get(&self, key: &Key) -> StorageResult<Option<Item>> {
        validate_key(key)?;
        let partitions = lock(&self.partitions);
        Ok(current(&partitions, key).map(|attrs| Item { key: key.clone(), attrs: attrs.clone() }))
    }

    async fn put(&self, item: Item, condition: Condition) -> StorageResult<()> {
        validate_item(&item)?;
        let mut partitions = lock(&self.partitions);
        if !condition_holds(&condition, current(&partitions, &item.key)) {
            return Err(StorageError::condition_failed());
        }
        store(&mut partitions, item);
        Ok(())
    }

    async fn delete(&self, key: &Key, condition: Condition) -> StorageResult<()> {
        validate_key(key)?;
        let mut partitions = lock(&self.partitions);
        if !condition_holds(&condition, current(&partitions, key)) {
            return Err(StorageError::condition_failed());
        }
        remove(&mut partitions, key);
        Ok(())
    }

    async fn transact_write(&self, writes: Vec<Write>) -> StorageResult<()> {
        validate_transaction(&writes)?;
        let mut partitions = lock(&self.partitions);
        let failed: Vec<usize> = writes
            .iter()
            .enumerate()
            .filter(|(_, write)| {
                let condition = match write {
                    Write::Put { condition, .. } | Write::Delete { condition, .. } | Write::Check { condition, .. } => condition,
                };
                !condition_holds(condition, current(&partitions, write.key()))
            })
            .map(|(index, _)| index)
            .collect();
        if !failed.is_empty() {
            return Err(StorageError::new(StorageErrorKind::TransactionCanceled(failed), "transaction cancelled by a failed condition"));
        }
        for write in writes {
            match write {
                Write::Put { item, .. } => store(&mut partitions, item),
                Write::Delete { key, .. } => remove(&mut partitions, &key),
                Write::Check { .. } => {}
            }
        }
        Ok(())
    }

    async fn query(&self, query: &Query) -> StorageResult<QueryPage> {
        validate_query(query)?;
        let partitions = lock(&self.partitions);
        let Some(partition) = partitions.get(&query.pk) else {
            return Ok(QueryPage::default());
        };
        let (lower, upper) = query_bounds(query);
        if is_empty_range(lower, upper) {
            return Ok(QueryPage::default());
        }
        let scanned = partition.range::<str, _>((lower, upper));
        let in_range = |entry: &(&String, &Attrs)| query.range.contains(entry.0);
        // Within the scanned bounds the matching keys are contiguous (only `Prefix` is not
        // bounded exactly), so skip to the first match and stop after the last.
        let page = if query.forward {
            collect_page(&query.pk, scanned.skip_while(|e| !in_range(e)).take_while(in_range), query.limit)
        } else {
            collect_page(&query.pk, scanned.rev().skip_while(|e| !in_range(e)).take_while(in_range), query.limit)
        };
        Ok(page)
    }

    async fn batch_get(&self, keys: &[Key]) -> StorageResult<Vec<Item>> {
        for key in keys {
            validate_key(key)?;
        }
        let partitions = lock(&self.partitions);
        let unique: BTreeSet<&Key> = keys.iter().collect();
        Ok(unique
            .into_iter()
            .filter_map(|key| current(&partitions, key).map(|attrs| Item { key: key.clone(), attrs: attrs.clone() }))
            .collect())
    }
}

/// An [`ObjectStore`] held in a sorted map behind a mutex.
#[derive(Debug, Default)]
pub struct MemoryObjectStore {
    objects: Mutex<BTreeMap<String, Bytes>>,
    /// Multipart uploads in progress, by upload id.
    uploads: Mutex<HashMap<String, MemoryUpload>>,
}

/// A multipart upload in progress: its key, and its parts by number as (etag, body).
type MemoryUpload = (String, BTreeMap<u32, (String, Bytes)>);

impl MemoryObjectStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The keys stored, ascending (for test assertions).
    pub fn keys(&self) -> Vec<String> {
        lock(&self.objects).keys().cloned().collect()
    }
}

fn validate_object_key(key: &str) -> StorageResult<()> {
    if key.is_empty() || key.len() > 1024 {
        return Err(StorageError::invalid("object key must be 1 to 1024 bytes"));
    }
    Ok(())
}

fn clamp_range(len: usize, range: &Range<u64>) -> Range<usize> {
    let end = usize::try_from(range.end).unwrap_or(usize::MAX).min(len);
    let start = usize::try_from(range.start).unwrap_or(usize::MAX).min(end);
    start..end
}

#[async_trait]
impl ObjectStore for MemoryObjectStore {
    async fn put(&self, key: &str, body: Bytes) -> StorageResult<()> {
        validate_object_key(key)?;
        lock(&self.objects).insert(key.to_string(), body);
        Ok(())
    }

    async fn get(&self, key: &str) -> StorageResult<Bytes> {
        lock(&self.objects).get(key).cloned().ok_or_else(|| StorageError::not_found("object not found"))
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> StorageResult<Bytes> {
        let body = self.get(key).await?;
        Ok(body.slice(clamp_range(body.len(), &range)))
    }

    async fn head(&self, key: &str) -> StorageResult<ObjectMeta> {
        let body = self.get(key).await?;
        Ok(ObjectMeta { key: key.to_string(), size: body.len() as u64 })
    }

    async fn list(&self, prefix: &str, start_after: Option<&str>, limit: usize) -> StorageResult<ObjectList> {
        if limit == 0 {
            return Err(StorageError::invalid("list limit must be at least 1"));
        }
        let objects = lock(&self.objects);
        let lower = match start_after {
            Some(after) if after >= prefix => Bound::Excluded(after),
            _ => Bound::Included(prefix),
        };
        let mut matching = objects.range::<str, _>((lower, Bound::Unbounded)).take_while(|(key, _)| key.starts_with(prefix)).peekable();
        let mut list = ObjectList::default();
        while let Some((key, body)) = matching.next() {
            list.objects.push(ObjectMeta { key: key.clone(), size: body.len() as u64 });
            if list.objects.len() >= limit {
                if matching.peek().is_some() {
                    list.next_start_after = Some(key.clone());
                }
                break;
            }
        }
        Ok(list)
    }

    async fn delete(&self, key: &str) -> StorageResult<()> {
        lock(&self.objects).remove(key);
        Ok(())
    }

    async fn create_upload(&self, key: &str) -> StorageResult<Upload> {
        validate_object_key(key)?;
        let mut id = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut id);
        let upload_id = hex::encode(id);
        lock(&self.uploads).insert(upload_id.clone(), (key.to_string(), BTreeMap::new()));
        Ok(Upload { key: key.to_string(), upload_id })
    }

    async fn upload_part(&self, upload: &Upload, number: u32, body: Bytes) -> StorageResult<UploadedPart> {
        check_part_number(number)?;
        let mut uploads = lock(&self.uploads);
        let (_, parts) = uploads
            .get_mut(&upload.upload_id)
            .filter(|(key, _)| *key == upload.key)
            .ok_or_else(|| StorageError::not_found("no such upload"))?;
        let mut tag = [0u8; 8];
        rand::thread_rng().fill_bytes(&mut tag);
        let etag = hex::encode(tag);
        parts.insert(number, (etag.clone(), body));
        Ok(UploadedPart { number, etag })
    }

    async fn complete_upload(&self, upload: &Upload, parts: &[UploadedPart]) -> StorageResult<()> {
        let mut uploads = lock(&self.uploads);
        let (key, uploaded) = uploads
            .get(&upload.upload_id)
            .filter(|(key, _)| *key == upload.key)
            .ok_or_else(|| StorageError::not_found("no such upload"))?;
        let sizes = uploaded.iter().map(|(number, (etag, body))| (*number, (etag.clone(), body.len()))).collect();
        check_part_list(parts, &sizes)?;
        let mut whole = Vec::new();
        for part in parts {
            whole.extend_from_slice(&uploaded[&part.number].1);
        }
        let key = key.clone();
        uploads.remove(&upload.upload_id);
        lock(&self.objects).insert(key, Bytes::from(whole));
        Ok(())
    }

    async fn abort_upload(&self, upload: &Upload) -> StorageResult<()> {
        let mut uploads = lock(&self.uploads);
        if uploads.get(&upload.upload_id).is_some_and(|(key, _)| *key == upload.key) {
            uploads.remove(&upload.upload_id);
        }
        Ok(())
    }
}

/// A [`KeyService`] whose master keys are random 256-bit keys living only in this process.
///
/// Any master key id works: its key is generated on first use. Data keys are wrapped with
/// AES-256-GCM, with the master key id and the context as associated data.
#[derive(Default)]
pub struct MemoryKeyService {
    master_keys: Mutex<HashMap<String, Zeroizing<[u8; 32]>>>,
}

impl std::fmt::Debug for MemoryKeyService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryKeyService").finish_non_exhaustive()
    }
}

impl MemoryKeyService {
    /// A service with no master keys yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn cipher(&self, master_key_id: &str) -> StorageResult<Aes256Gcm> {
        if master_key_id.is_empty() {
            return Err(StorageError::invalid("master key id must not be empty"));
        }
        let mut keys = lock(&self.master_keys);
        let key = keys.entry(master_key_id.to_string()).or_insert_with(|| {
            let mut key = Zeroizing::new([0u8; 32]);
            rand::thread_rng().fill_bytes(key.as_mut());
            key
        });
        Aes256Gcm::new_from_slice(key.as_ref()).map_err(|_| StorageError::internal("invalid master key length"))
    }
}

#[async_trait]
impl KeyService for MemoryKeyService {
    async fn generate_data_key(&self, master_key_id: &str, context: &str) -> StorageResult<DataKey> {
        key_wrap::generate_wrapped(&self.cipher(master_key_id)?, master_key_id, context)
    }

    async fn decrypt_data_key(&self, master_key_id: &str, context: &str, wrapped: &[u8]) -> StorageResult<Zeroizing<[u8; 32]>> {
        key_wrap::unwrap(&self.cipher(master_key_id)?, master_key_id, context, wrapped)
    }

    fn default_key_id(&self) -> String {
        "memory/default".to_string()
    }
}

/// A [`Clock`] that returns a set time, moved only when the test says so.
#[derive(Debug)]
pub struct FixedClock {
    micros: AtomicU64,
}

impl FixedClock {
    /// A clock stopped at `at` (sub-microsecond precision is dropped).
    pub fn new(at: DateTime<Utc>) -> Self {
        FixedClock { micros: AtomicU64::new(u64::try_from(at.timestamp_micros()).unwrap_or(0)) }
    }

    /// Moves the clock forward by `by` (negative durations are ignored).
    pub fn advance(&self, by: Duration) {
        let micros = u64::try_from(by.num_microseconds().unwrap_or(0)).unwrap_or(0);
        self.micros.fetch_add(micros, Ordering::SeqCst);
    }

    /// Sets the clock to `at`.
    pub fn set(&self, at: DateTime<Utc>) {
        self.micros.store(u64::try_from(at.timestamp_micros()).unwrap_or(0), Ordering::SeqCst);
    }
}

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        let micros = i64::try_from(self.micros.load(Ordering::SeqCst)).unwrap_or(i64::MAX);
        DateTime::from_timestamp_micros(micros).unwrap_or_default()
    }
}

/// An [`IdSource`] that counts: ids are predictable, distinct and well formed.
///
/// Resource ids are UUID-shaped (`00000000-0000-4000-8000-000000000001`, ...) and hex ids are
/// 32 hex digits (`00000000000000000000000000000001`, ...), sharing one counter.
#[derive(Debug, Default)]
pub struct SequentialIds {
    next: AtomicU64,
}

impl SequentialIds {
    /// A source whose first id is number 1.
    pub fn new() -> Self {
        Self::default()
    }

    fn next(&self) -> u64 {
        self.next.fetch_add(1, Ordering::SeqCst) + 1
    }
}

impl IdSource for SequentialIds {
    fn resource_id(&self) -> String {
        format!("00000000-0000-4000-8000-{:012x}", self.next())
    }

    fn hex32(&self) -> String {
        format!("{:032x}", self.next())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_clock_moves_only_when_told() {
        let start = DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default();
        let clock = FixedClock::new(start);
        assert_eq!(clock.now(), start);
        clock.advance(Duration::seconds(5));
        assert_eq!(clock.now(), start + Duration::seconds(5));
        clock.set(start);
        assert_eq!(clock.now(), start);
    }

    #[test]
    fn sequential_ids_are_distinct_and_well_formed() {
        let ids = SequentialIds::new();
        let first = ids.resource_id();
        assert_eq!(first, "00000000-0000-4000-8000-000000000001");
        assert!(uuid::Uuid::parse_str(&first).is_ok());
        let hex = ids.hex32();
        assert_eq!(hex, "00000000000000000000000000000002");
        assert_eq!(hex.len(), 32);
    }

    #[test]
    fn bounds_tighten_and_detect_empty_ranges() {
        assert_eq!(max_lower(Bound::Included("b"), Bound::Excluded("a")), Bound::Included("b"));
        assert_eq!(max_lower(Bound::Included("b"), Bound::Excluded("b")), Bound::Excluded("b"));
        assert_eq!(min_upper(Bound::Included("b"), Bound::Excluded("c")), Bound::Included("b"));
        assert_eq!(min_upper(Bound::Unbounded, Bound::Excluded("c")), Bound::Excluded("c"));
        assert!(is_empty_range(Bound::Included("b"), Bound::Included("a")));
        assert!(is_empty_range(Bound::Excluded("a"), Bound::Excluded("a")));
        assert!(!is_empty_range(Bound::Included("a"), Bound::Included("a")));
    }
}

/// The conformance suite against the in-memory adapters: every case as its own test, and the
/// suite functions once each (so the runner itself is exercised).
#[cfg(all(test, feature = "testsuite"))]
mod conformance {
    mod item_table {
        use crate::memory::MemoryItemTable;
        crate::item_table_tests!(async { ((), MemoryItemTable::new()) });
    }

    mod object_store {
        use crate::memory::MemoryObjectStore;
        crate::object_store_tests!(async { ((), MemoryObjectStore::new()) });
    }

    mod key_service {
        use crate::memory::MemoryKeyService;
        crate::key_service_tests!(async { ((), MemoryKeyService::new()) });
    }

    use super::*;
    use crate::testsuite;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn suites_pass_on_one_shared_instance() {
        let table = MemoryItemTable::new();
        testsuite::item_table_suite(&table).await.unwrap_or_else(|failure| panic!("{failure}"));
        // Running twice against the same data shows the cases do not depend on an empty store.
        testsuite::item_table_suite(&table).await.unwrap_or_else(|failure| panic!("{failure}"));
        testsuite::object_store_suite(&MemoryObjectStore::new()).await.unwrap_or_else(|failure| panic!("{failure}"));
        testsuite::key_service_suite(&MemoryKeyService::new()).await.unwrap_or_else(|failure| panic!("{failure}"));
    }

    /// A table that ignores conditions must fail the suite, naming the broken cases.
    #[tokio::test]
    async fn suite_reports_failing_cases_by_name() {
        struct Unconditional(MemoryItemTable);
        #[async_trait]
        impl ItemTable for Unconditional {
            async fn get(&self, key: &Key) -> StorageResult<Option<Item>> {
                self.0.get(key).await
            }
            async fn put(&self, item: Item, _: Condition) -> StorageResult<()> {
                self.0.put(item, Condition::Always).await
            }
            async fn delete(&self, key: &Key, condition: Condition) -> StorageResult<()> {
                self.0.delete(key, condition).await
            }
            async fn transact_write(&self, writes: Vec<Write>) -> StorageResult<()> {
                self.0.transact_write(writes).await
            }
            async fn query(&self, query: &Query) -> StorageResult<QueryPage> {
                self.0.query(query).await
            }
        }
        let failure = testsuite::item_table_suite(&Unconditional(MemoryItemTable::new())).await.err();
        let names: Vec<&str> = failure.iter().flat_map(|f| f.failures.iter().map(|(name, _)| *name)).collect();
        assert!(names.contains(&"put_if_not_exists"), "{names:?}");
        assert!(names.contains(&"put_if_equals"), "{names:?}");
        assert!(!names.contains(&"query_ranges_and_directions"), "{names:?}");
    }
}

//! [`RedbItemTable`]: the item table on redb, an embedded, crash-safe, ACID B-tree store.
//!
//! All items live in one redb table keyed by [`item_codec::encode_key`], so a partition is
//! one contiguous key range and a query is one B-tree range scan.
//!
//! Writes go to a single writer thread that groups whatever requests are waiting into one
//! redb write transaction (group commit): each request is checked and applied in turn, as if
//! alone, and every request is answered only after the transaction committed with
//! `Durability::Immediate`, so an acknowledged write survives a crash. A request whose
//! condition fails writes nothing (conditions are checked before any of its writes) and does
//! not affect the others in the group. Callers encode keys and values (and sort batches) before
//! queueing, so the writer thread, the one serial step, only checks and stores bytes. Reads run
//! on the calling thread in their own read transaction (a consistent snapshot that sees every
//! write acknowledged before it began).

use std::ops::Bound;
use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use async_trait::async_trait;
use fhirlake_ports::{
    BatchWrite, Condition, Item, ItemTable, Key, Query, QueryPage, SkRange, StorageError, StorageErrorKind, StorageResult, Write,
};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::oneshot;

use crate::item_codec::{self, decode_attrs, decode_sort_key, encode_attrs, encode_key, partition_header, prefix_successor};
use fhirlake_ports::limits::{validate_batch, validate_item, validate_key, validate_query, validate_transaction, MAX_PAGE_BYTES};

/// The one redb table holding every item.
const ITEMS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("items");

/// At most this many write requests share one transaction.
const MAX_GROUP: usize = 4096;

fn store_error(error: impl Into<redb::Error>) -> StorageError {
    let error: redb::Error = error.into();
    match error {
        redb::Error::DatabaseAlreadyOpen => StorageError::internal("the embedded table is already open in another process"),
        redb::Error::UpgradeRequired(format) => StorageError::internal(format!(
            "the embedded table is in redb file format {format}, written by a fhirlake before redb 4; this one reads format 3: \
             move the data dir aside and import its data again"
        )),
        other => StorageError::internal(format!("embedded store error: {other}")),
    }
}

/// What one encoded write does to its key.
enum Action {
    /// Store this value.
    Put(Vec<u8>),
    /// Remove the item.
    Delete,
    /// Only check the condition (transactions).
    Check,
}

/// A write with its key and value already encoded, so that the one writer thread only checks
/// conditions and stores bytes: encoding (and sorting a batch) happens on the callers' threads.
struct Encoded {
    key: Vec<u8>,
    action: Action,
    condition: Condition,
}

impl Encoded {
    fn put(item: &Item, condition: Condition) -> Self {
        Encoded { key: encode_key(&item.key.pk, &item.key.sk), action: Action::Put(encode_attrs(&item.attrs)), condition }
    }

    fn of(write: &Write) -> Self {
        match write {
            Write::Put { item, condition } => Self::put(item, condition.clone()),
            Write::Delete { key, condition } => {
                Encoded { key: encode_key(&key.pk, &key.sk), action: Action::Delete, condition: condition.clone() }
            }
            Write::Check { key, condition } => {
                Encoded { key: encode_key(&key.pk, &key.sk), action: Action::Check, condition: condition.clone() }
            }
        }
    }
}

/// One write request for the writer thread.
enum WriteOp {
    /// One conditional put or delete.
    One(Encoded),
    /// All or none.
    Transact(Vec<Encoded>),
    /// Unconditional puts (`Some`) and deletes (`None`) on distinct keys, in key order:
    /// neighbouring entries then land on the same B-tree pages one after the other, which
    /// makes a large batch several times cheaper.
    Batch(Vec<(Vec<u8>, Option<Vec<u8>>)>),
}

struct WriteRequest {
    op: WriteOp,
    reply: oneshot::Sender<StorageResult<()>>,
}

struct Writer {
    requests: mpsc::Sender<WriteRequest>,
    thread: JoinHandle<()>,
}

/// An [`ItemTable`] stored in one redb database file.
pub struct RedbItemTable {
    db: Arc<Database>,
    writer: Option<Writer>,
}

impl std::fmt::Debug for RedbItemTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbItemTable").finish_non_exhaustive()
    }
}

impl RedbItemTable {
    /// Opens the database at `path`, creating it (but not its directory) if absent.
    ///
    /// Blocking: call it at startup or from a blocking context. Errors: `Internal` when the
    /// file cannot be opened, is not a redb database, or is already open in another process.
    pub fn open(path: impl AsRef<Path>) -> StorageResult<Self> {
        let db = Database::create(path.as_ref()).map_err(store_error)?;
        let txn = db.begin_write().map_err(store_error)?;
        txn.open_table(ITEMS).map_err(store_error)?;
        txn.commit().map_err(store_error)?;
        let db = Arc::new(db);
        let (requests, receiver) = mpsc::channel();
        let writer_db = Arc::clone(&db);
        let thread = std::thread::Builder::new()
            .name("fhirlake-redb-writer".into())
            .spawn(move || run_writer(&writer_db, &receiver))
            .map_err(|e| StorageError::internal(format!("cannot start the embedded table writer: {e}")))?;
        Ok(RedbItemTable { db, writer: Some(Writer { requests, thread }) })
    }

    async fn write(&self, op: WriteOp) -> StorageResult<()> {
        let writer = self.writer.as_ref().ok_or_else(|| StorageError::internal("the embedded table is closed"))?;
        let (reply, answer) = oneshot::channel();
        writer.requests.send(WriteRequest { op, reply }).map_err(|_| StorageError::internal("the embedded table writer has stopped"))?;
        answer.await.map_err(|_| StorageError::internal("the embedded table writer has stopped"))?
    }

    async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&redb::ReadOnlyTable<&'static [u8], &'static [u8]>) -> StorageResult<T> + Send + 'static,
    ) -> StorageResult<T> {
        // On the calling thread: a read is short (one key, or one page of at most a thousand
        // items, from redb's cache or the OS page cache), and handing each read to the blocking
        // pool cost more than the read itself (in a bulk import, the thread hand-offs took a
        // tenth of the CPU).
        let txn = self.db.begin_read().map_err(store_error)?;
        let table = txn.open_table(ITEMS).map_err(store_error)?;
        read(&table)
    }
}

impl Drop for RedbItemTable {
    /// Stops the writer after it has answered every queued request, so the file is closed
    /// (and can be reopened) once the table is dropped.
    fn drop(&mut self) {
        if let Some(Writer { requests, thread }) = self.writer.take() {
            drop(requests);
            let _ = thread.join();
        }
    }
}

fn run_writer(db: &Database, requests: &mpsc::Receiver<WriteRequest>) {
    while let Ok(first) = requests.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match requests.try_recv() {
                Ok(request) => group.push(request),
                Err(_) => break,
            }
        }
        match commit_group(db, &group) {
            Ok(outcomes) => {
                for (request, outcome) in group.into_iter().zip(outcomes) {
                    let _ = request.reply.send(outcome);
                }
            }
            Err(error) => {
                for request in group {
                    let _ = request.reply.send(Err(error.clone()));
                }
            }
        }
    }
}

/// Applies every request of the group in one write transaction and commits it. The outer
/// error (storage failure) fails the whole group; inner errors are per-request outcomes.
fn commit_group(db: &Database, group: &[WriteRequest]) -> StorageResult<Vec<StorageResult<()>>> {
    let txn = db.begin_write().map_err(store_error)?;
    let outcomes = {
        let mut table = txn.open_table(ITEMS).map_err(store_error)?;
        let mut outcomes = Vec::with_capacity(group.len());
        for request in group {
            outcomes.push(apply(&mut table, &request.op)?);
        }
        outcomes
    };
    if outcomes.iter().any(Result::is_ok) {
        txn.commit().map_err(store_error)?;
    } else {
        txn.abort().map_err(store_error)?;
    }
    Ok(outcomes)
}

type WriteTable<'txn> = redb::Table<'txn, &'static [u8], &'static [u8]>;

fn condition_holds(table: &WriteTable<'_>, key: &[u8], condition: &Condition) -> StorageResult<bool> {
    if matches!(condition, Condition::Always) {
        return Ok(true);
    }
    let current = table.get(key).map_err(store_error)?;
    Ok(match (condition, current) {
        (Condition::Always, _) => true,
        (Condition::NotExists, current) => current.is_none(),
        (Condition::Exists, current) => current.is_some(),
        (Condition::Equals(..), None) => false,
        (Condition::Equals(name, expected), Some(stored)) => item_codec::find_attr(stored.value(), name)?.as_ref() == Some(expected),
    })
}

fn store(table: &mut WriteTable<'_>, key: &[u8], action: &Action) -> StorageResult<()> {
    match action {
        Action::Put(value) => table.insert(key, value.as_slice()).map(|_| ()).map_err(store_error),
        Action::Delete => table.remove(key).map(|_| ()).map_err(store_error),
        Action::Check => Ok(()),
    }
}

fn apply(table: &mut WriteTable<'_>, op: &WriteOp) -> StorageResult<StorageResult<()>> {
    match op {
        WriteOp::One(write) => {
            if !condition_holds(table, &write.key, &write.condition)? {
                return Ok(Err(StorageError::condition_failed()));
            }
            store(table, &write.key, &write.action)?;
        }
        WriteOp::Batch(writes) => {
            for (key, value) in writes {
                match value {
                    Some(value) => table.insert(key.as_slice(), value.as_slice()).map(|_| ()).map_err(store_error)?,
                    None => table.remove(key.as_slice()).map(|_| ()).map_err(store_error)?,
                }
            }
        }
        WriteOp::Transact(writes) => {
            let mut failed = Vec::new();
            for (index, write) in writes.iter().enumerate() {
                if !condition_holds(table, &write.key, &write.condition)? {
                    failed.push(index);
                }
            }
            if !failed.is_empty() {
                return Ok(Err(StorageError::new(
                    StorageErrorKind::TransactionCanceled(failed),
                    "transaction cancelled by a failed condition",
                )));
            }
            for write in writes {
                store(table, &write.key, &write.action)?;
            }
        }
    }
    Ok(Ok(()))
}

fn max_lower(a: Bound<Vec<u8>>, b: Bound<Vec<u8>>) -> Bound<Vec<u8>> {
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
fn min_upper(a: Bound<Vec<u8>>, b: Bound<Vec<u8>>) -> Bound<Vec<u8>> {
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

fn is_empty_range(lower: &Bound<Vec<u8>>, upper: &Bound<Vec<u8>>) -> bool {
    match (lower, upper) {
        (Bound::Included(a), Bound::Included(b)) => a > b,
        (Bound::Included(a) | Bound::Excluded(a), Bound::Included(b) | Bound::Excluded(b)) => a >= b,
        _ => false,
    }
}

/// The stored-key bounds of a query: its partition, narrowed by its range and `start_after`.
fn query_bounds(query: &Query, header: &[u8]) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let at = |sk: &str| [header, sk.as_bytes()].concat();
    let partition_end = match prefix_successor(header) {
        Some(end) => Bound::Excluded(end),
        None => Bound::Unbounded,
    };
    let (lower, upper) = match &query.range {
        SkRange::All => (Bound::Included(header.to_vec()), partition_end),
        SkRange::Prefix(p) => {
            let lower = Bound::Included(at(p));
            match prefix_successor(p.as_bytes()) {
                Some(end) => (lower, Bound::Excluded(at_bytes(header, &end))),
                None => (lower, partition_end),
            }
        }
        SkRange::Between(lo, hi) => (Bound::Included(at(lo)), Bound::Included(at(hi))),
        SkRange::AtLeast(lo) => (Bound::Included(at(lo)), partition_end),
        SkRange::AtMost(hi) => (Bound::Included(header.to_vec()), Bound::Included(at(hi))),
    };
    match (&query.start_after, query.forward) {
        (Some(after), true) => (max_lower(lower, Bound::Excluded(at(after))), upper),
        (Some(before), false) => (lower, min_upper(upper, Bound::Excluded(at(before)))),
        (None, _) => (lower, upper),
    }
}

fn at_bytes(header: &[u8], sk: &[u8]) -> Vec<u8> {
    [header, sk].concat()
}

fn as_slices(bound: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match bound {
        Bound::Included(v) => Bound::Included(v.as_slice()),
        Bound::Excluded(v) => Bound::Excluded(v.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

fn run_query(table: &redb::ReadOnlyTable<&'static [u8], &'static [u8]>, query: &Query) -> StorageResult<QueryPage> {
    let header = partition_header(&query.pk);
    let (lower, upper) = query_bounds(query, &header);
    if is_empty_range(&lower, &upper) {
        return Ok(QueryPage::default());
    }
    let mut range = table.range::<&[u8]>((as_slices(&lower), as_slices(&upper))).map_err(store_error)?;
    let mut next = || if query.forward { range.next() } else { range.next_back() };
    let mut page = QueryPage::default();
    let mut bytes = 0usize;
    while let Some(entry) = next() {
        let (key, value) = entry.map_err(store_error)?;
        let sk = decode_sort_key(key.value(), header.len())?;
        if !key.value().starts_with(&header) || !query.range.contains(&sk) {
            // Cannot happen with correct bounds; never return another partition's item.
            return Err(StorageError::internal("embedded table range scan left its partition"));
        }
        let item = Item { key: Key::new(query.pk.as_str(), sk), attrs: decode_attrs(value.value())? };
        bytes += item.size();
        page.items.push(item);
        if page.items.len() >= query.limit || bytes >= MAX_PAGE_BYTES {
            if next().is_some() {
                page.last_evaluated = page.items.last().map(|item| item.key.sk.clone());
            }
            break;
        }
    }
    Ok(page)
}

fn read_item(table: &redb::ReadOnlyTable<&'static [u8], &'static [u8]>, key: Key) -> StorageResult<Option<Item>> {
    let stored = table.get(encode_key(&key.pk, &key.sk).as_slice()).map_err(store_error)?;
    match stored {
        Some(value) => Ok(Some(Item { attrs: decode_attrs(value.value())?, key })),
        None => Ok(None),
    }
}

#[async_trait]
impl ItemTable for RedbItemTable {
    async fn get(&self, key: &Key) -> StorageResult<Option<Item>> {
        validate_key(key)?;
        let key = key.clone();
        self.read(move |table| read_item(table, key)).await
    }

    async fn put(&self, item: Item, condition: Condition) -> StorageResult<()> {
        validate_item(&item)?;
        self.write(WriteOp::One(Encoded::put(&item, condition))).await
    }

    async fn delete(&self, key: &Key, condition: Condition) -> StorageResult<()> {
        validate_key(key)?;
        self.write(WriteOp::One(Encoded { key: encode_key(&key.pk, &key.sk), action: Action::Delete, condition })).await
    }

    async fn transact_write(&self, writes: Vec<Write>) -> StorageResult<()> {
        validate_transaction(&writes)?;
        self.write(WriteOp::Transact(writes.iter().map(Encoded::of).collect())).await
    }

    /// One redb transaction: on this adapter a batch is in fact atomic.
    async fn batch_write(&self, writes: Vec<BatchWrite>) -> StorageResult<()> {
        validate_batch(&writes)?;
        if writes.is_empty() {
            return Ok(());
        }
        let mut encoded: Vec<(Vec<u8>, Option<Vec<u8>>)> = writes
            .iter()
            .map(|w| match w {
                BatchWrite::Put(item) => (encode_key(&item.key.pk, &item.key.sk), Some(encode_attrs(&item.attrs))),
                BatchWrite::Delete(key) => (encode_key(&key.pk, &key.sk), None),
            })
            .collect();
        encoded.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        self.write(WriteOp::Batch(encoded)).await
    }

    /// Every write is queued before any answer is awaited, so the writer thread groups them into
    /// shared transactions (up to [`MAX_GROUP`] requests each).
    async fn write_each(&self, writes: Vec<Write>) -> Vec<StorageResult<()>> {
        let Some(writer) = self.writer.as_ref() else {
            return writes.iter().map(|_| Err(StorageError::internal("the embedded table is closed"))).collect();
        };
        let mut answers = Vec::with_capacity(writes.len());
        for write in writes {
            let op = match &write {
                Write::Put { item, .. } => validate_item(item).map(|()| WriteOp::One(Encoded::of(&write))),
                Write::Delete { key, .. } => validate_key(key).map(|()| WriteOp::One(Encoded::of(&write))),
                Write::Check { .. } => Err(StorageError::invalid("write_each takes puts and deletes")),
            };
            answers.push(op.and_then(|op| {
                let (reply, answer) = oneshot::channel();
                writer
                    .requests
                    .send(WriteRequest { op, reply })
                    .map(|()| answer)
                    .map_err(|_| StorageError::internal("the embedded table writer has stopped"))
            }));
        }
        let mut outcomes = Vec::with_capacity(answers.len());
        for answer in answers {
            outcomes.push(match answer {
                Ok(answer) => answer.await.unwrap_or_else(|_| Err(StorageError::internal("the embedded table writer has stopped"))),
                Err(error) => Err(error),
            });
        }
        outcomes
    }

    async fn query(&self, query: &Query) -> StorageResult<QueryPage> {
        validate_query(query)?;
        let query = query.clone();
        self.read(move |table| run_query(table, &query)).await
    }

    async fn batch_get(&self, keys: &[Key]) -> StorageResult<Vec<Item>> {
        for key in keys {
            validate_key(key)?;
        }
        let mut keys = keys.to_vec();
        keys.sort();
        keys.dedup();
        self.read(move |table| {
            let mut found = Vec::with_capacity(keys.len());
            for key in keys {
                if let Some(item) = read_item(table, key)? {
                    found.push(item);
                }
            }
            Ok(found)
        })
        .await
    }
}

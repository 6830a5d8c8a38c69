//! [`RedbItemTable`]: the item table on redb, an embedded, crash-safe, ACID B-tree store, with
//! large batches written as sorted runs beside it.
//!
//! Items live in one redb table keyed by [`item_codec::encode_key`], so a partition is one
//! contiguous key range and a query is one B-tree range scan, merged with the same range of
//! each sorted run that may hold the partition (see [`crate::run_set`]: a bulk import's index
//! entries are written once, sequentially, instead of dirtying a random B-tree page each).
//!
//! Writes go to a single writer thread that groups whatever requests are waiting into one
//! redb write transaction (group commit): each request is checked and applied in turn, as if
//! alone, and every request is answered only after the transaction committed with
//! `Durability::Immediate`, so an acknowledged write survives a crash. A request whose
//! condition fails writes nothing (conditions are checked before any of its writes) and does
//! not affect the others in the group. Callers encode keys and values (and sort batches, and
//! write a large batch's run file) before queueing, so the writer thread, the one serial step,
//! only checks and stores bytes. Reads run on the calling thread in their own read transaction
//! with the runs of the same moment (a consistent snapshot that sees every write acknowledged
//! before it began). A compactor thread merges runs when there are too many.

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, RwLock};
use std::thread::JoinHandle;

use async_trait::async_trait;
use fhirlake_ports::{
    BatchWrite, Condition, Item, ItemTable, Key, Query, QueryPage, SkRange, StorageError, StorageErrorKind, StorageResult, Write,
};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use tokio::sync::oneshot;

use crate::entry_batch::EntryBatch;
use crate::item_codec::{self, decode_attrs, decode_sort_key, encode_attrs, encode_key, partition_header, prefix_successor};
use crate::run_set::{self, EntryIter, Merged, Run, RunPolicy, Runs, RUNS, SHADOWS};
use crate::sorted_run::{partition_of, KeyHash, SortedRun};
use fhirlake_ports::limits::{validate_item, validate_key, validate_query, validate_transaction, MAX_PAGE_BYTES};

/// The one redb table holding every item.
const ITEMS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("items");

/// At most this many write requests share one transaction.
const MAX_GROUP: usize = 4096;

pub(crate) fn store_error(error: impl Into<redb::Error>) -> StorageError {
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

/// A batch written as a run, waiting for its registration.
struct NewRun {
    id: u64,
    data: Arc<SortedRun>,
    /// The run's entries: their keys are removed from the B-tree when it is registered.
    entries: EntryBatch,
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
    Batch(EntryBatch),
    /// A large batch, already written as a run: registered as the newest.
    Register(NewRun),
}

/// A write and where to answer it. The answer carries the write back, so that its memory is
/// freed by the thread that allocated it: mimalloc gives blocks freed by another thread back to
/// their pages only lazily, and the writer freeing a bulk import's batches made the importing
/// threads take fresh, zero-filled pages all the time.
struct WriteRequest {
    op: WriteOp,
    reply: oneshot::Sender<(StorageResult<()>, WriteOp)>,
}

struct Writer {
    requests: mpsc::Sender<WriteRequest>,
    thread: JoinHandle<()>,
}

/// What the writer, the compactor and the readers share.
struct Shared {
    db: Database,
    /// The registered runs. Held for reading while a read transaction begins, and for writing
    /// while a transaction that changes the manifest commits, so a reader's B-tree and runs
    /// always belong together.
    runs: RwLock<Runs>,
    dir: PathBuf,
    next_file_id: AtomicU64,
    policy: RunPolicy,
}

impl Shared {
    fn current_runs(&self) -> Runs {
        self.runs.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Commits `txn`, publishing `runs` with it when they changed.
    fn commit(&self, txn: redb::WriteTransaction, runs: Option<Runs>) -> StorageResult<()> {
        match runs {
            Some(runs) => {
                let mut published = self.runs.write().unwrap_or_else(std::sync::PoisonError::into_inner);
                txn.commit().map_err(store_error)?;
                *published = runs;
                Ok(())
            }
            None => txn.commit().map_err(store_error),
        }
    }

    fn new_run_path(&self) -> (u64, PathBuf) {
        let id = self.next_file_id.fetch_add(1, Ordering::Relaxed);
        (id, run_set::run_path(&self.dir, id))
    }
}

/// An [`ItemTable`] stored in one redb database file and its sorted runs.
pub struct RedbItemTable {
    shared: Arc<Shared>,
    writer: Option<Writer>,
    compactor: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for RedbItemTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbItemTable").finish_non_exhaustive()
    }
}

/// A consistent view for reads: the B-tree, its shadows and the runs of one moment.
struct Snapshot<'a> {
    items: &'a redb::ReadOnlyTable<&'static [u8], &'static [u8]>,
    shadows: Option<&'a redb::ReadOnlyTable<&'static [u8], &'static [u8]>>,
    runs: &'a Runs,
}

impl RedbItemTable {
    /// Opens the database at `path`, creating it (but not its directory) if absent, with the
    /// default [`RunPolicy`]. Run files live in the sibling directory `<name>.runs`.
    ///
    /// Blocking: call it at startup or from a blocking context. Errors: `Internal` when the
    /// file cannot be opened, is not a redb database, or is already open in another process.
    pub fn open(path: impl AsRef<Path>) -> StorageResult<Self> {
        Self::open_with(path, RunPolicy::default())
    }

    /// [`Self::open`] with a chosen run policy.
    pub fn open_with(path: impl AsRef<Path>, policy: RunPolicy) -> StorageResult<Self> {
        let db = Database::create(path.as_ref()).map_err(store_error)?;
        let dir = run_set::runs_dir(path.as_ref());
        run_set::create_dir(&dir)?;
        let txn = db.begin_write().map_err(store_error)?;
        txn.open_table(ITEMS).map_err(store_error)?;
        txn.open_table(SHADOWS).map_err(store_error)?;
        let (runs, next_id) = run_set::load(&dir, &txn.open_table(RUNS).map_err(store_error)?)?;
        txn.commit().map_err(store_error)?;
        let shared = Arc::new(Shared { db, runs: RwLock::new(runs), dir, next_file_id: AtomicU64::new(next_id), policy });
        let (wake, woken) = mpsc::sync_channel(1);
        let compactor_shared = Arc::clone(&shared);
        let compactor = std::thread::Builder::new()
            .name("fhirlake-run-merger".into())
            .spawn(move || run_compactor(&compactor_shared, &woken))
            .map_err(|e| StorageError::internal(format!("cannot start the embedded table compactor: {e}")))?;
        // Runs left over from before are merged if there are too many.
        let _ = wake.try_send(());
        let (requests, receiver) = mpsc::channel();
        let writer_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("fhirlake-redb-writer".into())
            .spawn(move || run_writer(&writer_shared, &receiver, &wake))
            .map_err(|e| StorageError::internal(format!("cannot start the embedded table writer: {e}")))?;
        Ok(RedbItemTable { shared, writer: Some(Writer { requests, thread }), compactor: Some(compactor) })
    }

    /// How many sorted runs hold items besides the B-tree (diagnostics and benchmarks).
    pub fn runs(&self) -> usize {
        self.shared.current_runs().newest_first().len()
    }

    /// Whether the runs are due a merge (the compactor is at it, or about to be).
    pub fn merging(&self) -> bool {
        self.shared.current_runs().to_merge(&self.shared.policy).is_some()
    }

    async fn write(&self, op: WriteOp) -> StorageResult<()> {
        let writer = self.writer.as_ref().ok_or_else(|| StorageError::internal("the embedded table is closed"))?;
        let (reply, answer) = oneshot::channel();
        writer.requests.send(WriteRequest { op, reply }).map_err(|_| StorageError::internal("the embedded table writer has stopped"))?;
        let (outcome, _written) = answer.await.map_err(|_| StorageError::internal("the embedded table writer has stopped"))?;
        outcome
    }

    async fn read<T: Send + 'static>(&self, read: impl FnOnce(&Snapshot<'_>) -> StorageResult<T> + Send + 'static) -> StorageResult<T> {
        // On the calling thread: a read is short (one key, or one page of at most a thousand
        // items, from redb's cache or the OS page cache), and handing each read to the blocking
        // pool cost more than the read itself (in a bulk import, the thread hand-offs took a
        // tenth of the CPU).
        let (txn, runs) = {
            let runs = self.shared.runs.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            (self.shared.db.begin_read().map_err(store_error)?, runs.clone())
        };
        let items = txn.open_table(ITEMS).map_err(store_error)?;
        let shadows = if runs.is_empty() { None } else { Some(txn.open_table(SHADOWS).map_err(store_error)?) };
        read(&Snapshot { items: &items, shadows: shadows.as_ref(), runs: &runs })
    }

    /// Writes a large batch as a run, then has the writer register it.
    async fn write_run(&self, encoded: EntryBatch) -> StorageResult<()> {
        let (id, path) = self.shared.new_run_path();
        let written = path.clone();
        let (data, entries) = tokio::task::spawn_blocking(move || SortedRun::write_batch(&written, &encoded).map(|run| (run, encoded)))
            .await
            .map_err(|_| StorageError::internal("writing a run of the embedded table failed"))??;
        let outcome = self.write(WriteOp::Register(NewRun { id, data: Arc::new(data), entries })).await;
        if outcome.is_err() {
            // Not registered: nothing refers to the file (a crash here leaves it to the next open).
            let _ = std::fs::remove_file(&path);
        }
        outcome
    }
}

impl Drop for RedbItemTable {
    /// Stops the writer after it has answered every queued request, then the compactor after
    /// its current merge, so the file is closed (and can be reopened) once the table is dropped.
    fn drop(&mut self) {
        if let Some(Writer { requests, thread }) = self.writer.take() {
            drop(requests);
            let _ = thread.join();
        }
        if let Some(compactor) = self.compactor.take() {
            let _ = compactor.join();
        }
    }
}

fn run_writer(shared: &Shared, requests: &mpsc::Receiver<WriteRequest>, wake_compactor: &mpsc::SyncSender<()>) {
    while let Ok(first) = requests.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match requests.try_recv() {
                Ok(request) => group.push(request),
                Err(_) => break,
            }
        }
        let registers = group.iter().any(|r| matches!(r.op, WriteOp::Register(_)));
        match commit_group(shared, &group) {
            Ok(outcomes) => {
                for (request, outcome) in group.into_iter().zip(outcomes) {
                    let _ = request.reply.send((outcome, request.op));
                }
                if registers {
                    let _ = wake_compactor.try_send(());
                }
            }
            Err(error) => {
                for request in group {
                    let _ = request.reply.send((Err(error.clone()), request.op));
                }
            }
        }
    }
}

type WriteTable<'txn> = redb::Table<'txn, &'static [u8], &'static [u8]>;

/// The tables a write transaction changes, and the runs as its writes so far leave them.
struct WriteState<'txn> {
    items: WriteTable<'txn>,
    shadows: WriteTable<'txn>,
    manifest: redb::Table<'txn, u64, u64>,
    runs: Runs,
    runs_changed: bool,
}

/// Applies every request of the group in one write transaction and commits it. The outer
/// error (storage failure) fails the whole group; inner errors are per-request outcomes.
fn commit_group(shared: &Shared, group: &[WriteRequest]) -> StorageResult<Vec<StorageResult<()>>> {
    let txn = shared.db.begin_write().map_err(store_error)?;
    let (outcomes, runs) = {
        let mut state = WriteState {
            items: txn.open_table(ITEMS).map_err(store_error)?,
            shadows: txn.open_table(SHADOWS).map_err(store_error)?,
            manifest: txn.open_table(RUNS).map_err(store_error)?,
            runs: shared.current_runs(),
            runs_changed: false,
        };
        let mut outcomes = Vec::with_capacity(group.len());
        for request in group {
            outcomes.push(apply(&mut state, &request.op)?);
        }
        (outcomes, state.runs_changed.then_some(state.runs))
    };
    if outcomes.iter().any(Result::is_ok) {
        shared.commit(txn, runs)?;
    } else {
        txn.abort().map_err(store_error)?;
    }
    Ok(outcomes)
}

/// The stored value of `key`: the B-tree's, unless a shadow hides the runs', else the newest run's.
fn current_value<T: ReadableTable<&'static [u8], &'static [u8]>>(
    items: &T,
    shadows: Option<&T>,
    runs: &Runs,
    key: &[u8],
) -> StorageResult<Option<Vec<u8>>> {
    if let Some(stored) = items.get(key).map_err(store_error)? {
        return Ok(Some(stored.value().to_vec()));
    }
    if runs.is_empty() {
        return Ok(None);
    }
    if let Some(shadows) = shadows {
        if shadows.get(key).map_err(store_error)?.is_some() {
            return Ok(None);
        }
    }
    Ok(runs.get(key)?.flatten())
}

fn condition_holds(state: &WriteState<'_>, key: &[u8], condition: &Condition) -> StorageResult<bool> {
    if matches!(condition, Condition::Always) {
        return Ok(true);
    }
    let current = current_value(&state.items, Some(&state.shadows), &state.runs, key)?;
    Ok(match (condition, current) {
        (Condition::Always, _) => true,
        (Condition::NotExists, current) => current.is_none(),
        (Condition::Exists, current) => current.is_some(),
        (Condition::Equals(..), None) => false,
        (Condition::Equals(name, expected), Some(stored)) => item_codec::find_attr(&stored, name)?.as_ref() == Some(expected),
    })
}

fn put(state: &mut WriteState<'_>, key: &[u8], value: &[u8]) -> StorageResult<()> {
    // A shadow of the key may stay: the B-tree item is read first, and hides the runs anyway.
    state.items.insert(key, value).map(|_| ()).map_err(store_error)
}

fn remove(state: &mut WriteState<'_>, key: &[u8]) -> StorageResult<()> {
    state.items.remove(key).map_err(store_error)?;
    if !state.runs.is_empty() && state.runs.may_hold(key) {
        state.shadows.insert(key, &[][..]).map_err(store_error)?;
    }
    Ok(())
}

fn store(state: &mut WriteState<'_>, key: &[u8], action: &Action) -> StorageResult<()> {
    match action {
        Action::Put(value) => put(state, key, value),
        Action::Delete => remove(state, key),
        Action::Check => Ok(()),
    }
}

/// Registers a run as the newest, and removes its keys from the B-tree (and their shadows), so
/// its entries are what reads find.
fn register(state: &mut WriteState<'_>, run: &NewRun) -> StorageResult<()> {
    let seq = state.runs.newest_first().first().map_or(1, |newest| newest.seq + 1);
    state.manifest.insert(seq, run.id).map_err(store_error)?;
    remove_keys(&mut state.items, &run.entries)?;
    if !state.shadows.is_empty().map_err(store_error)? {
        remove_keys(&mut state.shadows, &run.entries)?;
    }
    state.runs = state.runs.with_newest(Arc::new(Run { seq, id: run.id, data: Arc::clone(&run.data) }));
    state.runs_changed = true;
    Ok(())
}

/// At least the bytes a batch write takes encoded in an [`EntryBatch`].
fn encoded_bound(write: &BatchWrite) -> usize {
    match write {
        BatchWrite::Put(item) => 2 + item.key.pk.len() + item.key.sk.len() + item_codec::encoded_attrs_bound(&item.attrs),
        BatchWrite::Delete(key) => 2 + key.pk.len() + key.sk.len(),
    }
}

/// A partition's share of a run up to this size is removed key by key; a larger share costs one
/// range probe of the B-tree (most partitions of a bulk import's entries hold nothing there).
const POINT_REMOVALS: usize = 4;

/// Removes the keys of `entries` (sorted) from `table`, partition by partition.
fn remove_keys(table: &mut WriteTable<'_>, entries: &EntryBatch) -> StorageResult<()> {
    let mut start = 0;
    while start < entries.len() {
        let header = partition_of(entries.key(start));
        let end = (start + 1..entries.len()).find(|&i| partition_of(entries.key(i)) != header).unwrap_or(entries.len());
        let group = start..end;
        start = end;
        let (first, last) = (entries.key(group.start), entries.key(group.end - 1));
        let present = if group.len() <= POINT_REMOVALS { None } else { keys_between(table, first, last, group.len())? };
        match present {
            // The stored keys of the group's span, few enough to match against the group.
            Some(present) => {
                let keys: Vec<&[u8]> = group.map(|i| entries.key(i)).collect();
                for key in present.iter().filter(|key| keys.binary_search(&key.as_slice()).is_ok()) {
                    table.remove(key.as_slice()).map_err(store_error)?;
                }
            }
            None => {
                for i in group {
                    table.remove(entries.key(i)).map_err(store_error)?;
                }
            }
        }
    }
    Ok(())
}

/// The keys `table` holds from `first` to `last`, or `None` when there are more than `most`.
fn keys_between(table: &WriteTable<'_>, first: &[u8], last: &[u8], most: usize) -> StorageResult<Option<Vec<Vec<u8>>>> {
    let mut present = Vec::new();
    for entry in table.range::<&[u8]>(first..=last).map_err(store_error)? {
        if present.len() == most {
            return Ok(None);
        }
        present.push(entry.map_err(store_error)?.0.value().to_vec());
    }
    Ok(Some(present))
}

fn apply(state: &mut WriteState<'_>, op: &WriteOp) -> StorageResult<StorageResult<()>> {
    match op {
        WriteOp::One(write) => {
            if !condition_holds(state, &write.key, &write.condition)? {
                return Ok(Err(StorageError::condition_failed()));
            }
            store(state, &write.key, &write.action)?;
        }
        WriteOp::Batch(writes) => {
            for (key, value) in writes.iter() {
                match value {
                    Some(value) => put(state, key, value)?,
                    None => remove(state, key)?,
                }
            }
        }
        WriteOp::Register(run) => register(state, run)?,
        WriteOp::Transact(writes) => {
            let mut failed = Vec::new();
            for (index, write) in writes.iter().enumerate() {
                if !condition_holds(state, &write.key, &write.condition)? {
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
                store(state, &write.key, &write.action)?;
            }
        }
    }
    Ok(Ok(()))
}

/// Merges runs while there are more than the policy allows; woken after each registration.
fn run_compactor(shared: &Shared, woken: &mpsc::Receiver<()>) {
    while woken.recv().is_ok() {
        while let Some(window) = shared.current_runs().to_merge(&shared.policy) {
            if let Err(error) = merge(shared, &window) {
                tracing::warn!(error = %error, "merging runs of the embedded table failed; they stay as they are");
                break;
            }
        }
    }
}

/// Merges `window` (adjacent runs, newest first) into one run that takes its newest sequence
/// number, then deletes the merged files (readers still holding them read on: the files stay
/// open until their last reader is done).
fn merge(shared: &Shared, window: &[Arc<Run>]) -> StorageResult<()> {
    let (Some(newest), Some(oldest)) = (window.first(), window.last()) else { return Ok(()) };
    let drop_tombstones = shared.current_runs().is_oldest(oldest);
    let sources: Vec<Arc<SortedRun>> = window.iter().map(|run| Arc::clone(&run.data)).collect();
    let (id, path) = shared.new_run_path();
    let data = match SortedRun::merge(&path, &sources, drop_tombstones) {
        Ok(data) => data,
        Err(error) => {
            let _ = std::fs::remove_file(&path);
            return Err(error);
        }
    };
    tracing::debug!(runs = window.len(), entries = data.len(), tombstones = data.tombstones(), "merged runs of the embedded table");
    let merged = Arc::new(Run { seq: newest.seq, id, data: Arc::new(data) });
    let replaced: Vec<u64> = window.iter().map(|run| run.seq).collect();
    let txn = shared.db.begin_write().map_err(store_error)?;
    {
        let mut manifest = txn.open_table(RUNS).map_err(store_error)?;
        for seq in &replaced {
            manifest.remove(seq).map_err(store_error)?;
        }
        manifest.insert(merged.seq, id).map_err(store_error)?;
    }
    // Only this thread removes runs, so the window is still registered; runs registered since
    // are newer and stay in front of it.
    let runs = shared.current_runs().with_merged(&replaced, merged);
    shared.commit(txn, Some(runs))?;
    for run in window {
        let _ = std::fs::remove_file(run_set::run_path(&shared.dir, run.id));
    }
    Ok(())
}

/// The tighter of two lower bounds.
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

/// Adds one stored item to `page`; true when the page is full.
fn push_item(page: &mut QueryPage, bytes: &mut usize, query: &Query, header: &[u8], key: &[u8], value: &[u8]) -> StorageResult<bool> {
    let sk = decode_sort_key(key, header.len())?;
    if !key.starts_with(header) || !query.range.contains(&sk) {
        // Cannot happen with correct bounds; never return another partition's item.
        return Err(StorageError::internal("embedded table range scan left its partition"));
    }
    let item = Item { key: Key::new(query.pk.as_str(), sk), attrs: decode_attrs(value)? };
    *bytes += item.size();
    page.items.push(item);
    Ok(page.items.len() >= query.limit || *bytes >= MAX_PAGE_BYTES)
}

fn run_query(snapshot: &Snapshot<'_>, query: &Query) -> StorageResult<QueryPage> {
    let header = partition_header(&query.pk);
    let (lower, upper) = query_bounds(query, &header);
    if is_empty_range(&lower, &upper) {
        return Ok(QueryPage::default());
    }
    let mut page = QueryPage::default();
    let mut bytes = 0usize;
    let range = snapshot.items.range::<&[u8]>((as_slices(&lower), as_slices(&upper))).map_err(store_error)?;
    let partition = KeyHash::of_partition(&header);
    let runs: Vec<&Arc<Run>> = snapshot.runs.newest_first().iter().filter(|run| run.data.may_contain(partition)).collect();
    if runs.is_empty() {
        // The B-tree alone: its entries as they are.
        let mut range = range;
        let mut next = || if query.forward { range.next() } else { range.next_back() };
        while let Some(entry) = next() {
            let (key, value) = entry.map_err(store_error)?;
            if push_item(&mut page, &mut bytes, query, &header, key.value(), value.value())? {
                if next().is_some() {
                    page.last_evaluated = page.items.last().map(|item| item.key.sk.clone());
                }
                break;
            }
        }
        return Ok(page);
    }
    let mut sources: Vec<EntryIter<'_>> = vec![in_order(range, query.forward, true)];
    if let Some(shadows) = snapshot.shadows {
        let shadowed = shadows.range::<&[u8]>((as_slices(&lower), as_slices(&upper))).map_err(store_error)?;
        sources.push(in_order(shadowed, query.forward, false));
    }
    for run in runs {
        sources.push(Box::new(run.data.range(lower.clone(), upper.clone(), query.forward)));
    }
    let mut merged = Merged::new(sources, query.forward, false)?;
    while let Some(entry) = merged.next() {
        let (key, value) = entry?;
        let Some(value) = value else { continue };
        if push_item(&mut page, &mut bytes, query, &header, &key, &value)? {
            if merged.next().is_some() {
                page.last_evaluated = page.items.last().map(|item| item.key.sk.clone());
            }
            break;
        }
    }
    Ok(page)
}

type Guard<'a> = redb::AccessGuard<'a, &'static [u8]>;

/// A B-tree range as merge entries, in the query's order: items (`values`) or shadows (tombstones).
fn in_order<'a>(range: redb::Range<'a, &'static [u8], &'static [u8]>, forward: bool, values: bool) -> EntryIter<'a> {
    let entry = move |e: Result<(Guard<'_>, Guard<'_>), redb::StorageError>| {
        e.map(|(k, v)| (k.value().to_vec(), values.then(|| v.value().to_vec()))).map_err(store_error)
    };
    if forward {
        Box::new(range.map(entry))
    } else {
        Box::new(range.rev().map(entry))
    }
}

fn read_item(snapshot: &Snapshot<'_>, key: Key) -> StorageResult<Option<Item>> {
    let stored = current_value(snapshot.items, snapshot.shadows, snapshot.runs, &encode_key(&key.pk, &key.sk))?;
    match stored {
        Some(value) => Ok(Some(Item { attrs: decode_attrs(&value)?, key })),
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

    /// One redb transaction (a large batch: one run, registered in one transaction): on this
    /// adapter a batch is in fact atomic.
    async fn batch_write(&self, writes: Vec<BatchWrite>) -> StorageResult<()> {
        // `validate_batch`'s checks, with duplicates found among the sorted encoded keys (a key
        // encodes to one byte string) rather than in a hash set of the batch's keys.
        for write in &writes {
            match write {
                BatchWrite::Put(item) => validate_item(item)?,
                BatchWrite::Delete(key) => validate_key(key)?,
            }
        }
        if writes.is_empty() {
            return Ok(());
        }
        let bytes = writes.iter().map(encoded_bound).sum();
        let mut encoded = EntryBatch::with_capacity(writes.len(), bytes);
        for write in &writes {
            match write {
                BatchWrite::Put(item) => encoded.put(&item.key.pk, &item.key.sk, &item.attrs),
                BatchWrite::Delete(key) => encoded.delete(&key.pk, &key.sk),
            }
        }
        drop(writes);
        encoded.sort();
        if encoded.has_adjacent_duplicates() {
            return Err(StorageError::invalid("a batch cannot touch one item twice"));
        }
        if encoded.len() >= self.shared.policy.min_run_entries {
            return self.write_run(encoded).await;
        }
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
                Ok(answer) => match answer.await {
                    Ok((outcome, _written)) => outcome,
                    Err(_) => Err(StorageError::internal("the embedded table writer has stopped")),
                },
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

//! The commit-record protocol: how a transaction that writes more version items than one
//! `TransactWriteItems` holds (100 actions, 4 MB) still becomes visible all at once, or not at all.
//!
//! 1. **Begin.** The writer stores the list of version keys it will write, then a commit record
//!    (`t#{ds}` / `{txid}`) in state `pending`, with a deadline ([`DEADLINE`]).
//! 2. **Stage.** Its index and history entries are written first (as for every write), then
//!    every version item, each under the condition "does not exist", with the attribute
//!    `tx = txid` ([`layout::TRANSACTION_ATTR`]). An item carrying `tx` is visible only when its
//!    commit record says `committed`.
//! 3. **Decide.** If every put succeeded the record goes to `committed`, otherwise to `aborted`;
//!    either way by one put conditional on the record still being `pending`. That put is the
//!    commit point of the whole transaction: before it no reader sees any of the versions,
//!    after it every reader sees all of them.
//! 4. **Settle.** A committed transaction's items are rewritten without `tx`, an aborted one's
//!    are deleted, and the record and its version list are removed.
//!
//! Anyone who meets an item carrying `tx` settles it ([`CommitRecords::settle`]): committed →
//! visible (and rewritten without `tx`); aborted → invisible (and deleted); pending → invisible
//! to readers, and writers of that resource retry and then answer 409; pending past its deadline
//! → aborted first, so an interrupted writer never holds a resource longer than [`DEADLINE`].
//! Every large transaction first settles the datastore's records left past their deadline
//! ([`CommitRecords::recover`]), so interrupted transactions are cleaned up even when nobody
//! reads their resources again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::Duration;
use fhirlake_ports::{AttrValue, BatchWrite, Clock, Condition, Item, ItemTable, Key, Query, SkRange, StorageError, StorageResult, Write};

use crate::layout;

/// How long a transaction may stay pending before anyone may abort it. Longer than any request
/// lives (API Gateway ends requests after 29 s; Lambda functions after their timeout).
pub const DEADLINE: Duration = Duration::seconds(120);
/// Version keys per chunk of a commit record's version list (a chunk stays far below 400 KB).
const KEYS_PER_CHUNK: usize = 2000;
/// Settled transactions whose decision is remembered (decisions never change).
const DECISION_CACHE: usize = 4096;

const STATE: &str = "st";
const DEADLINE_ATTR: &str = "dl";
const CHUNKS: &str = "nc";
const VERSIONS: &str = "v";
const PENDING: &str = "pending";
const COMMITTED: &str = "committed";
const ABORTED: &str = "aborted";

/// What a version item means to the reader that found it.
#[derive(Debug)]
pub(crate) enum Settled {
    /// A committed version: the item as readers should use it.
    Visible(Item),
    /// Written by a transaction that did not commit: it does not exist.
    Hidden,
    /// Written by a transaction still deciding: invisible, and its resource is busy.
    Pending,
}

/// A transaction's decision as its commit record tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    Pending,
    Committed,
    Aborted,
    /// No record: the transaction was settled and its record removed.
    Gone,
}

/// How a large commit ended.
#[derive(Debug)]
pub(crate) enum LargeCommitError {
    /// Nothing became visible and everything staged was removed again.
    NotCommitted(StorageError),
    /// The decision could not be recorded nor read back: the transaction may have committed.
    /// Its record settles it once the deadline has passed.
    Unknown(StorageError),
}

/// Reads and writes commit records, and settles the items they decide.
#[derive(Clone)]
pub(crate) struct CommitRecords {
    table: Arc<dyn ItemTable>,
    clock: Arc<dyn Clock>,
    decided: Arc<Mutex<HashMap<(String, String), Decision>>>,
}

impl CommitRecords {
    pub(crate) fn new(table: Arc<dyn ItemTable>, clock: Arc<dyn Clock>) -> Self {
        CommitRecords { table, clock, decided: Arc::new(Mutex::new(HashMap::new())) }
    }

    /// Makes `items` (new version items, none carrying `tx`) visible all at once: begin, stage,
    /// decide and settle as the module doc describes. A lost condition is `NotCommitted` with a
    /// condition failure.
    pub(crate) async fn commit_all(&self, ds: &str, items: Vec<Item>) -> Result<(), LargeCommitError> {
        self.recover(ds).await;
        let txid = hex::encode(rand::random::<[u8; 16]>());
        let keys: Vec<Key> = items.iter().map(|i| i.key.clone()).collect();
        self.begin(ds, &txid, &keys).await.map_err(LargeCommitError::NotCommitted)?;
        let tagged: Vec<Item> = items.iter().cloned().map(|i| i.with(layout::TRANSACTION_ATTR, AttrValue::S(txid.clone()))).collect();
        let staged = self.run(tagged.into_iter().map(|item| Write::Put { item, condition: Condition::NotExists }).collect()).await;
        let failure = staged.into_iter().find_map(Result::err);
        let decided = match failure {
            None => self.decide(ds, &txid, true).await,
            Some(_) => Ok(false),
        };
        let committed = match decided {
            Ok(committed) => committed,
            // The decision's outcome is unknown: read it back, and abort if still pending.
            Err(error) => match self.decision(ds, &txid).await {
                Ok(Decision::Committed) => true,
                Ok(Decision::Pending) if self.decide(ds, &txid, false).await.is_ok() => {
                    self.finish(ds, &txid, None, keys).await;
                    return Err(LargeCommitError::NotCommitted(error));
                }
                _ => return Err(LargeCommitError::Unknown(error)),
            },
        };
        if committed {
            self.finish(ds, &txid, Some(items), keys).await;
            return Ok(());
        }
        // Lost a put, or (past the deadline) someone aborted us: nothing may stay.
        let _ = self.decide(ds, &txid, false).await;
        self.finish(ds, &txid, None, keys).await;
        Err(LargeCommitError::NotCommitted(failure.unwrap_or_else(StorageError::condition_failed)))
    }

    /// Settles the writer's own decided transaction: its `items` rewritten untagged when it
    /// committed (`Some`), else its `keys` deleted; then its record removed.
    async fn finish(&self, ds: &str, txid: &str, committed: Option<Vec<Item>>, keys: Vec<Key>) {
        let chunk_count = chunks(keys.len());
        match committed {
            Some(items) => self.roll_forward(txid, items).await,
            None => self.roll_back(txid, keys).await,
        }
        self.remove_record(ds, txid, chunk_count).await;
    }

    /// What a version item read from the table means; settles it when its transaction has been
    /// decided (see the module doc).
    pub(crate) async fn settle(&self, ds: &str, item: Item) -> StorageResult<Settled> {
        let Some(txid) = item.get_str(layout::TRANSACTION_ATTR).map(String::from) else {
            return Ok(Settled::Visible(item));
        };
        match self.decision(ds, &txid).await? {
            Decision::Committed => {
                let item = without_tag(item);
                self.roll_forward(&txid, vec![item.clone()]).await;
                Ok(Settled::Visible(item))
            }
            Decision::Aborted => {
                self.roll_back(&txid, vec![item.key]).await;
                Ok(Settled::Hidden)
            }
            Decision::Pending => Ok(Settled::Pending),
            // Settled since the item was read: the item as it is now tells.
            Decision::Gone => match self.table.get(&item.key).await? {
                None => Ok(Settled::Hidden),
                Some(now) => match now.get_str(layout::TRANSACTION_ATTR) {
                    None => Ok(Settled::Visible(now)),
                    Some(tag) if tag == txid => {
                        // A record removed by hand: its items can never be decided.
                        self.roll_back(&txid, vec![now.key]).await;
                        Ok(Settled::Hidden)
                    }
                    Some(_) => Ok(Settled::Pending),
                },
            },
        }
    }

    /// Settles the datastore's commit records whose deadline has passed: transactions whose
    /// writer was interrupted. Best effort; failures are logged and left for the next attempt.
    pub(crate) async fn recover(&self, ds: &str) {
        if let Err(error) = self.try_recover(ds).await {
            tracing::warn!(%error, "could not settle interrupted transactions");
        }
    }

    async fn try_recover(&self, ds: &str) -> StorageResult<()> {
        let now = self.clock.now().timestamp_micros();
        let mut after = None;
        loop {
            let page = self.table.query(&Query::partition(layout::commit_record_pk(ds), 100).range(SkRange::All).after(after)).await?;
            for record in page.items.iter().filter(|i| !i.key.sk.contains('#')) {
                if record.get_i64(DEADLINE_ATTR).is_some_and(|deadline| deadline > now) {
                    continue;
                }
                let txid = record.key.sk.clone();
                let chunk_count = record.get_i64(CHUNKS).and_then(|n| usize::try_from(n).ok()).unwrap_or(0);
                let keys = self.versions(ds, &txid, chunk_count).await?;
                match self.decision(ds, &txid).await? {
                    Decision::Committed => {
                        let items = self.table.batch_get(&keys).await?;
                        let tagged = items.into_iter().filter(|i| i.get_str(layout::TRANSACTION_ATTR) == Some(txid.as_str()));
                        self.roll_forward(&txid, tagged.map(without_tag).collect()).await;
                    }
                    Decision::Aborted | Decision::Gone => self.roll_back(&txid, keys).await,
                    Decision::Pending => continue,
                }
                self.remove_record(ds, &txid, chunk_count).await;
            }
            match page.last_evaluated {
                Some(last) => after = Some(last),
                None => return Ok(()),
            }
        }
    }

    async fn begin(&self, ds: &str, txid: &str, keys: &[Key]) -> StorageResult<()> {
        let lists: Vec<BatchWrite> = keys
            .chunks(KEYS_PER_CHUNK)
            .enumerate()
            .map(|(n, chunk)| {
                let lines: Vec<String> = chunk.iter().map(|k| format!("{}\n{}", k.pk, k.sk)).collect();
                BatchWrite::Put(Item::new(layout::commit_versions_key(ds, txid, n)).with(VERSIONS, AttrValue::S(lines.join("\n"))))
            })
            .collect();
        self.table.batch_write(lists).await?;
        let deadline = (self.clock.now() + DEADLINE).timestamp_micros();
        self.table.put(self.record(ds, txid, PENDING, deadline, chunks(keys.len())), Condition::NotExists).await
    }

    /// Moves a pending record to committed (`commit`) or aborted. `Ok(true)` when the record now
    /// says what was asked (by this call or an earlier one), `Ok(false)` when it says otherwise.
    async fn decide(&self, ds: &str, txid: &str, commit: bool) -> StorageResult<bool> {
        let key = layout::commit_record_key(ds, txid);
        let Some(record) = self.table.get(&key).await? else { return Ok(false) };
        let wanted = if commit { COMMITTED } else { ABORTED };
        match record.get_str(STATE) {
            Some(PENDING) => {}
            Some(state) => return Ok(state == wanted),
            None => return Err(StorageError::internal("a commit record without a state")),
        }
        let deadline = record.get_i64(DEADLINE_ATTR).unwrap_or(0);
        let chunk_count = record.get_i64(CHUNKS).and_then(|n| usize::try_from(n).ok()).unwrap_or(0);
        let decided = self.record(ds, txid, wanted, deadline, chunk_count);
        match self.table.put(decided, Condition::Equals(STATE.into(), AttrValue::S(PENDING.into()))).await {
            Ok(()) => Ok(true),
            Err(e) if e.is_condition_failure() => {
                Ok(self.decision(ds, txid).await? == if commit { Decision::Committed } else { Decision::Aborted })
            }
            Err(e) => Err(e),
        }
    }

    /// The record's decision; a pending record past its deadline is aborted first.
    async fn decision(&self, ds: &str, txid: &str) -> StorageResult<Decision> {
        let cache_key = (ds.to_string(), txid.to_string());
        if let Some(decision) = self.decided.lock().ok().and_then(|m| m.get(&cache_key).copied()) {
            return Ok(decision);
        }
        let decision = match self.table.get(&layout::commit_record_key(ds, txid)).await? {
            None => return Ok(Decision::Gone),
            Some(record) => match record.get_str(STATE) {
                Some(COMMITTED) => Decision::Committed,
                Some(ABORTED) => Decision::Aborted,
                Some(PENDING) => {
                    let expired = record.get_i64(DEADLINE_ATTR).is_none_or(|d| d <= self.clock.now().timestamp_micros());
                    if !expired {
                        return Ok(Decision::Pending);
                    }
                    if Box::pin(self.decide(ds, txid, false)).await? {
                        Decision::Aborted
                    } else {
                        return Box::pin(self.decision(ds, txid)).await;
                    }
                }
                _ => return Err(StorageError::internal("a commit record with an unknown state")),
            },
        };
        if let Ok(mut cache) = self.decided.lock() {
            if cache.len() >= DECISION_CACHE {
                cache.clear();
            }
            cache.insert(cache_key, decision);
        }
        Ok(decision)
    }

    fn record(&self, ds: &str, txid: &str, state: &str, deadline: i64, chunk_count: usize) -> Item {
        Item::new(layout::commit_record_key(ds, txid))
            .with(STATE, AttrValue::S(state.into()))
            .with(DEADLINE_ATTR, AttrValue::N(deadline))
            .with(CHUNKS, AttrValue::N(i64::try_from(chunk_count).unwrap_or(i64::MAX)))
    }

    async fn versions(&self, ds: &str, txid: &str, chunk_count: usize) -> StorageResult<Vec<Key>> {
        let mut keys = Vec::new();
        for n in 0..chunk_count {
            let Some(list) = self.table.get(&layout::commit_versions_key(ds, txid, n)).await? else { continue };
            let lines: Vec<&str> = list.get_str(VERSIONS).unwrap_or_default().split('\n').collect();
            keys.extend(lines.chunks_exact(2).map(|pair| Key::new(pair[0], pair[1])));
        }
        Ok(keys)
    }

    /// Rewrites committed items without their tag (only while they still carry it).
    async fn roll_forward(&self, txid: &str, items: Vec<Item>) {
        let ops = items.into_iter().map(|item| Write::Put { item: without_tag(item), condition: tagged_by(txid) }).collect();
        log_failures(self.run(ops).await, "could not finish a committed transaction's version");
    }

    /// Deletes an aborted transaction's items (only those it wrote).
    async fn roll_back(&self, txid: &str, keys: Vec<Key>) {
        let ops = keys.into_iter().map(|key| Write::Delete { key, condition: tagged_by(txid) }).collect();
        log_failures(self.run(ops).await, "could not remove an aborted transaction's version");
    }

    async fn remove_record(&self, ds: &str, txid: &str, chunk_count: usize) {
        let mut keys: Vec<BatchWrite> = (0..chunk_count).map(|n| BatchWrite::Delete(layout::commit_versions_key(ds, txid, n))).collect();
        keys.push(BatchWrite::Delete(layout::commit_record_key(ds, txid)));
        if let Err(error) = self.table.batch_write(keys).await {
            tracing::warn!(%error, "could not remove a settled commit record");
        }
    }

    /// Applies single-item writes together ([`ItemTable::write_each`]); their outcomes.
    async fn run(&self, ops: Vec<Write>) -> Vec<StorageResult<()>> {
        self.table.write_each(ops).await
    }
}

fn log_failures(outcomes: Vec<StorageResult<()>>, what: &str) {
    // A lost condition means someone else settled the item already.
    let failed = outcomes.iter().filter(|o| o.as_ref().is_err_and(|e| !e.is_condition_failure())).count();
    if failed > 0 {
        tracing::warn!(failed, "{what}; the commit record settles it later");
    }
}

fn chunks(keys: usize) -> usize {
    keys.div_ceil(KEYS_PER_CHUNK)
}

fn tagged_by(txid: &str) -> Condition {
    Condition::Equals(layout::TRANSACTION_ATTR.into(), AttrValue::S(txid.into()))
}

fn without_tag(mut item: Item) -> Item {
    item.attrs.remove(layout::TRANSACTION_ATTR);
    item
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::DateTime;
    use fhirlake_fhir::search::query::{parse, Handling};
    use fhirlake_ports::memory::{FixedClock, MemoryItemTable, MemoryKeyService, MemoryObjectStore};
    use fhirlake_ports::{BatchWrite, ItemTable, Query, RandomIds, SkRange};
    use serde_json::{json, Value};

    use super::*;
    use crate::datastores::{ActiveDatastore, CreateFhirDatastoreRequest};
    use crate::resources::{Method, PreparedVersion, StoredVersion};
    use crate::search::Scope;
    use crate::{Backends, CoreError, ServiceConfig, Services};

    struct Fixture {
        services: Services,
        ds: ActiveDatastore,
        table: Arc<MemoryItemTable>,
        clock: Arc<FixedClock>,
        records: CommitRecords,
    }

    async fn fixture() -> Fixture {
        let table = Arc::new(MemoryItemTable::new());
        let clock = Arc::new(FixedClock::new(DateTime::from_timestamp(1_700_000_000, 0).expect("a time")));
        let backends = Backends {
            table: table.clone(),
            objects: Arc::new(MemoryObjectStore::new()),
            keys: Arc::new(MemoryKeyService::new()),
            buckets: Arc::new(fhirlake_ports::MemoryBuckets::new()),
            clock: clock.clone(),
            ids: Arc::new(RandomIds),
        };
        let config = ServiceConfig::new("us-east-1", "123456789012", "http://localhost");
        let services = Services::new(config, backends);
        let created = services.datastores.create(CreateFhirDatastoreRequest::r4()).await.expect("a datastore");
        let ds = services.datastores.active(&created.datastore_id).await.expect("active");
        let records = CommitRecords::new(table.clone(), clock.clone());
        Fixture { services, ds, table, clock, records }
    }

    fn patient(id: &str, family: &str) -> Value {
        json!({"resourceType": "Patient", "id": id, "name": [{"family": family}]})
    }

    impl Fixture {
        /// `n` new Patients `{prefix}{i}` named `family`, and version 2 of each of `updates`.
        async fn prepare(&self, prefix: &str, n: usize, family: &str, updates: &[&StoredVersion]) -> Vec<PreparedVersion> {
            let r = &self.services.resources;
            let at = self.clock.now();
            let mut prepared = Vec::new();
            for i in 0..n {
                let id = format!("{prefix}{i}");
                prepared.push(
                    r.prepare(&self.ds, "Patient", &id, None, Method::Create, Some(patient(&id, family)), at).await.expect("prepare"),
                );
            }
            for previous in updates {
                let body = patient(&previous.id, family);
                prepared.push(
                    r.prepare(&self.ds, "Patient", &previous.id, Some(previous), Method::Update, Some(body), at).await.expect("prepare"),
                );
            }
            prepared
        }

        /// Begins and stages a large transaction as its writer would, then stops (a crash).
        async fn stage(&self, prepared: Vec<PreparedVersion>) -> String {
            let txid = "0123456789abcdef0123456789abcdef".to_string();
            let keys: Vec<Key> = prepared.iter().map(|p| p.item.key.clone()).collect();
            self.records.begin(&self.ds.id, &txid, &keys).await.expect("begin");
            let entries = prepared.iter().flat_map(|p| p.entries.iter().cloned().map(BatchWrite::Put)).collect();
            self.table.batch_write(entries).await.expect("entries");
            for p in prepared {
                let item = p.item.with(layout::TRANSACTION_ATTR, AttrValue::S(txid.clone()));
                self.table.put(item, Condition::NotExists).await.expect("stage");
            }
            txid
        }

        async fn found(&self, query: &str) -> Vec<String> {
            let params: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
            let request = parse(Some("Patient"), &params, Handling::Strict).expect("a search");
            let page = self.services.search.search(&self.ds, &request, &Scope::default(), 1000).await.expect("search");
            let mut ids: Vec<String> = page.matches.into_iter().map(|v| v.id).collect();
            ids.sort();
            ids
        }

        async fn family(&self, id: &str) -> Option<String> {
            let v = self.services.resources.read(&self.ds, "Patient", id).await.ok()?;
            let body: Value = serde_json::from_slice(v.body.as_deref()?).ok()?;
            body["name"][0]["family"].as_str().map(String::from)
        }

        async fn tagged_items(&self) -> usize {
            self.table.items().into_iter().filter(|i| i.get(layout::TRANSACTION_ATTR).is_some()).count()
        }

        async fn commit_records(&self) -> usize {
            let q = Query::partition(layout::commit_record_pk(&self.ds.id), 1000).range(SkRange::All);
            self.table.query(&q).await.expect("records").items.len()
        }

        async fn existing(&self, id: &str, family: &str) -> StoredVersion {
            self.services.resources.update(&self.ds, "Patient", id, patient(id, family), None).await.expect("put").version
        }
    }

    #[tokio::test]
    async fn a_transaction_of_250_writes_becomes_visible_at_once_and_leaves_no_record() {
        let f = fixture().await;
        let old = f.existing("old", "Before").await;
        let prepared = f.prepare("p", 249, "Many", &[&old]).await;
        let stored = f.services.resources.apply(&f.ds, prepared).await.ok().expect("committed");
        assert_eq!(stored.len(), 250);
        assert_eq!(f.found("family=many").await.len(), 250);
        assert!(f.found("family=before").await.is_empty(), "the superseded version no longer matches");
        assert_eq!(f.family("p17").await.as_deref(), Some("Many"));
        assert_eq!(f.family("old").await.as_deref(), Some("Many"));
        assert_eq!((f.tagged_items().await, f.commit_records().await), (0, 0));
    }

    #[tokio::test]
    async fn one_lost_put_aborts_every_write_of_a_large_transaction() {
        let f = fixture().await;
        let contested = f.existing("contested", "First").await;
        let prepared = f.prepare("p", 150, "Many", &[&contested]).await;
        // Another writer stores version 2 of the contested resource first.
        f.existing("contested", "Winner").await;
        let failed = f.services.resources.apply(&f.ds, prepared).await;
        assert!(failed.is_err_and(|e| e.is_condition_failure()));
        assert!(f.found("family=many").await.is_empty());
        assert_eq!(f.family("p3").await, None);
        assert_eq!(f.family("contested").await.as_deref(), Some("Winner"));
        assert_eq!((f.tagged_items().await, f.commit_records().await), (0, 0));
    }

    #[tokio::test]
    async fn an_interrupted_transaction_stays_invisible_and_frees_its_resources_after_the_deadline() {
        let f = fixture().await;
        let held = f.existing("held", "Before").await;
        let prepared = f.prepare("p", 120, "Staged", &[&held]).await;
        f.stage(prepared).await;

        // Pending: readers see the committed state only; writers of the resource are told to retry.
        assert!(f.found("family=staged").await.is_empty());
        assert_eq!(f.found("family=before").await, ["held"]);
        assert_eq!(f.family("p0").await, None);
        assert_eq!(f.family("held").await.as_deref(), Some("Before"));
        let blocked = f.services.resources.update(&f.ds, "Patient", "held", patient("held", "Other"), None).await;
        assert!(matches!(blocked, Err(CoreError::Conflict(_))), "{blocked:?}");

        // Past the deadline the first writer aborts it, and the resource is free again.
        f.clock.advance(DEADLINE + Duration::seconds(1));
        let written = f.services.resources.update(&f.ds, "Patient", "held", patient("held", "Other"), None).await.expect("free");
        assert_eq!(written.version.version, 2);
        assert_eq!(f.family("held").await.as_deref(), Some("Other"));
        assert!(f.found("family=staged").await.is_empty());
        f.records.recover(&f.ds.id).await;
        assert_eq!((f.tagged_items().await, f.commit_records().await), (0, 0));
        assert!(f.found("family=staged").await.is_empty());
    }

    #[tokio::test]
    async fn a_commit_interrupted_before_settling_is_visible_and_settled_by_recovery() {
        let f = fixture().await;
        let prepared = f.prepare("p", 130, "Committed", &[]).await;
        let txid = f.stage(prepared).await;
        assert!(f.records.decide(&f.ds.id, &txid, true).await.expect("decided"));

        // Committed: every version is visible, before anyone has settled its items.
        assert_eq!(f.found("family=committed").await.len(), 130);
        assert_eq!(f.family("p5").await.as_deref(), Some("Committed"));
        assert!(f.tagged_items().await < 130, "readers settle the items they meet");
        f.clock.advance(DEADLINE + Duration::seconds(1));
        f.records.recover(&f.ds.id).await;
        assert_eq!((f.tagged_items().await, f.commit_records().await), (0, 0));
        assert_eq!(f.found("family=committed").await.len(), 130);
        let query = crate::resources::HistoryQuery { count: 100, ..Default::default() };
        let history = f.services.resources.history(&f.ds, crate::resources::HistoryScope::Type("Patient"), &query).await;
        assert_eq!(history.expect("history").entries.len(), 100, "history sees the committed versions");
    }
}

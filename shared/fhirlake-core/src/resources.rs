//! The FHIR interactions on stored resources: create, read, vread, update, patch, delete and
//! history. Versions are immutable items; see [`crate::layout`] for the keys.
//!
//! Visibility: a write first stores its history and search index entries, tagged with a fresh
//! write token, then the version item (with the token) under the condition that it does not
//! exist. That single conditional put is the commit point: an entry counts only while its
//! version exists with its token and no later version does, so searches and history never see
//! a write that has not committed, nor one that has been superseded. The previous version's
//! entries are removed after the commit (leftovers are ignored the same way).
//!
//! Concurrency: a write reads the latest version n and creates version n+1 under the
//! condition that it does not exist yet, in one transaction with its history entries.
//! Two writers can never both create version n+1, so no update is ever lost: the loser
//! gets 412 when it sent If-Match, and otherwise retries on the new latest version.

use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use fhirlake_fhir::{outcome::Issue, patch, registry, resource as fhir_resource, validate};
use fhirlake_ports::{limits, AttrValue, BatchWrite, Condition, Item, Key, Query, SkRange, StorageError, Write, MAX_TRANSACT_ITEMS};
use serde_json::Value;

use crate::commit_record::{CommitRecords, LargeCommitError, Settled};
use crate::crypto::BodyCipher;
use crate::datastores::ActiveDatastore;
use crate::jobs::ValidationLevel;
use crate::{index, layout};
use crate::{Backends, CoreError, CoreResult};

/// Attribute of a version item naming the import line that wrote it.
pub(crate) const SOURCE_ATTR: &str = "src";
/// How many times an unconditional write retries after losing a race.
const WRITE_ATTEMPTS: u32 = 12;
/// Upper bound of the random pause before the n-th retry: 1, 2, 4, … ms, at most this.
const MAX_RETRY_PAUSE_MS: u64 = 64;
/// Largest page of history any configuration allows (the configured limit, applied by the API, is
/// usually lower: `ServiceConfig::max_page_size`).
pub const MAX_PAGE_SIZE: usize = crate::ServiceConfig::MAX_PAGE_SIZE_LIMIT;

/// The interaction that produced a version, as shown in history bundles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Created by POST with a server-assigned id.
    Create,
    /// Created by PUT: a client-assigned id, or a deleted resource brought back.
    CreateByUpdate,
    /// Replaced by PUT.
    Update,
    /// Changed by PATCH.
    Patch,
    /// Deleted.
    Delete,
}

impl Method {
    fn code(self) -> &'static str {
        match self {
            Method::Create => "create",
            Method::CreateByUpdate => "create-by-update",
            Method::Update => "update",
            Method::Patch => "patch",
            Method::Delete => "delete",
        }
    }
    fn parse(code: &str) -> Option<Self> {
        Some(match code {
            "create" => Method::Create,
            "create-by-update" => Method::CreateByUpdate,
            "update" => Method::Update,
            "patch" => Method::Patch,
            "delete" => Method::Delete,
            _ => return None,
        })
    }
    /// The HTTP verb of the interaction.
    pub fn http_verb(self) -> &'static str {
        match self {
            Method::Create => "POST",
            Method::CreateByUpdate | Method::Update => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }
}

/// One stored version of a resource.
#[derive(Debug, Clone)]
pub struct StoredVersion {
    /// Resource type.
    pub resource_type: String,
    /// Logical id.
    pub id: String,
    /// Version number, from 1.
    pub version: u64,
    /// When the version was written (`meta.lastUpdated`).
    pub last_updated: DateTime<Utc>,
    /// The interaction that wrote it.
    pub method: Method,
    /// The resource's JSON, absent for deletions.
    pub body: Option<Bytes>,
    /// The token of the write that stored this version; its history and index entries carry it.
    pub write_token: Option<String>,
    /// The import line that wrote this version (see [`crate::jobs`]), if an import did.
    pub source: Option<String>,
}

impl StoredVersion {
    /// True when this version records a deletion.
    pub fn is_deleted(&self) -> bool {
        self.body.is_none()
    }
}

/// The result of a write.
#[derive(Debug, Clone)]
pub struct WriteOutcome {
    /// The version written.
    pub version: StoredVersion,
    /// True when the write created the resource (HTTP 201) rather than replacing it.
    pub created: bool,
}

/// A patch document, by content type.
#[derive(Debug, Clone)]
pub enum PatchDocument {
    /// RFC 6902 JSON Patch (`application/json-patch+json`).
    Json(Value),
    /// FHIRPath Patch: a `Parameters` resource (`application/fhir+json`).
    FhirPath(Value),
}

/// Which history to read.
#[derive(Debug, Clone, Copy)]
pub enum HistoryScope<'a> {
    /// One resource's versions.
    Instance(&'a str, &'a str),
    /// Every version of every resource of one type.
    Type(&'a str),
    /// Every version in the datastore.
    System,
}

/// Paging and filtering of a history read.
#[derive(Debug, Clone, Default)]
pub struct HistoryQuery {
    /// Entries per page.
    pub count: usize,
    /// Only versions written at or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// The opaque cursor of a previous page's `next` link.
    pub cursor: Option<String>,
}

/// One page of history, newest first.
#[derive(Debug, Clone)]
pub struct HistoryPage {
    /// Versions, newest first.
    pub entries: Vec<StoredVersion>,
    /// Cursor of the next page, when there may be one.
    pub next_cursor: Option<String>,
    /// Number of entries in the whole history, when known cheaply.
    pub total: Option<u64>,
}

/// Stores and retrieves FHIR resources.
#[derive(Clone)]
pub struct ResourceService {
    backends: Backends,
    cipher: BodyCipher,
    records: CommitRecords,
    /// (datastore, type) pairs whose presence item this process has written.
    known_types: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<(String, String)>>>,
}

impl ResourceService {
    /// Builds the service.
    pub fn new(backends: Backends) -> Self {
        let cipher = BodyCipher::new(backends.keys.clone());
        let records = CommitRecords::new(backends.table.clone(), backends.clock.clone());
        ResourceService { backends, cipher, records, known_types: Default::default() }
    }

    /// Creates a resource with a server-assigned id (FHIR `create`).
    pub async fn create(&self, ds: &ActiveDatastore, resource_type: &str, body: Value) -> CoreResult<WriteOutcome> {
        check_type(resource_type)?;
        check_valid(resource_type, &body)?;
        let id = self.backends.ids.resource_id();
        let now = self.backends.clock.now();
        let version = self.commit(ds, resource_type, &id, None, Method::Create, Some(body), now, None).await.map_err(|e| match e {
            e if e.is_condition_failure() => CoreError::Conflict("generated id already in use".into()),
            e => e.into(),
        })?;
        Ok(WriteOutcome { version, created: true })
    }

    /// Returns the current version (FHIR `read`): `NotFound` if it never existed, `Gone` if deleted.
    pub async fn read(&self, ds: &ActiveDatastore, resource_type: &str, id: &str) -> CoreResult<StoredVersion> {
        check_type(resource_type)?;
        match self.latest(ds, resource_type, id).await? {
            None => Err(not_found(resource_type, id)),
            Some(v) if v.is_deleted() => Err(CoreError::Gone(format!("{resource_type}/{id} was deleted"))),
            Some(v) => Ok(v),
        }
    }

    /// Returns one version (FHIR `vread`): `Gone` for the version recording a deletion.
    pub async fn vread(&self, ds: &ActiveDatastore, resource_type: &str, id: &str, version: u64) -> CoreResult<StoredVersion> {
        check_type(resource_type)?;
        let item = self.backends.table.get(&layout::version_key(&ds.id, resource_type, id, version)).await?;
        let Some(item) = self.visible(ds, item).await? else {
            return Err(CoreError::NotFound(format!("{resource_type}/{id} has no version {version}")));
        };
        let v = self.decode(ds, resource_type, id, &item).await?;
        if v.is_deleted() {
            return Err(CoreError::Gone(format!("{resource_type}/{id} version {version} is a deletion")));
        }
        Ok(v)
    }

    /// Replaces a resource, creating it with the client's id if absent (FHIR `update`).
    /// `if_match` is the version the client last saw (`If-Match: W/"n"`).
    pub async fn update(
        &self,
        ds: &ActiveDatastore,
        resource_type: &str,
        id: &str,
        body: Value,
        if_match: Option<u64>,
    ) -> CoreResult<WriteOutcome> {
        check_type(resource_type)?;
        check_id(id)?;
        match body.get("id").and_then(Value::as_str) {
            None => return Err(CoreError::Invalid("the resource must have an id matching the URL".into())),
            Some(body_id) if body_id != id => {
                return Err(CoreError::Invalid("the id in the resource does not match the id in the URL".into()))
            }
            Some(_) => {}
        }
        check_valid(resource_type, &body)?;
        self.write_next(ds, resource_type, id, if_match, None, |_| Ok((Method::Update, Some(body.clone())))).await
    }

    /// An update by id checked at an import's validation level and marked with the import line
    /// that wrote it (`body` carries its id).
    pub(crate) async fn update_from_source(
        &self,
        ds: &ActiveDatastore,
        resource_type: &str,
        id: &str,
        body: Value,
        level: ValidationLevel,
        source: Option<&str>,
    ) -> CoreResult<WriteOutcome> {
        check_type(resource_type)?;
        check_id(id)?;
        check_at_level(resource_type, &body, level)?;
        self.write_next(ds, resource_type, id, None, source, |_| Ok((Method::Update, Some(body.clone())))).await
    }

    /// Applies a patch to the current version (FHIR `patch`).
    pub async fn patch(
        &self,
        ds: &ActiveDatastore,
        resource_type: &str,
        id: &str,
        document: &PatchDocument,
        if_match: Option<u64>,
    ) -> CoreResult<WriteOutcome> {
        check_type(resource_type)?;
        self.write_next(ds, resource_type, id, if_match, None, |latest| {
            let current = match latest {
                None => return Err(not_found(resource_type, id)),
                Some(v) => match &v.body {
                    None => return Err(CoreError::Gone(format!("{resource_type}/{id} was deleted"))),
                    Some(body) => {
                        serde_json::from_slice::<Value>(body).map_err(|_| CoreError::Internal("stored body is not json".into()))?
                    }
                },
            };
            let patched = apply_patch(&current, document)?;
            check_valid(resource_type, &patched)?;
            Ok((Method::Patch, Some(patched)))
        })
        .await
        .map(|mut outcome| {
            outcome.created = false;
            outcome
        })
    }

    /// Deletes a resource (FHIR `delete`), keeping its versions. Returns the version recording the
    /// deletion, or `None` when the resource was already deleted. `NotFound` if it never existed.
    pub async fn delete(
        &self,
        ds: &ActiveDatastore,
        resource_type: &str,
        id: &str,
        if_match: Option<u64>,
    ) -> CoreResult<Option<StoredVersion>> {
        check_type(resource_type)?;
        for attempt in 0..WRITE_ATTEMPTS {
            pause_before_retry(attempt).await;
            let current = self.current(ds, resource_type, id).await?;
            if current.busy {
                continue;
            }
            let Some(latest) = current.version else { return Err(not_found(resource_type, id)) };
            if let Some(expected) = if_match {
                if expected != latest.version {
                    return Err(version_mismatch(expected, latest.version));
                }
            }
            if latest.is_deleted() {
                return Ok(None);
            }
            let now = self.backends.clock.now().max(latest.last_updated + chrono::Duration::microseconds(1));
            match self.commit(ds, resource_type, id, Some(&latest), Method::Delete, None, now, None).await {
                Ok(v) => return Ok(Some(v)),
                Err(e) if e.is_condition_failure() && if_match.is_some() => {
                    return Err(CoreError::PreconditionFailed("the resource was changed concurrently".into()))
                }
                Err(e) if e.is_condition_failure() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(contention())
    }

    /// Reads one page of history, newest first.
    pub async fn history(&self, ds: &ActiveDatastore, scope: HistoryScope<'_>, query: &HistoryQuery) -> CoreResult<HistoryPage> {
        let count = query.count.clamp(1, MAX_PAGE_SIZE);
        match scope {
            HistoryScope::Instance(resource_type, id) => self.instance_history(ds, resource_type, id, count, query).await,
            HistoryScope::Type(resource_type) => {
                check_type(resource_type)?;
                let pks = (0..layout::HISTORY_SHARDS).map(|s| layout::type_history_pk(&ds.id, resource_type, s)).collect();
                self.merged_history(ds, pks, count, query).await
            }
            HistoryScope::System => {
                let pks = (0..layout::HISTORY_SHARDS).map(|s| layout::system_history_pk(&ds.id, s)).collect();
                self.merged_history(ds, pks, count, query).await
            }
        }
    }

    async fn instance_history(
        &self,
        ds: &ActiveDatastore,
        resource_type: &str,
        id: &str,
        count: usize,
        query: &HistoryQuery,
    ) -> CoreResult<HistoryPage> {
        check_type(resource_type)?;
        let start_after = match &query.cursor {
            None => None,
            Some(c) => Some(layout::version_sk(c.parse::<u64>().map_err(|_| CoreError::Invalid("invalid page cursor".into()))?)),
        };
        let q = Query::partition(layout::resource_pk(&ds.id, resource_type, id), count + 1)
            .range(SkRange::Prefix(layout::VERSION_PREFIX.into()))
            .backward()
            .after(start_after);
        let page = self.backends.table.query(&q).await?;
        if page.items.is_empty() && query.cursor.is_none() {
            return Err(not_found(resource_type, id));
        }
        let mut entries = Vec::with_capacity(count);
        let mut exhausted = true;
        let mut total = None;
        for item in page.items {
            let Some(item) = self.visible(ds, Some(item)).await? else { continue };
            let v = self.decode(ds, resource_type, id, &item).await?;
            total = total.or(Some(v.version));
            if query.since.is_some_and(|since| v.last_updated < since) {
                break;
            }
            if entries.len() == count {
                exhausted = false;
                break;
            }
            entries.push(v);
        }
        let next_cursor = if exhausted { None } else { entries.last().map(|v| v.version.to_string()) };
        let total = if query.since.is_none() && query.cursor.is_none() { total } else { None };
        Ok(HistoryPage { entries, next_cursor, total })
    }

    async fn merged_history(&self, ds: &ActiveDatastore, pks: Vec<String>, count: usize, query: &HistoryQuery) -> CoreResult<HistoryPage> {
        if let Some(cursor) = &query.cursor {
            if layout::parse_history_sk(cursor).is_none() {
                return Err(CoreError::Invalid("invalid page cursor".into()));
            }
        }
        let range = match query.since {
            Some(since) => SkRange::AtLeast(layout::history_sk_floor(since.timestamp_micros())),
            None => SkRange::All,
        };
        let mut keys: Vec<String> = Vec::new();
        let mut more = false;
        for pk in pks {
            let q = Query::partition(pk, count + 1).range(range.clone()).backward().after(query.cursor.clone());
            let page = self.backends.table.query(&q).await?;
            more |= page.items.len() > count || page.last_evaluated.is_some() && page.items.len() == count + 1;
            keys.extend(page.items.into_iter().map(|i| i.key.sk));
        }
        keys.sort_unstable_by(|a, b| b.cmp(a));
        if keys.len() > count {
            more = true;
            keys.truncate(count);
        }
        let wanted: Vec<layout::HistoryKey<'_>> = keys.iter().filter_map(|sk| layout::parse_history_sk(sk)).collect();
        let mut items: std::collections::HashMap<Key, Item> = std::collections::HashMap::with_capacity(wanted.len());
        for chunk in wanted.chunks(100) {
            let chunk_keys: Vec<Key> = chunk.iter().map(|h| layout::version_key(&ds.id, h.resource_type, h.id, h.version)).collect();
            items.extend(self.backends.table.batch_get(&chunk_keys).await?.into_iter().map(|i| (i.key.clone(), i)));
        }
        let mut entries = Vec::with_capacity(wanted.len());
        for h in &wanted {
            // An entry whose version is missing, or was stored by another write, belongs to a
            // write that did not commit: it is not history.
            let key = layout::version_key(&ds.id, h.resource_type, h.id, h.version);
            let Some(item) = items.remove(&key).filter(|i| index::stored_by(i, h.token)) else { continue };
            let Some(item) = self.visible(ds, Some(item)).await? else { continue };
            entries.push(self.decode(ds, h.resource_type, h.id, &item).await?);
        }
        let next_cursor = if more { keys.last().cloned() } else { None };
        Ok(HistoryPage { entries, next_cursor, total: None })
    }

    /// Reads the latest committed version, or `None` if the resource never existed.
    pub(crate) async fn latest(&self, ds: &ActiveDatastore, resource_type: &str, id: &str) -> CoreResult<Option<StoredVersion>> {
        Ok(self.current(ds, resource_type, id).await?.version)
    }

    /// The latest committed version, and whether a transaction is writing the resource now.
    pub(crate) async fn current(&self, ds: &ActiveDatastore, resource_type: &str, id: &str) -> CoreResult<Current> {
        let mut current = Current { version: None, busy: false };
        if !fhir_resource::is_valid_id(id) {
            return Ok(current);
        }
        let mut after = None;
        loop {
            let q = Query::partition(layout::resource_pk(&ds.id, resource_type, id), 1)
                .range(SkRange::Prefix(layout::VERSION_PREFIX.into()))
                .backward()
                .after(after);
            let Some(item) = self.backends.table.query(&q).await?.items.into_iter().next() else { return Ok(current) };
            after = Some(item.key.sk.clone());
            match self.records.settle(&ds.id, item).await? {
                Settled::Visible(item) => {
                    current.version = Some(self.decode(ds, resource_type, id, &item).await?);
                    return Ok(current);
                }
                Settled::Pending => current.busy = true,
                Settled::Hidden => {}
            }
        }
    }

    /// The item, if it is a committed version (see [`crate::commit_record`]).
    pub(crate) async fn visible(&self, ds: &ActiveDatastore, item: Option<Item>) -> CoreResult<Option<Item>> {
        match item {
            None => Ok(None),
            Some(item) => match self.records.settle(&ds.id, item).await? {
                Settled::Visible(item) => Ok(Some(item)),
                Settled::Hidden | Settled::Pending => Ok(None),
            },
        }
    }

    /// The shared write loop of update and patch: read the latest version, let `next` decide the
    /// new content, and commit version n+1; retry on a lost race unless the client sent If-Match.
    async fn write_next<F>(
        &self,
        ds: &ActiveDatastore,
        resource_type: &str,
        id: &str,
        if_match: Option<u64>,
        source: Option<&str>,
        mut next: F,
    ) -> CoreResult<WriteOutcome>
    where
        F: FnMut(Option<&StoredVersion>) -> CoreResult<(Method, Option<Value>)>,
    {
        for attempt in 0..WRITE_ATTEMPTS {
            pause_before_retry(attempt).await;
            let current = self.current(ds, resource_type, id).await?;
            if current.busy {
                continue;
            }
            let latest = current.version;
            if let Some(expected) = if_match {
                match &latest {
                    Some(v) if v.version == expected => {}
                    Some(v) => return Err(version_mismatch(expected, v.version)),
                    None => return Err(CoreError::PreconditionFailed(format!("{resource_type}/{id} does not exist"))),
                }
            }
            let (method, body) = next(latest.as_ref())?;
            let live = latest.as_ref().is_some_and(|v| !v.is_deleted());
            let method = if !live && method == Method::Update { Method::CreateByUpdate } else { method };
            let mut now = self.backends.clock.now();
            if let Some(prev) = &latest {
                now = now.max(prev.last_updated + chrono::Duration::microseconds(1));
            }
            match self.commit(ds, resource_type, id, latest.as_ref(), method, body, now, source).await {
                Ok(version) => return Ok(WriteOutcome { version, created: !live }),
                Err(e) if e.is_condition_failure() && if_match.is_some() => {
                    return Err(CoreError::PreconditionFailed("the resource was changed concurrently".into()))
                }
                Err(e) if e.is_condition_failure() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(contention())
    }

    /// Writes version `previous + 1` with its history and index entries, if no such version
    /// exists yet (see the module doc for the order of the writes), marked with the import line
    /// that wrote it when there is one.
    #[allow(clippy::too_many_arguments)]
    async fn commit(
        &self,
        ds: &ActiveDatastore,
        resource_type: &str,
        id: &str,
        previous: Option<&StoredVersion>,
        method: Method,
        body: Option<Value>,
        at: DateTime<Utc>,
        source: Option<&str>,
    ) -> Result<StoredVersion, CommitError> {
        let mut prepared = self.prepare(ds, resource_type, id, previous, method, body, at).await?;
        if let Some(source) = source {
            prepared.mark_source(source);
        }
        let mut stored = self.apply(ds, vec![prepared]).await?;
        stored.pop().ok_or_else(|| CommitError::Core(CoreError::Internal("a commit stored nothing".into())))
    }

    /// Builds version `previous + 1`: its item (body sealed; a large body already stored as an
    /// object), and its history and index entries. Nothing is visible until [`Self::apply`].
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn prepare(
        &self,
        ds: &ActiveDatastore,
        resource_type: &str,
        id: &str,
        previous: Option<&StoredVersion>,
        method: Method,
        body: Option<Value>,
        at: DateTime<Utc>,
    ) -> CoreResult<PreparedVersion> {
        let version = previous.map_or(0, |p| p.version) + 1;
        let token = write_token(&self.backends.ids.hex32());
        let key = layout::version_key(&ds.id, resource_type, id, version);
        let mut item = Item::new(key)
            .with("ts", AttrValue::N(at.timestamp_micros()))
            .with("op", AttrValue::S(method.code().into()))
            .with(index::WRITE_TOKEN_ATTR, AttrValue::S(token.clone()));
        let index_key = self.cipher.index_key(ds).await?;
        let mut entries: Vec<Item> =
            history_keys(&ds.id, resource_type, id, version, at.timestamp_micros(), &token).into_iter().map(Item::new).collect();
        let mut body_object = None;
        let json = match body {
            None => {
                item = item.with("del", AttrValue::Bool(true));
                None
            }
            Some(mut body) => {
                fhir_resource::stamp(&mut body, id, version, at);
                entries.extend(index::entries(&index_key, &ds.id, resource_type, id, version, &token, &body));
                let json = Bytes::from(serde_json::to_vec(&body).map_err(|_| CoreError::Internal("serialising a resource failed".into()))?);
                let sealed = self.cipher.seal(ds, &layout::body_aad(&ds.id, resource_type, id, version), &json).await?;
                if sealed.len() > layout::INLINE_BODY_LIMIT {
                    // A unique suffix: a writer that loses the race for this version must never
                    // overwrite the winner's body object.
                    let object_key = format!("{}-{token}", layout::body_object_key(&ds.id, resource_type, id, version));
                    self.backends.objects.put(&object_key, Bytes::from(sealed)).await?;
                    item = item.with("bref", AttrValue::S(object_key.clone()));
                    body_object = Some(object_key);
                } else {
                    item = item.with("body", AttrValue::B(sealed));
                }
                Some(json)
            }
        };
        let stored = StoredVersion {
            resource_type: resource_type.into(),
            id: id.into(),
            version,
            last_updated: at,
            method,
            body: json,
            write_token: Some(token),
            source: None,
        };
        Ok(PreparedVersion { item, entries, body_object, stored, previous: previous.cloned() })
    }

    /// Makes prepared versions visible, all or none: their entries first, then every version
    /// item under the condition that it does not exist: one put for a single version, one
    /// `TransactWriteItems` for up to 100 (and 4 MB), and the commit-record protocol
    /// ([`crate::commit_record`]) beyond. On failure what was written is removed again; on
    /// success the superseded versions' index entries are retired.
    ///
    /// Errors: a condition failure (`ConditionFailed`, or `TransactionCanceled` naming the
    /// versions that already exist).
    pub(crate) async fn apply(&self, ds: &ActiveDatastore, mut prepared: Vec<PreparedVersion>) -> Result<Vec<StoredVersion>, CommitError> {
        self.store_entries(ds, &mut prepared.iter_mut().collect::<Vec<_>>()).await?;
        let mut items: Vec<Item> = prepared
            .iter_mut()
            .map(|p| {
                let stub = Item::new(p.item.key.clone());
                std::mem::replace(&mut p.item, stub)
            })
            .collect();
        let written = if items.len() == 1 {
            match items.pop() {
                Some(item) => self.backends.table.put(item, Condition::NotExists).await,
                None => Ok(()),
            }
        } else if fits_one_transaction(&items) {
            self.backends
                .table
                .transact_write(items.into_iter().map(|item| Write::Put { item, condition: Condition::NotExists }).collect())
                .await
        } else {
            match self.records.commit_all(&ds.id, items).await {
                Ok(()) => Ok(()),
                Err(LargeCommitError::NotCommitted(e)) => Err(e),
                // The entries may belong to committed versions: they must stay.
                Err(LargeCommitError::Unknown(e)) => return Err(CommitError::Storage(e)),
            }
        };
        if let Err(e) = written {
            self.discard(ds, &prepared.iter().collect::<Vec<_>>()).await;
            return Err(CommitError::Storage(e));
        }
        let superseded: Vec<&StoredVersion> = prepared.iter().filter_map(|p| p.previous.as_ref()).collect();
        if !superseded.is_empty() {
            self.retire_entries(ds, &superseded).await;
        }
        Ok(prepared.into_iter().map(|p| p.stored).collect())
    }

    /// The first step of every commit: records the versions' types, then writes their history
    /// and index entries (removed again if that fails). Nothing is visible yet.
    ///
    /// The entries move into the batch (a bulk write's entries are most of its memory); a version
    /// that does not commit has their keys worked out again ([`Self::discard`]).
    pub(crate) async fn store_entries(&self, ds: &ActiveDatastore, prepared: &mut [&mut PreparedVersion]) -> Result<(), CommitError> {
        self.record_types(ds, prepared.iter().map(|p| p.stored.resource_type.as_str())).await?;
        let mut batch = Vec::with_capacity(prepared.iter().map(|p| p.entries.len()).sum());
        for p in prepared.iter_mut() {
            batch.extend(std::mem::take(&mut p.entries).into_iter().map(BatchWrite::Put));
        }
        if let Err(error) = self.backends.table.batch_write(batch).await {
            let written: Vec<&PreparedVersion> = prepared.iter().map(|p| &**p).collect();
            self.discard(ds, &written).await;
            return Err(CommitError::Storage(error));
        }
        Ok(())
    }

    /// Records, once per process and type, that the datastore holds resources of these types
    /// (the items system-level searches start from); before any version of them can exist.
    pub(crate) async fn record_types<'a>(&self, ds: &ActiveDatastore, types: impl Iterator<Item = &'a str>) -> CoreResult<()> {
        let new: std::collections::BTreeSet<String> = match self.known_types.lock() {
            Ok(known) => types.filter(|t| !known.contains(&(ds.id.clone(), (*t).to_string()))).map(String::from).collect(),
            Err(_) => types.map(String::from).collect(),
        };
        if new.is_empty() {
            return Ok(());
        }
        let puts = new.iter().map(|t| BatchWrite::Put(Item::new(layout::type_presence_key(&ds.id, t)))).collect();
        self.backends.table.batch_write(puts).await?;
        if let Ok(mut known) = self.known_types.lock() {
            known.extend(new.into_iter().map(|t| (ds.id.clone(), t)));
        }
        Ok(())
    }

    /// The resource types the datastore has ever held (a superset of those it holds now).
    pub(crate) async fn stored_types(&self, ds: &ActiveDatastore) -> CoreResult<Vec<String>> {
        let mut query = Query::partition(layout::type_presence_pk(&ds.id), 1000);
        let mut types = Vec::new();
        loop {
            let page = self.backends.table.query(&query).await?;
            types.extend(page.items.into_iter().map(|i| i.key.sk));
            match page.last_evaluated {
                Some(last) => query.start_after = Some(last),
                None => return Ok(types),
            }
        }
    }

    /// Removes what failed writes left: their history and index entries (their keys worked out
    /// again from each version) and body objects. Best effort: anything left is never visible
    /// (its version item does not exist with its token).
    pub(crate) async fn discard(&self, ds: &ActiveDatastore, failed: &[&PreparedVersion]) {
        let index_key = match self.cipher.index_key(ds).await {
            Ok(index_key) => Some(index_key),
            Err(error) => {
                tracing::warn!(%error, "could not work out the index entries of a failed write; they stay, invisible");
                None
            }
        };
        let mut keys = Vec::new();
        for p in failed {
            let v = &p.stored;
            let Some(token) = &v.write_token else { continue };
            keys.extend(history_keys(&ds.id, &v.resource_type, &v.id, v.version, v.last_updated.timestamp_micros(), token));
            if let Some(index_key) = &index_key {
                keys.extend(index_keys(index_key, &ds.id, v));
            }
        }
        if let Err(error) = self.backends.table.batch_write(keys.into_iter().map(BatchWrite::Delete).collect()).await {
            tracing::warn!(%error, "could not remove the entries of a failed write");
        }
        for object_key in failed.iter().filter_map(|p| p.body_object.as_ref()) {
            if let Err(error) = self.backends.objects.delete(object_key).await {
                tracing::warn!(%error, "could not remove the body object of a failed write");
            }
        }
    }

    /// Deletes the index entries of versions that have just been superseded, in one batch.
    /// Best effort: entries of a superseded version are never visible, only wasted space.
    pub(crate) async fn retire_entries(&self, ds: &ActiveDatastore, superseded: &[&StoredVersion]) {
        let Ok(index_key) = self.cipher.index_key(ds).await else { return };
        let old: Vec<Key> = superseded.iter().flat_map(|previous| index_keys(&index_key, &ds.id, previous)).collect();
        if old.is_empty() {
            return;
        }
        if let Err(error) = self.backends.table.batch_write(old.into_iter().map(BatchWrite::Delete).collect()).await {
            tracing::warn!(%error, "could not remove the index entries of superseded versions");
        }
    }

    /// The adapters.
    pub(crate) fn backends(&self) -> &Backends {
        &self.backends
    }

    /// The datastore's blind-index key (for searches).
    pub(crate) async fn index_key(&self, ds: &ActiveDatastore) -> CoreResult<crate::crypto::IndexKey> {
        self.cipher.index_key(ds).await
    }

    /// Opens a resource version item read from the table by any means (a query, a batch get, a
    /// change-stream image): checks that its key names a version of a resource of `ds`, then
    /// decodes its attributes and opens its sealed body (inline, or from the object store). This
    /// is the one implementation of opening a stored version; every read goes through it.
    ///
    /// Errors: `Invalid` when the item is not a version item of `ds`; `Internal` for a malformed
    /// item or a body that fails authentication (corrupted or moved); `Storage` when the body
    /// object or the data key cannot be read (`NotFound` for a missing body object, `Invalid`
    /// for a data key that does not unwrap).
    pub async fn open_version_item(&self, ds: &ActiveDatastore, item: &Item) -> CoreResult<StoredVersion> {
        let Some(key) = layout::parse_version_key(&item.key) else {
            return Err(CoreError::Invalid("the item is not a resource version".into()));
        };
        if key.datastore_id != ds.id {
            return Err(CoreError::Invalid("the item belongs to another datastore".into()));
        }
        self.decode(ds, key.resource_type, key.id, item).await
    }

    async fn decode(&self, ds: &ActiveDatastore, resource_type: &str, id: &str, item: &Item) -> CoreResult<StoredVersion> {
        let version = layout::parse_version_sk(&item.key.sk).ok_or_else(|| CoreError::Internal("malformed version key".into()))?;
        let micros = item.get_i64("ts").ok_or_else(|| CoreError::Internal("version without timestamp".into()))?;
        let last_updated = Utc.timestamp_micros(micros).single().ok_or_else(|| CoreError::Internal("bad version timestamp".into()))?;
        let method = item.get_str("op").and_then(Method::parse).ok_or_else(|| CoreError::Internal("version without method".into()))?;
        let body = if item.get_bool("del") == Some(true) {
            None
        } else {
            let sealed = match (item.get_bytes("body"), item.get_str("bref")) {
                (Some(sealed), _) => Bytes::copy_from_slice(sealed),
                (None, Some(object_key)) => self.backends.objects.get(object_key).await?,
                (None, None) => return Err(CoreError::Internal("version without body".into())),
            };
            let json = self.cipher.open(ds, &layout::body_aad(&ds.id, resource_type, id, version), &sealed).await?;
            Some(Bytes::from(json))
        };
        let write_token = item.get_str(index::WRITE_TOKEN_ATTR).map(String::from);
        let source = item.get_str(SOURCE_ATTR).map(String::from);
        Ok(StoredVersion { resource_type: resource_type.into(), id: id.into(), version, last_updated, method, body, write_token, source })
    }
}

/// The keys of a version's two history entries (type and system level).
fn history_keys(ds: &str, resource_type: &str, id: &str, version: u64, micros: i64, token: &str) -> [Key; 2] {
    let shard = layout::history_shard(id);
    let sk = layout::history_sk(micros, resource_type, id, version, token);
    [Key::new(layout::type_history_pk(ds, resource_type, shard), sk.clone()), Key::new(layout::system_history_pk(ds, shard), sk)]
}

/// The keys of the index entries a stored version was written with (none for a deletion).
fn index_keys(index_key: &crate::crypto::IndexKey, ds: &str, version: &StoredVersion) -> Vec<Key> {
    let (Some(body), Some(token)) = (&version.body, &version.write_token) else { return Vec::new() };
    let Ok(resource) = serde_json::from_slice::<Value>(body) else { return Vec::new() };
    index::entries(index_key, ds, &version.resource_type, &version.id, version.version, token, &resource)
        .into_iter()
        .map(|e| e.key)
        .collect()
}

/// Whether the version items fit one `TransactWriteItems` (100 actions, 4 MB with headroom for
/// the request's own encoding).
fn fits_one_transaction(items: &[Item]) -> bool {
    items.len() <= MAX_TRANSACT_ITEMS && items.iter().map(Item::size).sum::<usize>() <= limits::MAX_TRANSACTION_BYTES * 7 / 8
}

/// A resource's latest committed version, and whether a transaction is writing it.
pub(crate) struct Current {
    /// The latest committed version, `None` if the resource never existed.
    pub(crate) version: Option<StoredVersion>,
    /// A transaction that has not decided yet has written a newer version.
    pub(crate) busy: bool,
}

/// A version ready to be made visible by [`ResourceService::apply`].
pub(crate) struct PreparedVersion {
    pub(crate) item: Item,
    /// The history and index entries, until [`ResourceService::store_entries`] writes them.
    pub(crate) entries: Vec<Item>,
    pub(crate) body_object: Option<String>,
    pub(crate) stored: StoredVersion,
    pub(crate) previous: Option<StoredVersion>,
}

impl PreparedVersion {
    /// Records on the version which import line writes it.
    pub(crate) fn mark_source(&mut self, source: &str) {
        self.item.attrs.insert(SOURCE_ATTR.to_string(), AttrValue::S(source.to_string()));
        self.stored.source = Some(source.to_string());
    }
}

/// A commit either lost its condition (retryable) or failed otherwise.
pub(crate) enum CommitError {
    Storage(StorageError),
    Core(CoreError),
}

impl CommitError {
    pub(crate) fn is_condition_failure(&self) -> bool {
        matches!(self, CommitError::Storage(e) if e.is_condition_failure())
    }
}

impl From<CoreError> for CommitError {
    fn from(e: CoreError) -> Self {
        CommitError::Core(e)
    }
}

impl From<CommitError> for CoreError {
    fn from(e: CommitError) -> Self {
        match e {
            CommitError::Storage(e) => CoreError::Storage(e),
            CommitError::Core(e) => e,
        }
    }
}

pub(crate) fn check_type(resource_type: &str) -> CoreResult<()> {
    if registry::is_resource_type(resource_type) {
        Ok(())
    } else {
        Err(CoreError::NotFound(format!("unknown resource type {resource_type}")))
    }
}

pub(crate) fn check_id(id: &str) -> CoreResult<()> {
    if fhir_resource::is_valid_id(id) {
        Ok(())
    } else {
        Err(CoreError::Invalid("the id is not a valid FHIR id".into()))
    }
}

pub(crate) fn check_valid(resource_type: &str, body: &Value) -> CoreResult<()> {
    validate::validate_resource(Some(resource_type), body).map_err(CoreError::InvalidResource)
}

/// The checks of an import's validation level (`strict` is [`check_valid`]).
pub(crate) fn check_at_level(resource_type: &str, body: &Value, level: ValidationLevel) -> CoreResult<()> {
    match level {
        ValidationLevel::Strict => check_valid(resource_type, body),
        ValidationLevel::StructureOnly => match validate::validate_resource(Some(resource_type), body) {
            Ok(()) => Ok(()),
            Err(issues) => {
                let structural: Vec<Issue> = issues.into_iter().filter(|i| i.code != "code-invalid").collect();
                if structural.is_empty() {
                    Ok(())
                } else {
                    Err(CoreError::InvalidResource(structural))
                }
            }
        },
        ValidationLevel::Minimal if body.is_object() => Ok(()),
        ValidationLevel::Minimal => Err(CoreError::Invalid("a resource must be a JSON object".into())),
    }
}

pub(crate) fn not_found(resource_type: &str, id: &str) -> CoreError {
    CoreError::NotFound(format!("{resource_type}/{id} is not known"))
}

pub(crate) fn version_mismatch(expected: u64, current: u64) -> CoreError {
    CoreError::PreconditionFailed(format!("version {expected} is not the current version {current}"))
}

/// Before a retry after a lost race, waits a random time (full jitter, doubling up to
/// [`MAX_RETRY_PAUSE_MS`]), so writers contending for one resource spread out instead of
/// colliding again. No pause before the first attempt.
pub(crate) async fn pause_before_retry(attempt: u32) {
    if attempt == 0 {
        return;
    }
    let ceiling = (1u64 << attempt.min(6)).min(MAX_RETRY_PAUSE_MS);
    let pause = rand::Rng::gen_range(&mut rand::thread_rng(), 0..=ceiling * 1000);
    tokio::time::sleep(std::time::Duration::from_micros(pause)).await;
}

/// A write token: 64 random bits as 16 hex digits, from the id source's randomness.
pub(crate) fn write_token(hex32: &str) -> String {
    hex32.chars().take(16).collect()
}

fn contention() -> CoreError {
    CoreError::Conflict("too many concurrent writers on this resource, retry".into())
}

/// The resource after the patch document is applied (not yet validated).
/// The result of applying `document` to `current`, without writing it.
pub fn apply_patch(current: &Value, document: &PatchDocument) -> CoreResult<Value> {
    match document {
        PatchDocument::Json(doc) => patch::apply_json_patch(current, doc),
        PatchDocument::FhirPath(doc) => patch::apply_fhirpath_patch(current, doc),
    }
    .map_err(patch_error)
}

fn patch_error(e: patch::PatchError) -> CoreError {
    let message = e.to_string();
    match e {
        patch::PatchError::Malformed(_) => CoreError::InvalidResource(vec![Issue::error("invalid", message)]),
        patch::PatchError::TestFailed(_) | patch::PatchError::Unprocessable(_) => CoreError::Unprocessable(message),
    }
}

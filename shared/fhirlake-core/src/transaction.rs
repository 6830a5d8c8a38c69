//! Transaction Bundles (R4 http.html#transaction): every write of the bundle becomes visible
//! at once, or none does.
//!
//! 1. Conditional targets are resolved by search (`If-None-Exist`, `PUT/PATCH/DELETE Type?…`),
//!    POSTs get their ids, and no two writes may touch one resource.
//! 2. `urn:uuid:`/`urn:oid:` placeholders and conditional references (`Patient?identifier=…`,
//!    exactly one match each) are rewritten in every resource.
//! 3. Each write is checked (`ifMatch`, validation, patches applied) and prepared as its next
//!    version, timestamped with one instant for the whole bundle.
//! 4. All versions are made visible by [`ResourceService::apply`]: their index and history
//!    entries first, then every version item in one conditional `TransactWriteItems`. If another
//!    writer changed one of the resources meanwhile, nothing becomes visible and the
//!    transaction fails with 409.
//!
//! Reads (GET entries) are not executed here: they run after the commit, like any request.

use std::collections::HashMap;

use chrono::Duration;
use fhirlake_fhir::outcome::Issue;
use fhirlake_fhir::search::query;
use fhirlake_fhir::transaction::{self, references, Body, EntryRequest, Method, RequestBundle, Target};
use serde_json::Value;

use crate::datastores::ActiveDatastore;
use crate::resources::{self, Method as Interaction, PatchDocument, ResourceService, StoredVersion};
use crate::search::SearchService;
use crate::{Backends, CoreError, CoreResult};

/// What a write entry of a committed transaction did.
#[derive(Debug, Clone)]
pub enum EntryResult {
    /// A version was written; `created` when the resource is new (201).
    Written {
        /// The version written.
        version: StoredVersion,
        /// True for a new resource.
        created: bool,
    },
    /// A conditional create matched an existing resource (200, nothing written).
    Exists(StoredVersion),
    /// A delete: the version recording it, or `None` when there was nothing to delete.
    Deleted(Option<StoredVersion>),
}

/// Executes the writes of transaction Bundles.
#[derive(Clone)]
pub struct TransactionService {
    backends: Backends,
    resources: ResourceService,
    search: SearchService,
}

/// A write entry once its target is known.
struct Resolved<'a> {
    request: &'a EntryRequest,
    resource_type: String,
    /// The target id; `None` for a conditional delete that matched nothing.
    id: Option<String>,
    /// Set when a conditional create matched: nothing is written.
    exists: Option<StoredVersion>,
}

impl TransactionService {
    /// Builds the service.
    pub fn new(backends: Backends, resources: ResourceService, search: SearchService) -> Self {
        TransactionService { backends, resources, search }
    }

    /// Commits the write entries (DELETE, POST, PUT, PATCH) of a parsed transaction, all or
    /// none, and returns what each did, by entry index.
    ///
    /// Errors: `InvalidResource` (400) for entries that conflict or fail validation, with
    /// issues locating them; `PreconditionFailed` (412) for an `ifMatch` that fails or criteria
    /// matching several resources; `NotFound` for a missing target; `Conflict` (409) when
    /// another writer changed a resource of the transaction while it ran.
    pub async fn commit(&self, ds: &ActiveDatastore, bundle: &RequestBundle) -> CoreResult<HashMap<usize, EntryResult>> {
        let order = bundle.processing_order();
        let writes: Vec<&EntryRequest> =
            order.iter().filter_map(|&i| bundle.entries[i].request()).filter(|r| r.method.is_write()).collect();
        let mut resolved = Vec::with_capacity(writes.len());
        for request in writes {
            resolved.push(self.resolve(ds, request).await.map_err(|e| at_entry(e, request.index))?);
        }
        let identities: Vec<(usize, String)> = resolved
            .iter()
            .filter(|r| r.exists.is_none() && r.request.method != Method::Post)
            .filter_map(|r| r.id.as_ref().map(|id| (r.request.index, format!("{}/{id}", r.resource_type))))
            .collect();
        let overlaps = transaction::identity_overlaps(identities.iter().map(|(i, s)| (*i, s.as_str())));
        if !overlaps.is_empty() {
            return Err(CoreError::InvalidResource(overlaps));
        }

        // Placeholders and conditional references, rewritten in every body.
        let assigned: HashMap<usize, String> = resolved
            .iter()
            .filter_map(|r| {
                let id = r.exists.as_ref().map(|v| v.id.clone()).or_else(|| r.id.clone())?;
                Some((r.request.index, format!("{}/{id}", r.resource_type)))
            })
            .collect();
        let mut map = bundle.identity_map(&assigned);
        for r in &resolved {
            if let Body::Resource(body) = &r.request.body {
                for reference in references::conditional_references(body) {
                    if map.contains_key(&reference) {
                        continue;
                    }
                    let target = self.conditional_reference(ds, &reference).await.map_err(|e| at_entry(e, r.request.index))?;
                    map.insert(reference, target);
                }
            }
        }

        let now = self.backends.clock.now();
        let mut prepared = Vec::new();
        let mut results = HashMap::new();
        let mut planned: Vec<(usize, bool)> = Vec::new();
        for r in &resolved {
            let index = r.request.index;
            if let Some(existing) = &r.exists {
                results.insert(index, EntryResult::Exists(existing.clone()));
                continue;
            }
            let Some(id) = &r.id else {
                results.insert(index, EntryResult::Deleted(None));
                continue;
            };
            let step = self.plan_write(ds, r, id, &map).await.map_err(|e| at_entry(e, index))?;
            let Some((previous, method, body)) = step else {
                results.insert(index, EntryResult::Deleted(None));
                continue;
            };
            let at = previous.as_ref().map_or(now, |p| now.max(p.last_updated + Duration::microseconds(1)));
            let created = previous.as_ref().is_none_or(StoredVersion::is_deleted) && method != Interaction::Delete;
            prepared.push(self.resources.prepare(ds, &r.resource_type, id, previous.as_ref(), method, body, at).await?);
            planned.push((index, created));
        }
        if prepared.is_empty() {
            return Ok(results);
        }
        let stored = self.resources.apply(ds, prepared).await.map_err(|e| {
            if e.is_condition_failure() {
                CoreError::Conflict("a resource of the transaction was changed concurrently; nothing was written, retry".into())
            } else {
                e.into()
            }
        })?;
        for ((index, created), version) in planned.into_iter().zip(stored) {
            let result = if version.method == Interaction::Delete {
                EntryResult::Deleted(Some(version))
            } else {
                EntryResult::Written { version, created }
            };
            results.insert(index, result);
        }
        Ok(results)
    }

    /// The target of a write entry.
    async fn resolve<'a>(&self, ds: &ActiveDatastore, request: &'a EntryRequest) -> CoreResult<Resolved<'a>> {
        let resolved =
            |resource_type: &str, id: Option<String>, exists| Resolved { request, resource_type: resource_type.to_string(), id, exists };
        match (&request.method, &request.target) {
            (Method::Post, Target::Type { resource_type }) => match &request.if_none_exist {
                Some(query) => match self.one_match(ds, resource_type, query).await? {
                    Some(existing) => Ok(resolved(resource_type, None, Some(existing))),
                    None => Ok(resolved(resource_type, Some(self.backends.ids.resource_id()), None)),
                },
                None => Ok(resolved(resource_type, Some(self.backends.ids.resource_id()), None)),
            },
            (_, Target::Instance { resource_type, id }) => Ok(resolved(resource_type, Some(id.clone()), None)),
            (method, Target::Conditional { resource_type, query }) => {
                let found = self.one_match(ds, resource_type, query).await?.map(|v| v.id);
                let id = match (method, found) {
                    (_, Some(id)) => Some(id),
                    (Method::Put, None) => match &request.body {
                        Body::Resource(body) => {
                            Some(body.get("id").and_then(Value::as_str).map_or_else(|| self.backends.ids.resource_id(), String::from))
                        }
                        _ => None,
                    },
                    (Method::Patch, None) => return Err(CoreError::NotFound("no resource matches the patch criteria".into())),
                    (_, None) => None,
                };
                Ok(resolved(resource_type, id, None))
            }
            _ => Err(CoreError::Invalid("this entry cannot be part of a transaction".into())),
        }
    }

    /// The single resource a conditional query selects, `None` for none; 412 for several.
    async fn one_match(&self, ds: &ActiveDatastore, resource_type: &str, query: &[(String, String)]) -> CoreResult<Option<StoredVersion>> {
        let criteria = query::conditional_criteria(resource_type, query).map_err(|e| CoreError::Invalid(e.to_string()))?;
        self.search.unique_match(ds, resource_type, &criteria).await
    }

    /// `Type?criteria` as the `Type/id` of its one match.
    async fn conditional_reference(&self, ds: &ActiveDatastore, reference: &str) -> CoreResult<String> {
        let (resource_type, query) =
            references::conditional_reference_query(reference).map_err(|issue| CoreError::InvalidResource(vec![issue]))?;
        match self.one_match(ds, resource_type, &query).await? {
            Some(found) => Ok(format!("{resource_type}/{}", found.id)),
            None => Err(CoreError::PreconditionFailed("a conditional reference matches no resource".into())),
        }
    }

    /// The previous version, interaction and new content of a write; `None` for a delete with
    /// nothing to delete.
    async fn plan_write(
        &self,
        ds: &ActiveDatastore,
        r: &Resolved<'_>,
        id: &str,
        map: &HashMap<String, String>,
    ) -> CoreResult<Option<(Option<StoredVersion>, Interaction, Option<Value>)>> {
        let resource_type = r.resource_type.as_str();
        resources::check_type(resource_type)?;
        resources::check_id(id)?;
        let latest = if r.request.method == Method::Post {
            None
        } else {
            let current = self.resources.current(ds, resource_type, id).await?;
            if current.busy {
                return Err(CoreError::Conflict(format!("{resource_type}/{id} is being changed by another transaction; retry")));
            }
            current.version
        };
        if let Some(expected) = r.request.if_match_version() {
            let expected: u64 = expected.parse().map_err(|_| CoreError::Invalid("ifMatch must name a version".into()))?;
            match &latest {
                Some(v) if v.version == expected => {}
                Some(v) => return Err(resources::version_mismatch(expected, v.version)),
                None => return Err(CoreError::PreconditionFailed(format!("{resource_type}/{id} does not exist"))),
            }
        }
        let live = latest.as_ref().filter(|v| !v.is_deleted());
        let with_references = |mut body: Value| {
            references::rewrite_references(&mut body, map);
            if let Value::Object(object) = &mut body {
                object.insert("id".into(), Value::String(id.to_string()));
            }
            body
        };
        let (method, body) = match (&r.request.method, &r.request.body) {
            (Method::Delete, _) => match live {
                None => return Ok(None),
                Some(_) => (Interaction::Delete, None),
            },
            (Method::Post, Body::Resource(body)) => (Interaction::Create, Some(with_references(body.clone()))),
            (Method::Put, Body::Resource(body)) => {
                let method = if live.is_some() { Interaction::Update } else { Interaction::CreateByUpdate };
                (method, Some(with_references(body.clone())))
            }
            (Method::Patch, Body::JsonPatch(doc) | Body::FhirPathPatch(doc)) => {
                let current = match live.and_then(|v| v.body.as_ref()) {
                    None => return Err(resources::not_found(resource_type, id)),
                    Some(body) => {
                        serde_json::from_slice::<Value>(body).map_err(|_| CoreError::Internal("stored body is not json".into()))?
                    }
                };
                let document = match &r.request.body {
                    Body::JsonPatch(_) => PatchDocument::Json(doc.clone()),
                    _ => PatchDocument::FhirPath(doc.clone()),
                };
                (Interaction::Patch, Some(resources::apply_patch(&current, &document)?))
            }
            _ => return Err(CoreError::Invalid("the entry's body does not fit its method".into())),
        };
        if let Some(body) = &body {
            resources::check_valid(resource_type, body)?;
        }
        Ok(Some((latest, method, body)))
    }
}

/// Names the entry in the issues of its failure: an issue located at `Bundle.entry[n]` first.
fn at_entry(error: CoreError, index: usize) -> CoreError {
    match error {
        CoreError::InvalidResource(issues) => {
            let mut located = vec![Issue::error("invalid", format!("entry {index} is invalid")).at(format!("Bundle.entry[{index}]"))];
            located.extend(issues);
            CoreError::InvalidResource(located)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::DateTime;
    use fhirlake_fhir::search::query::{parse, Handling};
    use fhirlake_ports::memory::{FixedClock, MemoryItemTable, MemoryKeyService, MemoryObjectStore};
    use fhirlake_ports::RandomIds;
    use serde_json::json;

    use crate::datastores::CreateFhirDatastoreRequest;
    use crate::resources::Method as Interaction;
    use crate::search::Scope;
    use crate::{Backends, ServiceConfig, Services};

    #[tokio::test]
    async fn a_transaction_that_loses_a_race_leaves_nothing_visible() {
        let backends = Backends {
            table: Arc::new(MemoryItemTable::new()),
            objects: Arc::new(MemoryObjectStore::new()),
            keys: Arc::new(MemoryKeyService::new()),
            buckets: Arc::new(fhirlake_ports::MemoryBuckets::new()),
            clock: Arc::new(FixedClock::new(DateTime::from_timestamp(1_700_000_000, 0).expect("a time"))),
            ids: Arc::new(RandomIds),
        };
        let config = ServiceConfig::new("us-east-1", "123456789012", "http://localhost");
        let services = Services::new(config, backends);
        let created = services.datastores.create(CreateFhirDatastoreRequest::r4()).await.expect("a datastore");
        let ds = services.datastores.active(&created.datastore_id).await.expect("active");
        let r = &services.resources;
        let existing = r
            .update(&ds, "Patient", "p1", json!({"resourceType": "Patient", "id": "p1", "gender": "male"}), None)
            .await
            .expect("p1")
            .version;

        // A transaction prepares a new Patient and version 2 of p1 ...
        let now = existing.last_updated + chrono::Duration::seconds(1);
        let new = json!({"resourceType": "Patient", "name": [{"family": "Racer"}]});
        let a = r.prepare(&ds, "Patient", "p2", None, Interaction::Create, Some(new), now).await.expect("prepare p2");
        let b = r
            .prepare(
                &ds,
                "Patient",
                "p1",
                Some(&existing),
                Interaction::Update,
                Some(json!({"resourceType": "Patient", "gender": "female"})),
                now,
            )
            .await
            .expect("prepare p1");
        // ... while another writer stores version 2 of p1 first.
        r.update(&ds, "Patient", "p1", json!({"resourceType": "Patient", "id": "p1", "gender": "other"}), None)
            .await
            .expect("the other writer");
        let failed = r.apply(&ds, vec![a, b]).await;
        assert!(failed.is_err_and(|e| e.is_condition_failure()));

        // Neither write of the transaction is visible: not by read, not by search.
        assert!(r.read(&ds, "Patient", "p2").await.is_err());
        let search = |q: &str| {
            let params: Vec<(String, String)> = url::form_urlencoded::parse(q.as_bytes()).into_owned().collect();
            parse(Some("Patient"), &params, Handling::Strict).expect("a search")
        };
        for q in ["family=racer", "gender=female"] {
            let page = services.search.search(&ds, &search(q), &Scope::default(), 10).await.expect("search");
            assert!(page.matches.is_empty(), "{q}");
        }
        let page = services.search.search(&ds, &search("gender=other"), &Scope::default(), 10).await.expect("search");
        assert_eq!(page.matches.iter().map(|v| v.id.as_str()).collect::<Vec<_>>(), ["p1"]);
    }
}

//! Many resources written at once, each on its own: the write path of bulk import.
//!
//! Every resource becomes its next version exactly as a single `update` would make it (same
//! validation, version numbers, history and index entries, same commit point: the version
//! item's conditional put). Only the storage calls are shared: the entries of the whole batch go
//! in one `batch_write`, and the version items in one `write_each` (on redb a few shared commits,
//! on DynamoDB concurrent requests), instead of two storage commits per resource. A resource whose
//! put loses a race, that appears twice in the batch, or that a transaction is writing, is
//! written alone afterwards through [`ResourceService::update`], so every outcome is the one a
//! single update would have had.

use std::collections::HashSet;

use fhirlake_ports::{Condition, Item, Write};
use serde_json::Value;

use crate::datastores::ActiveDatastore;
use crate::jobs::ValidationLevel;
use crate::resources::{self, Method, PreparedVersion, ResourceService, StoredVersion, WriteOutcome};
use crate::{CoreError, CoreResult};

/// One resource of a bulk write: its JSON (with `resourceType` and `id`) and, for an import,
/// the line it comes from (recorded on its version, see [`crate::jobs`]).
#[derive(Debug, Clone)]
pub struct BulkResource {
    /// The resource.
    pub body: Value,
    /// The import line that writes it.
    pub source: Option<String>,
}

/// Resources of a batch prepared at once: their validation, latest-version reads and sealing
/// overlap (on DynamoDB each read is a round trip; on the embedded store they spread over the
/// cores).
const PREPARE_CONCURRENCY: usize = 64;

/// A resource's type and id, checked, or the plan that needs no preparation: refused, or written
/// alone because the batch names its id twice.
fn screen(resource: BulkResource, seen: &mut HashSet<(String, String)>) -> Result<(String, String, BulkResource), Box<Plan>> {
    let body = &resource.body;
    let resource_type = body.get("resourceType").and_then(Value::as_str).unwrap_or_default().to_string();
    let Some(id) = body.get("id").and_then(Value::as_str).map(String::from) else {
        return Err(Box::new(Plan::Refused(CoreError::Invalid("the resource has no id".into()))));
    };
    if let Err(error) = resources::check_type(&resource_type).and_then(|()| resources::check_id(&id)) {
        return Err(Box::new(Plan::Refused(error)));
    }
    if !seen.insert((resource_type.clone(), id.clone())) {
        return Err(Box::new(Plan::Alone(resource_type, id, resource)));
    }
    Ok((resource_type, id, resource))
}

/// What happens to one resource of a batch.
enum Plan {
    /// Refused before any write.
    Refused(CoreError),
    /// Written with the others: the prepared version and whether it creates the resource.
    Together(Box<PreparedVersion>, bool),
    /// Written alone, after the others.
    Alone(String, String, BulkResource),
}

impl ResourceService {
    /// Writes `resources` (each with its `resourceType` and `id`) as updates by id, creating
    /// those that do not exist; the outcome of each, in order. See the module doc.
    pub async fn update_many(&self, ds: &ActiveDatastore, resources: Vec<Value>) -> Vec<CoreResult<WriteOutcome>> {
        let resources = resources.into_iter().map(|body| BulkResource { body, source: None }).collect();
        self.write_many(ds, resources, ValidationLevel::Strict).await
    }

    /// [`Self::update_many`] for an import: each resource checked at `level` and marked with
    /// its source line.
    pub(crate) async fn write_many(
        &self,
        ds: &ActiveDatastore,
        resources: Vec<BulkResource>,
        level: ValidationLevel,
    ) -> Vec<CoreResult<WriteOutcome>> {
        let now = self.backends().clock.now();
        let mut seen = HashSet::new();
        let mut plans: Vec<Option<Plan>> = Vec::with_capacity(resources.len());
        let mut preparing = tokio::task::JoinSet::new();
        let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(PREPARE_CONCURRENCY));
        for resource in resources {
            match screen(resource, &mut seen) {
                Ok((resource_type, id, resource)) => {
                    let (service, ds, slots, index) = (self.clone(), ds.clone(), slots.clone(), plans.len());
                    preparing.spawn(async move {
                        let _slot = slots.acquire_owned().await;
                        (index, service.plan(&ds, resource_type, id, resource, level, now).await)
                    });
                    plans.push(None);
                }
                Err(plan) => plans.push(Some(*plan)),
            }
        }
        while let Some(joined) = preparing.join_next().await {
            match joined {
                Ok((index, plan)) => plans[index] = Some(plan),
                Err(_) => return plans.iter().map(|_| Err(CoreError::Internal("preparing a bulk write failed".into()))).collect(),
            }
        }
        let mut plans: Vec<Plan> =
            plans.into_iter().map(|p| p.unwrap_or(Plan::Refused(CoreError::Internal("a bulk write lost a plan".into())))).collect();
        let mut together: Vec<&mut PreparedVersion> = plans
            .iter_mut()
            .filter_map(|p| match p {
                Plan::Together(prepared, _) => Some(prepared.as_mut()),
                _ => None,
            })
            .collect();
        let committed = self.commit_together(ds, &mut together).await;
        let mut committed = committed.into_iter();
        let mut outcomes = Vec::with_capacity(plans.len());
        for plan in plans {
            outcomes.push(match plan {
                Plan::Refused(error) => Err(error),
                Plan::Together(prepared, created) => match committed.next() {
                    Some(Ok(())) => Ok(WriteOutcome { version: prepared.stored, created }),
                    Some(Err(e)) if e.is_condition_failure() => self.update_alone(ds, &prepared.stored, level).await,
                    Some(Err(e)) => Err(e.into()),
                    None => Err(CoreError::Internal("a bulk write lost track of a resource".into())),
                },
                Plan::Alone(resource_type, id, resource) => {
                    self.update_from_source(ds, &resource_type, &id, resource.body, level, resource.source.as_deref()).await
                }
            });
        }
        outcomes
    }

    /// Validates one resource and prepares its next version, or decides it is written alone.
    async fn plan(
        &self,
        ds: &ActiveDatastore,
        resource_type: String,
        id: String,
        resource: BulkResource,
        level: ValidationLevel,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Plan {
        if let Err(error) = resources::check_at_level(&resource_type, &resource.body, level) {
            return Plan::Refused(error);
        }
        let current = match self.current(ds, &resource_type, &id).await {
            Ok(current) => current,
            Err(error) => return Plan::Refused(error),
        };
        if current.busy {
            return Plan::Alone(resource_type, id, resource);
        }
        let latest = current.version;
        let live = latest.as_ref().is_some_and(|v| !v.is_deleted());
        let method = if live { Method::Update } else { Method::CreateByUpdate };
        let at = latest.as_ref().map_or(now, |p| now.max(p.last_updated + chrono::Duration::microseconds(1)));
        match self.prepare(ds, &resource_type, &id, latest.as_ref(), method, Some(resource.body), at).await {
            Ok(mut prepared) => {
                if let Some(source) = &resource.source {
                    prepared.mark_source(source);
                }
                Plan::Together(Box::new(prepared), !live)
            }
            Err(error) => Plan::Refused(error),
        }
    }

    /// Stores the entries of every prepared version, then puts every version item under "does
    /// not exist"; the outcome of each put, in order. Entries of versions that did not commit
    /// are removed again, and entries of the versions the committed ones supersede are retired.
    async fn commit_together(
        &self,
        ds: &ActiveDatastore,
        prepared: &mut [&mut PreparedVersion],
    ) -> Vec<Result<(), resources::CommitError>> {
        if prepared.is_empty() {
            return Vec::new();
        }
        if let Err(error) = self.store_entries(ds, prepared).await {
            let each = |_: &&mut PreparedVersion| match &error {
                resources::CommitError::Storage(s) => Err(resources::CommitError::Storage(s.clone())),
                resources::CommitError::Core(other) => Err(resources::CommitError::Core(CoreError::Internal(other.to_string()))),
            };
            return prepared.iter().map(each).collect();
        }
        // The version items move into their puts (nothing reads them afterwards: an outcome
        // comes from the stored version, cleanup from the entry keys), so bodies are not copied.
        let puts = prepared
            .iter_mut()
            .map(|p| {
                let stub = Item::new(p.item.key.clone());
                let item = std::mem::replace(&mut p.item, stub);
                Write::Put { item, condition: Condition::NotExists }
            })
            .collect();
        let prepared: Vec<&PreparedVersion> = prepared.iter().map(|p| &**p).collect();
        let outcomes = self.backends().table.write_each(puts).await;
        let mut orphaned = Vec::new();
        let mut superseded = Vec::new();
        for (p, outcome) in prepared.iter().zip(&outcomes) {
            match outcome {
                Ok(()) => superseded.extend(p.previous.iter()),
                Err(_) => orphaned.push(*p),
            }
        }
        if !orphaned.is_empty() {
            self.discard(ds, &orphaned).await;
        }
        if !superseded.is_empty() {
            self.retire_entries(ds, &superseded).await;
        }
        outcomes.into_iter().map(|o| o.map_err(resources::CommitError::Storage)).collect()
    }

    /// A resource whose bulk put lost a race, written again as a single update.
    async fn update_alone(&self, ds: &ActiveDatastore, lost: &StoredVersion, level: ValidationLevel) -> CoreResult<WriteOutcome> {
        let body: Value = lost
            .body
            .as_deref()
            .and_then(|b| serde_json::from_slice(b).ok())
            .ok_or_else(|| CoreError::Internal("a prepared version lost its body".into()))?;
        self.update_from_source(ds, &lost.resource_type, &lost.id, body, level, lost.source.as_deref()).await
    }
}

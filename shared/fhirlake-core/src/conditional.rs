//! Conditional interactions (R4 http.html#ccreate, #cond-update, #cdelete, #patch): writes whose
//! target is named by search criteria instead of an id. One implementation, for the REST API
//! and for bundle entries. The outcomes follow the specification:
//!
//! | interaction | no match | one match | several |
//! |---|---|---|---|
//! | create (`If-None-Exist`) | create (201) | nothing written; the match is returned (200) | 412 |
//! | update (`PUT [type]?…`) | create, with the body's id if it has one (201) | update the match (200); a body id that differs is 400 | 412 |
//! | delete (`DELETE [type]?…`) | nothing to delete (204) | delete the match (204) | 412 |
//! | patch (`PATCH [type]?…`) | 404 | patch the match (200) | 412 |
//!
//! The search and the write are separate steps: two concurrent conditional creates with the
//! same criteria can both find nothing and both create (the specification leaves this to the
//! server; a unique-identifier constraint would need an index entry written under a condition).

use fhirlake_fhir::search::Criterion;
use serde_json::Value;

use crate::datastores::ActiveDatastore;
use crate::resources::{PatchDocument, ResourceService, StoredVersion, WriteOutcome};
use crate::search::SearchService;
use crate::{CoreError, CoreResult};

/// The result of a conditional create.
#[derive(Debug, Clone)]
pub enum CreateOutcome {
    /// Nothing matched: the resource was created.
    Created(WriteOutcome),
    /// One resource matched; nothing was written.
    Exists(StoredVersion),
}

/// Conditional create, update, delete and patch.
#[derive(Clone)]
pub struct ConditionalWrites {
    resources: ResourceService,
    search: SearchService,
}

impl ConditionalWrites {
    /// Builds the service.
    pub fn new(resources: ResourceService, search: SearchService) -> Self {
        ConditionalWrites { resources, search }
    }

    async fn target(&self, ds: &ActiveDatastore, resource_type: &str, criteria: &[Criterion]) -> CoreResult<Option<StoredVersion>> {
        if criteria.is_empty() {
            return Err(CoreError::Invalid("a conditional interaction needs search criteria".into()));
        }
        self.search.unique_match(ds, resource_type, criteria).await
    }

    /// Creates the resource unless the criteria (`If-None-Exist`) match one already.
    pub async fn create(
        &self,
        ds: &ActiveDatastore,
        resource_type: &str,
        body: Value,
        criteria: &[Criterion],
    ) -> CoreResult<CreateOutcome> {
        match self.target(ds, resource_type, criteria).await? {
            Some(existing) => Ok(CreateOutcome::Exists(existing)),
            None => Ok(CreateOutcome::Created(self.resources.create(ds, resource_type, body).await?)),
        }
    }

    /// Updates the resource the criteria select, or creates one.
    pub async fn update(
        &self,
        ds: &ActiveDatastore,
        resource_type: &str,
        criteria: &[Criterion],
        mut body: Value,
        if_match: Option<u64>,
    ) -> CoreResult<WriteOutcome> {
        let body_id = body.get("id").and_then(Value::as_str).map(String::from);
        match (self.target(ds, resource_type, criteria).await?, body_id) {
            (None, None) => self.resources.create(ds, resource_type, body).await,
            (None, Some(id)) => self.resources.update(ds, resource_type, &id, body, if_match).await,
            (Some(found), Some(id)) if id != found.id => {
                Err(CoreError::Invalid("the id in the resource does not match the resource the criteria select".into()))
            }
            (Some(found), _) => {
                if let Value::Object(map) = &mut body {
                    map.insert("id".into(), Value::String(found.id.clone()));
                }
                self.resources.update(ds, resource_type, &found.id, body, if_match).await
            }
        }
    }

    /// Deletes the resource the criteria select; `None` when none matched or it was already
    /// deleted.
    pub async fn delete(&self, ds: &ActiveDatastore, resource_type: &str, criteria: &[Criterion]) -> CoreResult<Option<StoredVersion>> {
        match self.target(ds, resource_type, criteria).await? {
            None => Ok(None),
            Some(found) => self.resources.delete(ds, resource_type, &found.id, None).await,
        }
    }

    /// Patches the resource the criteria select; 404 when none does.
    pub async fn patch(
        &self,
        ds: &ActiveDatastore,
        resource_type: &str,
        criteria: &[Criterion],
        document: &PatchDocument,
        if_match: Option<u64>,
    ) -> CoreResult<WriteOutcome> {
        match self.target(ds, resource_type, criteria).await? {
            None => Err(CoreError::NotFound("no resource matches the criteria".into())),
            Some(found) => self.resources.patch(ds, resource_type, &found.id, document, if_match).await,
        }
    }
}

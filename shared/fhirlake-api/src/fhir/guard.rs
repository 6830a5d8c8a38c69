//! The data plane's authorization: every interaction asks the request's
//! [`Access`](fhirlake_core::access::Access) before it touches a resource, and every resource
//! it returns is checked again on the way out.
//!
//! - **Before**: [`permit`] (scopes allow the interaction on the type, else 403), and for
//!   writes [`authorize_write`] (the new content and the current version are both admitted).
//! - **After**: [`retain`] drops whatever a page holds that the caller may not read: search
//!   matches, `_include`/`_revinclude` resources, history entries and `$everything` members. A
//!   confined search is also narrowed up front to the caller's compartment, so pages are full;
//!   the check on the way out is what guarantees nothing leaks, whatever path produced the page.
//!
//! A write under a confined permit pins the version it checked (`If-Match`), so the resource
//! cannot move into the caller's reach between the check and the write.

use std::collections::HashMap;

use fhirlake_core::access::{Access, Permit};
use fhirlake_core::datastores::ActiveDatastore;
use fhirlake_core::resources::{PatchDocument, StoredVersion};
use fhirlake_core::{CoreError, Services};
use fhirlake_smart::{Interaction, SmartError};
use http::StatusCode;
use serde_json::Value;

use super::error::FhirError;

/// What the scopes allow for `interaction` on `resource_type`, or the 403 that refuses it.
pub(crate) fn permit(access: &Access, resource_type: &str, interaction: Interaction) -> Result<Permit, FhirError> {
    access.permit(resource_type, interaction).map_err(FhirError::from)
}

/// 403 for a resource outside what the token reaches. The message never says whether the
/// resource exists beyond what the caller already learnt from the status.
pub(crate) fn outside_reach() -> FhirError {
    FhirError::new(StatusCode::FORBIDDEN, "forbidden", "the access token does not reach this resource")
}

/// 403 for an interaction that needs the whole datastore (or type) in reach.
pub(crate) fn needs_full_reach(what: &str) -> FhirError {
    FhirError::new(StatusCode::FORBIDDEN, "forbidden", format!("{what} needs scopes that reach every resource, such as system/*.rs"))
}

/// Refuses unless `interaction` reaches every resource of every type.
pub(crate) fn require_everything(access: &Access, interaction: Interaction, what: &str) -> Result<(), FhirError> {
    match access.permits_everything(interaction) {
        true => Ok(()),
        false => Err(needs_full_reach(what)),
    }
}

/// Whether `permit` admits the stored version (a deletion, which has no content, only under
/// [`Permit::All`]).
pub(crate) fn admits_version(permit: &Permit, version: &StoredVersion) -> bool {
    match permit {
        Permit::All => true,
        Permit::Only(_) => match version.body.as_deref().and_then(|b| serde_json::from_slice::<Value>(b).ok()) {
            Some(body) => permit.admits(&version.resource_type, &body),
            None => false,
        },
    }
}

/// 403 unless `permit` admits `version`.
pub(crate) fn check_version(permit: &Permit, version: &StoredVersion) -> Result<(), FhirError> {
    match admits_version(permit, version) {
        true => Ok(()),
        false => Err(outside_reach()),
    }
}

/// Keeps the versions `interaction` may touch under `access`, each checked with its own type's
/// permit. Returns whether any were dropped.
pub(crate) fn retain(access: &Access, interaction: Interaction, versions: &mut Vec<StoredVersion>) -> bool {
    if access.is_full() {
        return false;
    }
    let mut permits: HashMap<String, Option<Permit>> = HashMap::new();
    let before = versions.len();
    versions.retain(|v| {
        let permit = permits.entry(v.resource_type.clone()).or_insert_with(|| access.permit(&v.resource_type, interaction).ok());
        permit.as_ref().is_some_and(|p| admits_version(p, v))
    });
    versions.len() != before
}

/// The write about to happen, for [`authorize_write`].
pub(crate) enum Write<'a> {
    /// A create with this content.
    Create(&'a Value),
    /// An update by id with this content.
    Update(&'a str, &'a Value),
    /// A patch by id.
    Patch(&'a str, &'a PatchDocument),
    /// A delete by id.
    Delete(&'a str),
    /// A write addressed by search criteria (conditional update, patch, delete) or a
    /// conditional create.
    Conditional,
}

/// Checks a write against the token before it is made: the scopes allow it, the new content is
/// admitted, and the current version (for update, patch and delete) is admitted too. Returns
/// the version that was checked, for the write to pin with `If-Match` (`None` when nothing
/// needed pinning: full reach, a create, or no current version).
pub(crate) async fn authorize_write(
    services: &Services,
    ds: &ActiveDatastore,
    access: &Access,
    resource_type: &str,
    write: Write<'_>,
) -> Result<Option<u64>, FhirError> {
    let interaction = match write {
        Write::Create(_) => Interaction::Create,
        Write::Update(..) | Write::Patch(..) => Interaction::Update,
        Write::Delete(_) => Interaction::Delete,
        Write::Conditional => {
            permit(access, resource_type, Interaction::Search)?;
            Interaction::Update
        }
    };
    let permit = permit(access, resource_type, interaction)?;
    if permit == Permit::All {
        return Ok(None);
    }
    let id = match &write {
        Write::Create(body) => {
            return match permit.admits(resource_type, body) {
                true => Ok(None),
                false => Err(outside_reach()),
            }
        }
        Write::Conditional => return Err(needs_full_reach("a conditional interaction")),
        Write::Update(id, _) | Write::Patch(id, _) | Write::Delete(id) => *id,
    };
    let current = match services.resources.read(ds, resource_type, id).await {
        Ok(current) => Some(current),
        Err(CoreError::NotFound(_) | CoreError::Gone(_)) => None,
        Err(e) => return Err(e.into()),
    };
    if let Some(current) = &current {
        check_version(&permit, current)?;
    }
    let next = match (&write, &current) {
        (Write::Update(_, body), _) => Some((*body).clone()),
        (Write::Patch(_, document), Some(current)) => {
            let body = current.body.as_deref().and_then(|b| serde_json::from_slice::<Value>(b).ok()).ok_or_else(outside_reach)?;
            Some(fhirlake_core::resources::apply_patch(&body, document)?)
        }
        _ => None,
    };
    if let Some(next) = next {
        if !permit.admits(resource_type, &next) {
            return Err(outside_reach());
        }
    }
    Ok(current.map(|c| c.version))
}

impl From<SmartError> for FhirError {
    fn from(e: SmartError) -> Self {
        let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::FORBIDDEN);
        let code = match status {
            StatusCode::UNAUTHORIZED => "login",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::SERVICE_UNAVAILABLE => "transient",
            _ => "exception",
        };
        let mut error = FhirError::new(status, code, e.to_string());
        error.challenge = e.www_authenticate();
        error
    }
}

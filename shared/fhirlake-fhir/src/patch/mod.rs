//! PATCH bodies: JSON Patch (RFC 6902) and FHIRPath Patch (a `Parameters` resource).
//!
//! Both functions take the current resource and the patch document and return the patched resource, or a
//! [`PatchError`] whose kind tells the HTTP layer the status: a malformed patch document is a 400, a well-formed
//! patch that cannot be applied to this resource (failed `test`, a path that selects nothing or too much, an index
//! out of range, an attempt to change `id` or `resourceType`) is a 422. Neither ever panics on bad input, and error
//! messages never echo resource content.

mod fhirpath_patch;
mod json_patch;
mod location;

pub use fhirpath_patch::apply_fhirpath_patch;
pub use json_patch::apply_json_patch;

/// Why a patch was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The patch document itself is invalid (not a JSON Patch array, a `Parameters` without the required parts,
    /// an unknown operation type, an unparseable FHIRPath). HTTP 400.
    #[error("invalid patch document: {0}")]
    Malformed(String),
    /// A JSON Patch `test` operation did not hold. HTTP 422.
    #[error("patch test failed: {0}")]
    TestFailed(String),
    /// The patch is well formed but cannot be applied to this resource. HTTP 422.
    #[error("patch cannot be applied: {0}")]
    Unprocessable(String),
}

impl PatchError {
    /// The HTTP status this error maps to.
    pub fn http_status(&self) -> u16 {
        match self {
            PatchError::Malformed(_) => 400,
            PatchError::TestFailed(_) | PatchError::Unprocessable(_) => 422,
        }
    }
}

/// Refuses a patch result that changed the resource's type or id.
fn check_identity(before: &serde_json::Value, after: &serde_json::Value) -> Result<(), PatchError> {
    if !after.is_object() {
        return Err(PatchError::Unprocessable("the patched document is not a resource".into()));
    }
    if before.get("resourceType") != after.get("resourceType") {
        return Err(PatchError::Unprocessable("a patch cannot change resourceType".into()));
    }
    if before.get("id") != after.get("id") {
        return Err(PatchError::Unprocessable("a patch cannot change the resource id".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests;

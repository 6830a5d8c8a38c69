//! JSON Patch (RFC 6902), `Content-Type: application/json-patch+json`.

use serde_json::Value;

use super::{check_identity, PatchError};

/// The most operations one patch may carry.
const MAX_OPERATIONS: usize = 10_000;

/// Applies the RFC 6902 patch document `patch` (a JSON array of operations) to `resource`.
///
/// Errors: [`PatchError::Malformed`] when `patch` is not a valid JSON Patch document, [`PatchError::TestFailed`] when
/// a `test` operation fails, [`PatchError::Unprocessable`] when an operation's path does not exist or the result
/// changes `resourceType` or `id`. The input is never modified: all operations apply or none do.
pub fn apply_json_patch(resource: &Value, patch: &Value) -> Result<Value, PatchError> {
    let ops = patch.as_array().ok_or_else(|| PatchError::Malformed("a json patch must be an array of operations".into()))?;
    if ops.len() > MAX_OPERATIONS {
        return Err(PatchError::Malformed("too many patch operations".into()));
    }
    let mut parsed = Vec::with_capacity(ops.len());
    for (i, op) in ops.iter().enumerate() {
        let op: json_patch::PatchOperation = serde_json::from_value(op.clone())
            .map_err(|_| PatchError::Malformed(format!("operation {i} is not a valid json patch operation")))?;
        parsed.push(op);
    }
    let mut doc = resource.clone();
    json_patch::patch(&mut doc, &parsed).map_err(|e| {
        let at = e.operation;
        match e.kind {
            json_patch::PatchErrorKind::TestFailed => PatchError::TestFailed(format!("test operation {at} failed")),
            json_patch::PatchErrorKind::CannotMoveInsideItself => {
                PatchError::Unprocessable(format!("operation {at} moves a value inside itself"))
            }
            _ => PatchError::Unprocessable(format!("operation {at} could not be applied: its path is not in the resource")),
        }
    })?;
    check_identity(resource, &doc)?;
    Ok(doc)
}

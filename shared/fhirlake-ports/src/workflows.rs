//! [`Workflows`]: starts the workflow that runs a job's steps.

use async_trait::async_trait;

use crate::StorageResult;

/// Starts workflows: Step Functions state machines on AWS, an in-process runner locally.
#[async_trait]
pub trait Workflows: Send + Sync + 'static {
    /// Starts a run of workflow `workflow` (`import` or `export`) named `name` with the JSON
    /// `input`. Names are unique per job: starting a name that already ran is not an error.
    ///
    /// Errors: `Invalid` for an unknown workflow; other kinds as the backend reports.
    async fn start(&self, workflow: &str, name: &str, input: &str) -> StorageResult<()>;
}

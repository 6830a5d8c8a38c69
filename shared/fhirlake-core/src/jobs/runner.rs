//! [`InProcessRunner`]: the local orchestrator. It runs a job's plan, chunk and finalize steps
//! in this process, as the Step Functions state machines run them in AWS: chunks in parallel
//! (bounded), every step retried with exponential backoff and jitter, and the job failed with
//! the step's error once the retries run out.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use fhirlake_ports::{StorageError, StorageResult, Workflows};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::{ChunkResult, JobSteps, JobTask};
use crate::CoreResult;

/// Attempts of each step (the state machines' `MaxAttempts` + 1).
const ATTEMPTS: u32 = 6;
/// First retry pause; doubles per attempt, with full jitter.
const FIRST_PAUSE: Duration = Duration::from_millis(200);

/// Runs jobs in this process.
#[derive(Clone)]
pub struct InProcessRunner {
    steps: JobSteps,
    chunk_slots: Arc<Semaphore>,
}

impl InProcessRunner {
    /// A runner of `steps` with at most `parallelism` chunks running at once (all jobs together).
    pub fn new(steps: JobSteps, parallelism: usize) -> Self {
        InProcessRunner { steps, chunk_slots: Arc::new(Semaphore::new(parallelism.max(1))) }
    }

    /// Starts every job that has not ended (after a restart). Their finished chunks are not run
    /// again; an interrupted chunk resumes without writing any line twice.
    pub async fn resume(&self) -> CoreResult<usize> {
        let jobs = self.steps.unfinished().await?;
        for task in &jobs {
            tracing::info!(job_id = %task.job_id, kind = task.kind.as_str(), "resuming a job");
            self.spawn(task.clone());
        }
        Ok(jobs.len())
    }

    fn spawn(&self, task: JobTask) {
        let runner = self.clone();
        tokio::spawn(async move { runner.run(task).await });
    }

    /// Runs one job to its end.
    pub async fn run(&self, task: JobTask) {
        if let Err(message) = self.run_steps(&task).await {
            if let Err(e) = self.steps.fail(&task, &message).await {
                tracing::error!(job_id = %task.job_id, error = %e, "could not record a job's failure");
            }
        }
    }

    async fn run_steps(&self, task: &JobTask) -> Result<(), String> {
        let planned = retried("plan", &task.job_id, || self.steps.plan(task)).await?;
        if planned.chunks > 0 {
            let chunks = retried("chunk list", &task.job_id, || self.steps.chunk_list(task)).await?;
            let mut running = JoinSet::new();
            for chunk in chunks {
                let slots = self.chunk_slots.clone();
                let steps = self.steps.clone();
                running.spawn(async move {
                    let _slot = slots.acquire_owned().await.map_err(|_| "the runner stopped".to_string())?;
                    let number = chunk.chunk.number();
                    retried("chunk", &chunk.job_id, || steps.run_chunk(&chunk))
                        .await
                        .map_err(|e| format!("chunk {number} failed: {e}"))
                        .map(|_: ChunkResult| ())
                });
            }
            while let Some(joined) = running.join_next().await {
                let outcome = joined.map_err(|_| "a chunk task panicked".to_string()).and_then(|r| r);
                if let Err(message) = outcome {
                    running.abort_all();
                    return Err(message);
                }
            }
        }
        retried("finalize", &task.job_id, || self.steps.finalize(task)).await?;
        Ok(())
    }
}

/// Runs `step` until it succeeds or [`ATTEMPTS`] are used; the last error, as a job message.
async fn retried<T, F, Fut>(what: &str, job_id: &str, mut step: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = CoreResult<T>>,
{
    let mut last = String::new();
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            let ceiling = FIRST_PAUSE.as_millis() as u64 * (1 << (attempt - 1));
            let pause = rand::Rng::gen_range(&mut rand::thread_rng(), ceiling / 2..=ceiling);
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
        match step().await {
            Ok(value) => return Ok(value),
            Err(e) => {
                tracing::warn!(job_id, step = what, attempt, error = %e, "job step failed");
                last = format!("the {what} step failed: {e}");
            }
        }
    }
    Err(last)
}

#[async_trait]
impl Workflows for InProcessRunner {
    async fn start(&self, workflow: &str, _name: &str, input: &str) -> StorageResult<()> {
        let task: JobTask = serde_json::from_str(input).map_err(|_| StorageError::invalid("a job task is malformed"))?;
        if task.kind.as_str() != workflow {
            return Err(StorageError::invalid(format!("unknown workflow {workflow}")));
        }
        self.spawn(task);
        Ok(())
    }
}

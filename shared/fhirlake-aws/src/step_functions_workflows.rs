//! [`StepFunctionsWorkflows`]: the [`Workflows`] port on AWS Step Functions. A job's workflow is
//! one execution of the import or export state machine (`statemachines/*.asl.json`), named by
//! the job id, so starting a job twice starts one execution.

use async_trait::async_trait;
use fhirlake_ports::{StorageError, StorageResult, Workflows};

use crate::error::{sdk_error, service_code};

/// Starts executions of the import and export state machines.
#[derive(Debug, Clone)]
pub struct StepFunctionsWorkflows {
    client: aws_sdk_sfn::Client,
    import_arn: String,
    export_arn: String,
}

impl StepFunctionsWorkflows {
    /// Workflows `import` and `export` on the state machines `import_arn` and `export_arn`.
    pub fn new(client: aws_sdk_sfn::Client, import_arn: String, export_arn: String) -> Self {
        StepFunctionsWorkflows { client, import_arn, export_arn }
    }

    /// The state machine of `workflow`.
    ///
    /// Errors: `Invalid` for a workflow other than `import` and `export`.
    pub fn state_machine_arn(&self, workflow: &str) -> StorageResult<&str> {
        match workflow {
            "import" => Ok(&self.import_arn),
            "export" => Ok(&self.export_arn),
            _ => Err(StorageError::invalid(format!("unknown workflow {workflow}"))),
        }
    }
}

#[async_trait]
impl Workflows for StepFunctionsWorkflows {
    /// `StartExecution` named `name` with `input`. Step Functions keeps execution names for 90
    /// days: a name that already ran (`ExecutionAlreadyExists`, or the running execution with
    /// the same input returned again) means the job's workflow has started, which is success.
    async fn start(&self, workflow: &str, name: &str, input: &str) -> StorageResult<()> {
        let arn = self.state_machine_arn(workflow)?;
        match self.client.start_execution().state_machine_arn(arn).name(name).input(input).send().await {
            Ok(_) => {
                tracing::info!(workflow, execution = name, "state machine execution started");
                Ok(())
            }
            Err(error) if service_code(&error) == Some("ExecutionAlreadyExists") => {
                tracing::info!(workflow, execution = name, "state machine execution already exists");
                Ok(())
            }
            Err(error) => match service_code(&error) {
                Some("StateMachineDoesNotExist") => Err(StorageError::not_found(format!("the {workflow} state machine does not exist"))),
                Some("InvalidName" | "InvalidExecutionInput" | "InvalidArn") => {
                    Err(StorageError::invalid(format!("start {workflow} execution failed: {}", service_code(&error).unwrap_or_default())))
                }
                _ => Err(sdk_error("start execution", &error)),
            },
        }
    }
}

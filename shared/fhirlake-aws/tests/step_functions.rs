//! [`StepFunctionsWorkflows`] against Step Functions on the shared moto server (moto records
//! executions without running them): a job's workflow starts once however often it is started,
//! and an unknown workflow is refused.

use fhirlake_aws::moto::{unique_name, MotoServer};
use fhirlake_aws::StepFunctionsWorkflows;
use fhirlake_ports::{StorageErrorKind, Workflows};

const DEFINITION: &str = r#"{"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}"#;
const ROLE: &str = "arn:aws:iam::123456789012:role/fhirlake-state-machine";

async fn state_machine(client: &aws_sdk_sfn::Client, prefix: &str) -> String {
    let created = client
        .create_state_machine()
        .name(unique_name(prefix))
        .definition(DEFINITION)
        .role_arn(ROLE)
        .send()
        .await
        .expect("create state machine");
    created.state_machine_arn().to_string()
}

async fn executions(client: &aws_sdk_sfn::Client, arn: &str) -> Vec<(String, String)> {
    let listed = client.list_executions().state_machine_arn(arn).send().await.expect("list executions");
    let mut found = Vec::new();
    for execution in listed.executions() {
        let described = client.describe_execution().execution_arn(execution.execution_arn()).send().await.expect("describe execution");
        found.push((execution.name().to_string(), described.input().unwrap_or_default().to_string()));
    }
    found
}

#[tokio::test]
async fn starting_a_job_twice_starts_one_execution_of_its_workflow() {
    let server = MotoServer::shared();
    let client = aws_sdk_sfn::Client::new(&server.sdk_config());
    let import = state_machine(&client, "fhirlake-import").await;
    let export = state_machine(&client, "fhirlake-export").await;
    let workflows = StepFunctionsWorkflows::new(server.clients().sfn, import.clone(), export.clone());

    let job = "0123456789abcdef0123456789abcdef";
    let input = format!(r#"{{"datastoreId":"ds","jobId":"{job}","kind":"import"}}"#);
    workflows.start("import", job, &input).await.expect("first start");
    workflows.start("import", job, &input).await.expect("second start, same input");
    // Another input under a name that exists is ExecutionAlreadyExists: the job has started.
    workflows.start("import", job, r#"{"other": true}"#).await.expect("third start, other input");

    assert_eq!(executions(&client, &import).await, vec![(job.to_string(), input)]);
    assert!(executions(&client, &export).await.is_empty());

    let export_input = format!(r#"{{"datastoreId":"ds","jobId":"{job}","kind":"export"}}"#);
    workflows.start("export", job, &export_input).await.expect("export start");
    assert_eq!(executions(&client, &export).await, vec![(job.to_string(), export_input)]);
}

#[tokio::test]
async fn an_unknown_workflow_is_invalid_and_starts_nothing() {
    let server = MotoServer::shared();
    let client = aws_sdk_sfn::Client::new(&server.sdk_config());
    let import = state_machine(&client, "fhirlake-import").await;
    let export = state_machine(&client, "fhirlake-export").await;
    let workflows = StepFunctionsWorkflows::new(server.clients().sfn, import.clone(), export.clone());

    let error = workflows.start("reindex", "job-1", "{}").await.unwrap_err();
    assert_eq!(error.kind, StorageErrorKind::Invalid, "{error:?}");
    assert!(error.message.contains("reindex"), "{}", error.message);
    assert!(executions(&client, &import).await.is_empty());
    assert!(executions(&client, &export).await.is_empty());
}

#[tokio::test]
async fn a_missing_state_machine_is_not_found() {
    let server = MotoServer::shared();
    let missing = format!("arn:aws:states:us-east-1:123456789012:stateMachine:{}", unique_name("fhirlake-missing"));
    let workflows = StepFunctionsWorkflows::new(server.clients().sfn, missing.clone(), missing);
    let error = workflows.start("import", "job-1", "{}").await.unwrap_err();
    assert_eq!(error.kind, StorageErrorKind::NotFound, "{error:?}");
}

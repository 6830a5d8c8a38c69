//! Bulk jobs the way the deployment runs them, on the shared moto server: the HTTP function,
//! configured with the state machine ARNs, starts a Step Functions execution named by the job
//! (moto records it without running it); the task functions' contexts, built from their
//! settings, then do what the state machine would: plan (the chunk list lands in S3 where the
//! plan's answer says, prefix included, for the Distributed Map's ItemReader), every chunk, and
//! finalize. DescribeFHIRImportJob through the HTTP function then says COMPLETED.

mod common;

use std::sync::Arc;

use common::*;
use fhirlake_aws::moto::{unique_name, MotoServer};
use fhirlake_aws::{AwsBackend, AwsSettings, SecretsManagerCredentials};
use fhirlake_lambda::settings::{HttpSettings, JobStepSettings};
use fhirlake_lambda::{job_step_service, HttpContext, JobStep, JobStepContext};
use lambda_http::tower::ServiceExt;
use lambda_http::{Context, LambdaEvent};
use serde_json::{json, Value};

const DEFINITION: &str = r#"{"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}"#;

fn lookup(pairs: Vec<(&'static str, String)>) -> impl Fn(&str) -> Option<String> {
    move |name| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone())
}

/// A control-plane call `operation` with `body`, signed now.
fn control_plane(operation: &str, body: &Value) -> Event {
    Event::load("control-plane/describe-datastore.json")
        .set_header("x-amz-target", &format!("HealthLake.{operation}"))
        .with_body(body.to_string().as_bytes())
        .signed()
}

async fn step(context: &Arc<JobStepContext>, step: JobStep, payload: Value) -> Value {
    let event = LambdaEvent::new(payload, Context::default());
    job_step_service(context.clone(), step).oneshot(event).await.unwrap_or_else(|e| panic!("{step:?}: {e}"))
}

#[tokio::test]
async fn an_import_starts_an_execution_and_the_task_functions_complete_it() {
    let server = MotoServer::shared();
    let sdk = server.sdk_config();
    let clients = server.clients();
    let name = unique_name("fhirlake-jobs");
    let aws =
        AwsSettings { table: name.clone(), bucket: name.clone(), object_prefix: Some("data".into()), kms_key: format!("alias/{name}") };
    AwsBackend::init(&clients, &aws).await.expect("create the table, bucket and key in moto");

    // The customer's buckets and key.
    let input_bucket = unique_name("fhirlake-input");
    let output_bucket = unique_name("fhirlake-output");
    for bucket in [&input_bucket, &output_bucket] {
        clients.s3.create_bucket().bucket(bucket).send().await.expect("create a job bucket");
    }
    let lines = [
        json!({"resourceType": "Patient", "id": "p1", "name": [{"family": "Chalmers"}]}).to_string(),
        json!({"resourceType": "Patient", "id": "p2", "name": [{"family": "Windsor"}]}).to_string(),
    ]
    .join("\n");
    clients.s3.put_object().bucket(&input_bucket).key("in/patients.ndjson").body(lines.into_bytes().into()).send().await.unwrap();
    let key = clients.kms.create_key().send().await.unwrap().key_metadata.unwrap().arn.unwrap();

    // The state machines (moto records executions without running them).
    let role = "arn:aws:iam::123456789012:role/fhirlake-state-machine";
    let mut arns = Vec::new();
    for kind in ["import", "export"] {
        let created = clients
            .sfn
            .create_state_machine()
            .name(format!("{name}-{kind}"))
            .definition(DEFINITION)
            .role_arn(role)
            .send()
            .await
            .expect("create a state machine");
        arns.push(created.state_machine_arn().to_string());
    }

    let secret = unique_name("fhirlake-access-keys");
    SecretsManagerCredentials::new(&sdk, &secret).store(ACCESS_KEY_ID, SECRET, None).await.expect("create the secret in moto");
    let environment = vec![
        ("AWS_REGION", REGION.to_string()),
        ("FHIRLAKE_ACCOUNT_ID", ACCOUNT_ID.to_string()),
        ("FHIRLAKE_ACCESS_KEYS_SECRET", secret),
        ("FHIRLAKE_IMPORT_STATE_MACHINE_ARN", arns[0].clone()),
        ("FHIRLAKE_EXPORT_STATE_MACHINE_ARN", arns[1].clone()),
    ];
    let settings = HttpSettings::from_lookup(lookup(environment.clone()), aws.clone()).expect("settings");
    assert!(settings.workflows.is_some());
    let http = Arc::new(HttpContext::from_settings(&settings, &sdk).await.expect("the context builds"));

    let created = invoke(&http, &Event::load("control-plane/create-datastore.json").signed()).await;
    assert_eq!(created.status, 200, "{}", String::from_utf8_lossy(&created.body));
    let datastore = created.json()["DatastoreId"].as_str().unwrap().to_string();

    let start = json!({
        "DatastoreId": datastore,
        "InputDataConfig": {"S3Uri": format!("s3://{input_bucket}/in/")},
        "JobOutputDataConfig": {"S3Configuration": {"S3Uri": format!("s3://{output_bucket}/out"), "KmsKeyId": key}},
        "DataAccessRoleArn": "arn:aws:iam::123456789012:role/healthlake-import",
    });
    let started = invoke(&http, &control_plane("StartFHIRImportJob", &start)).await;
    assert_eq!(started.status, 200, "{}", String::from_utf8_lossy(&started.body));
    let job_id = started.json()["JobId"].as_str().unwrap().to_string();

    // Exactly one execution, named by the job, its input the plan step's event.
    let listed = clients.sfn.list_executions().state_machine_arn(&arns[0]).send().await.unwrap();
    let names: Vec<&str> = listed.executions().iter().map(|e| e.name()).collect();
    assert_eq!(names, [job_id.as_str()]);
    let execution = clients.sfn.describe_execution().execution_arn(listed.executions()[0].execution_arn()).send().await.unwrap();
    let input: Value = serde_json::from_str(execution.input().unwrap()).unwrap();
    assert_eq!(input, json!({"datastoreId": datastore, "jobId": job_id, "kind": "import"}));
    assert!(clients.sfn.list_executions().state_machine_arn(&arns[1]).send().await.unwrap().executions().is_empty());

    // The task functions, as the state machine would run them.
    let step_settings = JobStepSettings::from_lookup(lookup(environment), aws.clone()).expect("job step settings");
    let steps = Arc::new(JobStepContext::from_settings(&step_settings, &sdk));
    let planned = step(&steps, JobStep::ImportPlan, input.clone()).await;
    let bucket = planned["chunkList"]["Bucket"].as_str().unwrap();
    let list_key = planned["chunkList"]["Key"].as_str().unwrap();
    assert_eq!((bucket, list_key), (name.as_str(), format!("data/jobs/{datastore}/{job_id}/chunks.json").as_str()));
    // What the ItemReader (s3:getObject, InputType JSON) would read.
    let object = clients.s3.get_object().bucket(bucket).key(list_key).send().await.expect("the chunk list is where the plan says");
    let items: Vec<Value> = serde_json::from_slice(&object.body.collect().await.unwrap().into_bytes()).unwrap();
    assert_eq!(planned["chunks"], json!(items.len()));
    assert!(!items.is_empty());
    for item in items {
        step(&steps, JobStep::ImportChunk, item).await;
    }
    let finalized = step(&steps, JobStep::ImportFinalize, input).await;
    assert_eq!(finalized["status"], "COMPLETED");

    let described = invoke(&http, &control_plane("DescribeFHIRImportJob", &json!({"DatastoreId": datastore, "JobId": job_id}))).await;
    assert_eq!(described.status, 200, "{}", String::from_utf8_lossy(&described.body));
    assert_eq!(described.json()["ImportJobProperties"]["JobStatus"], "COMPLETED");

    // Starting the execution again (a retried StartFHIRImportJob reaching Step Functions twice)
    // is not an error and adds none.
    let workflows = fhirlake_aws::StepFunctionsWorkflows::new(clients.sfn.clone(), arns[0].clone(), arns[1].clone());
    fhirlake_ports::Workflows::start(&workflows, "import", &job_id, execution.input().unwrap()).await.expect("start again");
    assert_eq!(clients.sfn.list_executions().state_machine_arn(&arns[0]).send().await.unwrap().executions().len(), 1);
}

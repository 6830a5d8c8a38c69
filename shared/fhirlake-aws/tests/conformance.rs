//! The storage conformance suite against the AWS adapters on a moto server that this test
//! binary starts on 127.0.0.1 (one server per binary, stopped when the binary exits).

use std::sync::OnceLock;

use fhirlake_aws::moto::MotoServer;
use fhirlake_aws::{
    create_bucket_if_missing, create_key_if_missing, create_table_if_missing, AwsClients, DynamoDbItemTable, KmsKeyService, S3ObjectStore,
};
use fhirlake_ports::testsuite::key_service::OTHER_MASTER_KEY_ID;
use fhirlake_ports::ObjectStore;

/// The resources every test shares, on the shared moto server.
struct Fixture {
    table: String,
    bucket: String,
    key_alias: String,
    key_arn: String,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let server = MotoServer::shared();
        let run = format!("{:016x}", rand::random::<u64>());
        let (table, bucket, key_alias) =
            (format!("fhirlake-test-{run}"), format!("fhirlake-test-{run}"), format!("alias/fhirlake-test-{run}"));
        // Set up on a runtime of its own: the tests each run on their own runtime.
        let (setup_table, setup_bucket, setup_alias) = (table.clone(), bucket.clone(), key_alias.clone());
        let key_arn = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async move {
                let clients = server.clients();
                create_table_if_missing(&clients.dynamodb, &setup_table).await.expect("create table");
                create_bucket_if_missing(&clients.s3, &setup_bucket).await.expect("create bucket");
                create_key_if_missing(&clients.kms, OTHER_MASTER_KEY_ID).await.expect("create the other key");
                create_key_if_missing(&clients.kms, &setup_alias).await.expect("create key")
            })
        })
        .join()
        .expect("set up moto resources");
        Fixture { table, bucket, key_alias, key_arn }
    })
}

/// Fresh clients on the calling test's runtime.
fn clients() -> (&'static Fixture, AwsClients) {
    let fixture = fixture();
    (fixture, MotoServer::shared().clients())
}

async fn item_table() -> ((), DynamoDbItemTable) {
    let (fixture, clients) = clients();
    ((), DynamoDbItemTable::new(clients.dynamodb, &fixture.table))
}

async fn object_store() -> ((), S3ObjectStore) {
    let (fixture, clients) = clients();
    ((), S3ObjectStore::new(clients.s3, &fixture.bucket, None, None))
}

async fn encrypted_object_store() -> ((), S3ObjectStore) {
    let (fixture, clients) = clients();
    ((), S3ObjectStore::new(clients.s3, &fixture.bucket, Some("tenant-a".into()), Some(fixture.key_arn.clone())))
}

async fn key_service() -> ((), KmsKeyService) {
    let (fixture, clients) = clients();
    ((), KmsKeyService::new(clients.kms, &fixture.key_alias))
}

mod dynamodb_item_table {
    fhirlake_ports::item_table_tests!(super::item_table());
}

mod s3_object_store {
    fhirlake_ports::object_store_tests!(super::object_store());
}

mod s3_object_store_with_prefix_and_sse_kms {
    fhirlake_ports::object_store_tests!(super::encrypted_object_store());
}

mod kms_key_service {
    fhirlake_ports::key_service_tests!(super::key_service());
}

/// The whole item table suite as one test, on the table the other tests share (under `cargo
/// test`): cases do not depend on an empty table.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn item_table_suite_runs_on_a_shared_table() {
    let (_, table) = item_table().await;
    fhirlake_ports::testsuite::item_table_suite(&table).await.unwrap_or_else(|failure| panic!("{failure}"));
}

/// A prefixed store keeps its objects under the prefix, encrypted with SSE-KMS, and lists
/// only its own keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prefixed_store_writes_under_its_prefix_with_sse_kms() {
    let (fixture, clients) = clients();
    let store = S3ObjectStore::new(clients.s3.clone(), &fixture.bucket, Some("tenant-b/".into()), Some(fixture.key_arn.clone()));
    let key = format!("sse-{:016x}/object", rand::random::<u64>());
    store.put(&key, bytes::Bytes::from_static(b"secret")).await.expect("put");
    let raw = clients.s3.head_object().bucket(&fixture.bucket).key(format!("tenant-b/{key}")).send().await.expect("raw head");
    assert_eq!(raw.server_side_encryption(), Some(&aws_sdk_s3::types::ServerSideEncryption::AwsKms));
    assert_eq!(raw.ssekms_key_id(), Some(fixture.key_arn.as_str()));
    let other = S3ObjectStore::new(clients.s3, &fixture.bucket, Some("tenant-c".into()), None);
    assert!(other.list(&key, None, 10).await.expect("list").objects.is_empty());
    assert_eq!(store.list(&key, None, 10).await.expect("list").objects.len(), 1);
}

/// Creating existing resources again succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn creating_existing_resources_is_a_no_op() {
    let (fixture, clients) = clients();
    create_table_if_missing(&clients.dynamodb, &fixture.table).await.expect("table");
    create_bucket_if_missing(&clients.s3, &fixture.bucket).await.expect("bucket");
    let arn = create_key_if_missing(&clients.kms, &fixture.key_alias).await.expect("key");
    assert_eq!(arn, fixture.key_arn);
}

//! The storage conformance suite against the AWS adapters on a moto server that this test
//! binary starts on 127.0.0.1 (one server per binary, stopped when the binary exits).

use std::io::{Read, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::{Credentials, SharedCredentialsProvider};
use fhirlake_aws::{
    create_bucket_if_missing, create_key_if_missing, create_table_if_missing, AwsClients, DynamoDbItemTable, KmsKeyService, S3ObjectStore,
};
use fhirlake_ports::testsuite::key_service::OTHER_MASTER_KEY_ID;
use fhirlake_ports::ObjectStore;

/// The moto server and the resources every test shares.
struct Fixture {
    /// Holds the server's stdin: when this process exits the pipe closes and the wrapper
    /// shell kills the server.
    _server: Child,
    endpoint: String,
    table: String,
    bucket: String,
    key_alias: String,
    key_arn: String,
}

fn moto_server_path() -> PathBuf {
    if let Some(path) = std::env::var_os("FHIRLAKE_MOTO_SERVER") {
        return PathBuf::from(path);
    }
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/.venv/bin/moto_server");
    if !path.exists() {
        panic!(
            "moto_server not found at {}: run tests/setup (installs tests/requirements.txt into tests/.venv) or set FHIRLAKE_MOTO_SERVER",
            path.display()
        );
    }
    path
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// True once the server answers an HTTP request.
fn answers_http(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream.write_all(b"GET /moto-api/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").is_err() {
        return false;
    }
    let mut head = [0u8; 8];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.")
}

/// Runs moto's server with request handling serialised by one lock: moto applies conditional
/// writes without locking, so concurrent requests could both pass one condition, which
/// DynamoDB's per-item atomicity rules out. Requests still share keep-alive connections.
const SERIALISED_MOTO: &str = r#"
import sys, threading
import moto.server as server
lock = threading.Lock()
dispatch = server.DomainDispatcherApplication.__call__
def serialised(self, environ, start_response):
    with lock:
        return dispatch(self, environ, start_response)
server.DomainDispatcherApplication.__call__ = serialised
server.main(sys.argv[1:])
"#;

/// The interpreter (and its arguments) named by the `#!` line of the moto_server script.
fn interpreter_of(script: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(script).unwrap_or_else(|e| panic!("could not read {}: {e}", script.display()));
    let shebang = text.lines().next().and_then(|line| line.strip_prefix("#!"));
    let parts: Vec<String> = shebang.map(|line| line.split_whitespace().map(str::to_string).collect()).unwrap_or_default();
    if parts.is_empty() {
        panic!("{} has no #! line naming its python interpreter", script.display());
    }
    parts
}

fn start_moto() -> (Child, String) {
    let moto = moto_server_path();
    let interpreter = interpreter_of(&moto);
    let port = free_port();
    let log = std::env::temp_dir().join(format!("fhirlake-aws-moto-{port}.log"));
    let log_file = std::fs::File::create(&log).expect("create the moto log file");
    // The shell starts the server and kills it once its stdin (held by this process) closes.
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#"port="$1"; shift; "$@" -c "$FHIRLAKE_MOTO_SCRIPT" -H 127.0.0.1 -p "$port" & pid=$!; read _ignored; kill "$pid""#)
        .arg("sh")
        .arg(port.to_string())
        .args(&interpreter)
        .env("FHIRLAKE_MOTO_SCRIPT", SERIALISED_MOTO)
        .env("S3_UPLOAD_PART_MIN_SIZE", "256")
        .stdin(Stdio::piped())
        .stdout(log_file.try_clone().expect("clone the log file"))
        .stderr(log_file)
        .spawn()
        .unwrap_or_else(|e| panic!("could not start {}: {e}", moto.display()));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !answers_http(port) {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the moto wrapper exited with {status}; see {}", log.display());
        }
        if Instant::now() > deadline {
            panic!("moto_server did not answer on 127.0.0.1:{port} within 60 s; see {}", log.display());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // The log only matters while the server starts; it keeps writing to the unlinked file.
    let _ = std::fs::remove_file(&log);
    (child, format!("http://127.0.0.1:{port}"))
}

fn sdk_config(endpoint: &str) -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new("testing", "testing", None, None, "fhirlake-tests")))
        .build()
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let (server, endpoint) = start_moto();
        let run = format!("{:016x}", rand::random::<u64>());
        let (table, bucket, key_alias) =
            (format!("fhirlake-test-{run}"), format!("fhirlake-test-{run}"), format!("alias/fhirlake-test-{run}"));
        // Set up on a runtime of its own: the tests each run on their own runtime.
        let setup_endpoint = endpoint.clone();
        let (setup_table, setup_bucket, setup_alias) = (table.clone(), bucket.clone(), key_alias.clone());
        let key_arn = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async move {
                let clients = AwsClients::from_sdk_config(&sdk_config(&setup_endpoint));
                create_table_if_missing(&clients.dynamodb, &setup_table).await.expect("create table");
                create_bucket_if_missing(&clients.s3, &setup_bucket).await.expect("create bucket");
                create_key_if_missing(&clients.kms, OTHER_MASTER_KEY_ID).await.expect("create the other key");
                create_key_if_missing(&clients.kms, &setup_alias).await.expect("create key")
            })
        })
        .join()
        .expect("set up moto resources");
        Fixture { _server: server, endpoint, table, bucket, key_alias, key_arn }
    })
}

/// Fresh clients on the calling test's runtime.
fn clients() -> (&'static Fixture, AwsClients) {
    let fixture = fixture();
    (fixture, AwsClients::from_sdk_config(&sdk_config(&fixture.endpoint)))
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

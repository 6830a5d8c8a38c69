//! A moto server for tests (feature `moto`): started once per test binary on 127.0.0.1 and
//! stopped when the binary exits. Every test that needs AWS protocol endpoints (the
//! conformance suite, `fhirlake serve --backend aws`, the Lambda handlers) uses this one harness.
//!
//! The server is `moto_server` from `$FHIRLAKE_MOTO_SERVER`, or `tests/.venv/bin/moto_server`
//! (installed by `tests/setup` from the pinned `tests/requirements.txt`).

use std::io::{Read, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::{Credentials, SharedCredentialsProvider};

use crate::AwsClients;

/// Region every test client uses.
pub const REGION: &str = "us-east-1";

/// A running moto server.
pub struct MotoServer {
    /// Holds the server's stdin: when this process exits the pipe closes and the wrapper shell
    /// kills the server.
    _server: Child,
    endpoint: String,
}

impl MotoServer {
    /// The server shared by every test of this binary, started on first use.
    ///
    /// Panics when moto cannot be found or does not start within 60 s: a test that needs AWS
    /// endpoints must fail, never skip, when they are missing.
    pub fn shared() -> &'static MotoServer {
        static SERVER: OnceLock<MotoServer> = OnceLock::new();
        SERVER.get_or_init(|| {
            let (server, endpoint) = start_moto();
            MotoServer { _server: server, endpoint }
        })
    }

    /// `http://127.0.0.1:{port}`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// An SDK configuration for this server: its endpoint, [`REGION`] and dummy credentials.
    pub fn sdk_config(&self) -> SdkConfig {
        SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(&self.endpoint)
            .credentials_provider(SharedCredentialsProvider::new(Credentials::new("testing", "testing", None, None, "fhirlake-tests")))
            .build()
    }

    /// Fresh clients for this server (build them on the runtime that uses them).
    pub fn clients(&self) -> AwsClients {
        AwsClients::from_sdk_config(&self.sdk_config())
    }

    /// The environment a child process (such as `fhirlake serve --backend aws`) needs to reach
    /// this server through the standard AWS configuration.
    pub fn child_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_REGION", REGION.to_string()),
            ("AWS_ACCESS_KEY_ID", "testing".to_string()),
            ("AWS_SECRET_ACCESS_KEY", "testing".to_string()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
        ]
    }
}

/// A name no other test run uses: `{prefix}-{16 hex}`.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}-{:016x}", rand_u64())
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(Instant::now().elapsed().as_nanos() ^ u128::from(std::process::id()));
    hasher.finish()
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

/// The wrapper that runs moto's server with request handling serialised (see the script).
const SERIALISED_MOTO: &str = include_str!("../../../tests/tools/moto_serialised.py");

/// The interpreter (and its arguments) named by the `#!` line of the moto_server script.
fn interpreter_of(script: &Path) -> Vec<String> {
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

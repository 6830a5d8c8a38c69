"""Fixtures for the end-to-end tests: a running `fhirlake serve`, AWS clients pointed at it, and
a SigV4-signing FHIR client.

The binary comes from $FHIRLAKE_BIN (tests/run sets it to the freshly built one). Every client
uses the test key pair below; the developer's own AWS configuration is never read.

$FHIRLAKE_E2E_BACKEND picks the server's backend: `embedded` (the default: its own data dir) or
`aws` (`fhirlake aws init`, then `fhirlake serve --backend aws`, on a moto server started here).
tests/run runs the suite once for each; tests under e2e/aws/ run only against `aws`.
"""

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass

import boto3
import pytest
from botocore.config import Config

from aws_emulator import Moto
from sigv4_http import SigV4Http
from smart_idp import IntrospectionEndpoint

ACCESS_KEY = "AKIDFHIRLAKEE2ETEST1"
SECRET_KEY = "e2e/Secret+Key/For/Fhirlake/Tests/0000000"
REGION = "us-east-1"
START_TIMEOUT = 30
STOP_TIMEOUT = 10
BACKEND = os.environ.get("FHIRLAKE_E2E_BACKEND", "embedded")
if BACKEND not in ("embedded", "aws"):
    raise RuntimeError(f"FHIRLAKE_E2E_BACKEND must be embedded or aws, not {BACKEND!r}")

# Keep the developer's AWS configuration out of every client, in this process and in the CLI.
_EMPTY_AWS_DIR = tempfile.mkdtemp(prefix="fhirlake-e2e-aws-")
for _name in ("config", "credentials"):
    pathlib.Path(_EMPTY_AWS_DIR, _name).touch()
for _var in [v for v in os.environ if v.startswith("AWS_")]:
    del os.environ[_var]
os.environ["AWS_CONFIG_FILE"] = os.path.join(_EMPTY_AWS_DIR, "config")
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.path.join(_EMPTY_AWS_DIR, "credentials")
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"


def _binary():
    path = os.environ.get("FHIRLAKE_BIN")
    if not path:
        target = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/fhirlake-target"))
        path = os.path.join(target, "debug", "fhirlake")
        os.environ["FHIRLAKE_BIN"] = path
    if not os.access(path, os.X_OK):
        pytest.fail(f"fhirlake binary not found at {path}: build it (tests/run does) or set FHIRLAKE_BIN")
    return path


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A `fhirlake serve` process on a fixed port and data dir, restartable."""

    def __init__(self, binary, data_dir, log_dir, backend_args=(), backend_env=None):
        self.binary = binary
        self.backend_args = list(backend_args)
        self.backend_env = dict(backend_env or {})
        self.data_dir = str(data_dir)
        self.log_dir = pathlib.Path(log_dir)
        self.port = _free_port()
        self.host = "127.0.0.1"
        self.base_url = f"http://{self.host}:{self.port}"
        self.access_key = ACCESS_KEY
        self.secret_key = SECRET_KEY
        self.region = REGION
        self.process = None
        self.starts = 0

    def start(self):
        self.starts += 1
        self.stderr_path = self.log_dir / f"server-{self.starts}.stderr"
        self.stdout_path = self.log_dir / f"server-{self.starts}.stdout"
        env = {
            **os.environ,
            "FHIRLAKE_ACCESS_KEY_ID": self.access_key,
            "FHIRLAKE_SECRET_ACCESS_KEY": self.secret_key,
            "RUST_BACKTRACE": "1",
            **self.backend_env,
        }
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.process = subprocess.Popen(
                [self.binary, "serve", "--listen", f"{self.host}:{self.port}", "--data-dir", self.data_dir,
                 "--region", self.region, *self.backend_args],
                env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"fhirlake serve exited with {self.process.returncode} on start\n{self.logs()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        self.process.kill()
        self.process.wait()
        pytest.fail(f"fhirlake serve did not accept connections within {START_TIMEOUT}s\n{self.logs()}")

    def stop(self):
        """SIGTERM, then require a clean exit (status 0) within STOP_TIMEOUT: graceful shutdown."""
        if self.process is None:
            return
        process, self.process = self.process, None
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            pytest.fail(f"fhirlake serve did not exit within {STOP_TIMEOUT}s of SIGTERM\n{self.logs()}")
        assert code == 0, f"fhirlake serve exited with {code} after SIGTERM\n{self.logs()}"

    def kill(self):
        """SIGKILL: the process dies at once, as a crashed worker would."""
        if self.process is None:
            return
        process, self.process = self.process, None
        process.kill()
        process.wait()

    def restart(self):
        """Stops the server gracefully and starts it again on the same port and data dir."""
        self.stop()
        self.start()

    def audit_records(self, keep=lambda record: True, expect=1, timeout=5.0):
        """The audit records `keep` selects from the server's audit log (`<data-dir>/audit/audit.jsonl`),
        waiting up to `timeout` seconds for at least `expect` of them: the log is written by a
        thread of its own, an instant after the response."""
        path = os.path.join(self.data_dir, "audit", "audit.jsonl")
        deadline = time.monotonic() + timeout
        while True:
            with open(path, encoding="utf-8") as log:
                records = [json.loads(line) for line in log if line.strip()]
            assert all(r.pop("type") == "fhirlake.audit" for r in records)
            kept = [r for r in records if keep(r)]
            if len(kept) >= expect or time.monotonic() > deadline:
                return kept
            time.sleep(0.05)

    def logs(self):
        parts = []
        for label, path in (("stdout", self.stdout_path), ("stderr", self.stderr_path)):
            try:
                text = path.read_text(errors="replace")
            except OSError:
                text = ""
            parts.append(f"--- server {label} ({path}) ---\n{text[-8000:]}")
        return "\n".join(parts)


@dataclass
class AwsBackend:
    """The moto server and the resources `fhirlake aws init` created on it."""
    moto: Moto
    table: str
    bucket: str
    kms_key: str

    def args(self):
        # `$export` kick-offs without a destination write under exports/ of the data bucket.
        return ["--backend", "aws", "--table", self.table, "--bucket", self.bucket, "--kms-key", self.kms_key,
                "--export-s3-uri", f"s3://{self.bucket}/exports/"]


def _aws_init(moto, run):
    """Provisions a table, bucket and key on moto with `fhirlake aws init`."""
    backend = AwsBackend(moto, f"fhirlake-e2e-{run}", f"fhirlake-e2e-{run}", f"alias/fhirlake-e2e-{run}")
    init = subprocess.run(
        [_binary(), "aws", "init", "--table", backend.table, "--bucket", backend.bucket, "--kms-key", backend.kms_key],
        env={**os.environ, **moto.env}, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )
    if init.returncode != 0:
        pytest.fail(f"fhirlake aws init failed ({init.returncode})\n{init.stdout}\n{init.stderr}")
    return backend


@pytest.fixture(scope="session")
def aws_backend(tmp_path_factory):
    """With FHIRLAKE_E2E_BACKEND=aws: moto, provisioned by `fhirlake aws init`; else None."""
    if BACKEND != "aws":
        yield None
        return
    logs = tmp_path_factory.mktemp("moto")
    moto = Moto(logs / "moto.log")
    try:
        backend = _aws_init(moto, uuid.uuid4().hex[:12])
    except BaseException:
        moto.stop()
        raise
    yield backend
    moto.stop()


@dataclass
class CustomerKey:
    arn: str
    alias: str


@pytest.fixture(scope="session")
def customer_key(aws_backend):
    """A customer-managed key for SseConfiguration, by ARN and by alias. The embedded key service
    derives a key for any well-formed id; on the aws backend the key must exist in KMS, as a
    customer's own key would, so it is created there."""
    if aws_backend is None:
        return CustomerKey("arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
                           "alias/fhirlake-e2e")
    kms = aws_backend.moto.client("kms")
    key = kms.create_key(Description="e2e customer managed key")["KeyMetadata"]
    kms.create_alias(AliasName="alias/fhirlake-e2e", TargetKeyId=key["KeyId"])
    return CustomerKey(key["Arn"], "alias/fhirlake-e2e")


@pytest.fixture(scope="session")
def introspection():
    """The token-introspection endpoint the session's server sends the tokens of datastores
    with an IdpLambdaArn to (its answers are set by the tests)."""
    endpoint = IntrospectionEndpoint()
    yield endpoint
    endpoint.stop()


def started_server(tmp_path_factory, aws_backend, name, extra):
    """A started server on the suite's backend (the embedded store, or AWS on moto) with its
    own data and log directories named after `name`, and the extra flags."""
    data, logs = tmp_path_factory.mktemp(f"{name}-data"), tmp_path_factory.mktemp(f"{name}-logs")
    if aws_backend is None:
        srv = Server(_binary(), data, logs, backend_args=extra)
    else:
        srv = Server(_binary(), data, logs, backend_args=aws_backend.args() + extra, backend_env=aws_backend.moto.env)
    srv.start()
    return srv


@pytest.fixture(scope="session")
def server(tmp_path_factory, aws_backend, introspection):
    srv = started_server(tmp_path_factory, aws_backend, "server", ["--token-introspection-url", introspection.url])
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def bulk_server(tmp_path_factory, aws_backend):
    """A server with storage of its own (on moto: its own table, bucket and key), for tests that
    write thousands of items: moto's Query reads every item of the table (DynamoDB's reads only
    the partition), so on the shared table they would slow every later test."""
    if aws_backend is None:
        srv = Server(_binary(), tmp_path_factory.mktemp("bulk-data"), tmp_path_factory.mktemp("bulk-logs"))
    else:
        own = _aws_init(aws_backend.moto, f"bulk-{uuid.uuid4().hex[:8]}")
        srv = Server(_binary(), tmp_path_factory.mktemp("bulk-data"), tmp_path_factory.mktemp("bulk-logs"),
                     backend_args=own.args(), backend_env=aws_backend.moto.env)
    srv.start()
    yield srv
    srv.stop()


def _healthlake_client(server):
    session = boto3.session.Session(aws_access_key_id=server.access_key, aws_secret_access_key=server.secret_key,
                                    region_name=server.region)
    return session.client("healthlake", endpoint_url=server.base_url,
                          config=Config(retries={"mode": "standard", "max_attempts": 1}))


def _active_datastore(healthlake, name=None):
    created = healthlake.create_fhir_datastore(DatastoreTypeVersion="R4", DatastoreName=name or f"e2e-{uuid.uuid4().hex[:12]}")
    datastore_id = created["DatastoreId"]
    healthlake.get_waiter("fhir_datastore_active").wait(DatastoreId=datastore_id, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    props = healthlake.describe_fhir_datastore(DatastoreId=datastore_id)["DatastoreProperties"]
    return Datastore(datastore_id, props["DatastoreEndpoint"], props["DatastoreArn"])


@pytest.fixture
def bulk_fhir(bulk_server):
    """A FHIR client on a fresh datastore of [`bulk_server`]."""
    ds = _active_datastore(_healthlake_client(bulk_server))
    return SigV4Http(ds.endpoint, bulk_server.access_key, bulk_server.secret_key, bulk_server.region)


@pytest.fixture(scope="session")
def healthlake(server):
    """A boto3 `healthlake` client pointed at the server, without retries (failures stay visible)."""
    return _healthlake_client(server)


@dataclass
class CliResult:
    returncode: int
    json: object
    stdout: str
    stderr: str


@pytest.fixture(scope="session")
def aws_cli(server):
    """Runs `aws healthlake <args>` (AWS CLI v1 from the venv) against the server."""
    aws = pathlib.Path(sys.executable).parent / "aws"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({
        "AWS_ACCESS_KEY_ID": server.access_key,
        "AWS_SECRET_ACCESS_KEY": server.secret_key,
        "AWS_DEFAULT_REGION": server.region,
        "AWS_CONFIG_FILE": os.environ["AWS_CONFIG_FILE"],
        "AWS_SHARED_CREDENTIALS_FILE": os.environ["AWS_SHARED_CREDENTIALS_FILE"],
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_PAGER": "",
    })

    def run(*args, env_overrides=None, timeout=60):
        proc = subprocess.run(
            [str(aws), "healthlake", *args, "--endpoint-url", server.base_url, "--output", "json"],
            env={**env, **(env_overrides or {})}, capture_output=True, text=True, timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        try:
            parsed = json.loads(proc.stdout) if proc.stdout.strip() else None
        except json.JSONDecodeError:
            parsed = None
        return CliResult(proc.returncode, parsed, proc.stdout, proc.stderr)

    return run


@dataclass
class Datastore:
    id: str
    endpoint: str
    arn: str


@pytest.fixture(scope="session")
def new_datastore(healthlake):
    """A factory: creates a datastore with boto3 and waits until it is ACTIVE."""

    def create(name=None):
        return _active_datastore(healthlake, name)

    return create


@pytest.fixture(scope="session")
def datastore(new_datastore):
    """One ACTIVE datastore shared by the data-plane tests."""
    return new_datastore("e2e-shared")


@pytest.fixture(scope="session")
def fhir(server, datastore):
    """A SigV4-signing FHIR client on the shared datastore's endpoint (paths like `Patient/123`)."""
    return SigV4Http(datastore.endpoint, server.access_key, server.secret_key, server.region)


@pytest.fixture
def fresh_fhir(server, new_datastore):
    """A FHIR client on a datastore of its own, for tests that count everything written."""
    ds = new_datastore()
    return SigV4Http(ds.endpoint, server.access_key, server.secret_key, server.region)


@pytest.fixture(scope="session")
def control(server):
    """A SigV4-signing client for raw control-plane calls (POST / with X-Amz-Target)."""
    return SigV4Http(server.base_url, server.access_key, server.secret_key, server.region)

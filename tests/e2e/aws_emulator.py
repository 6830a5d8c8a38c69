"""A moto server on 127.0.0.1 for the `--backend aws` run of the end-to-end suite, started
through tests/tools/moto_serialised.py (the same wrapper the Rust tests use)."""

import os
import pathlib
import socket
import subprocess
import sys
import time
import urllib.request

SCRIPT = pathlib.Path(__file__).resolve().parent.parent / "tools" / "moto_serialised.py"
START_TIMEOUT = 60
REGION = "us-east-1"


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Moto:
    """A running moto server; `env` is what a client process needs to reach it."""

    def __init__(self, log_path):
        self.port = _free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log_path = pathlib.Path(log_path)
        self.env = {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(SCRIPT), "-H", "127.0.0.1", "-p", str(self.port)],
                env={**os.environ, "S3_UPLOAD_PART_MIN_SIZE": "256"},
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto exited with {self.process.returncode}; see {self.log_path}")
            try:
                urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=2).read()
                return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"moto did not answer within {START_TIMEOUT}s; see {self.log_path}")

    def client(self, service):
        """A boto3 client of `service` on this server."""
        import boto3
        return boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION,
        ).client(service, endpoint_url=self.endpoint)

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

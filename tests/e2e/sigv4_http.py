"""A small HTTP client that signs every request with botocore's SigV4Auth, as HealthLake clients do.

The URL is prepared by `requests` first, so the path and query botocore signs are exactly the
bytes that go on the wire; then `SigV4Auth(credentials, 'healthlake', region).add_auth` adds
X-Amz-Date and Authorization. `tamper` and `at` let auth tests send requests that were signed
for something else or at another time.
"""

import datetime
import json as jsonlib
import threading
from unittest import mock

import botocore.auth
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

FHIR_JSON = "application/fhir+json"
AMZ_JSON = "application/x-amz-json-1.0"


class SigV4Http:
    """Sends SigV4-signed requests to URLs relative to `base_url` (absolute URLs pass through)."""

    def __init__(self, base_url, access_key, secret_key, region, service="healthlake", timeout=60):
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.access_key = access_key
        self.secret_key = secret_key
        self.region = region
        self.service = service
        self.timeout = timeout
        self._local = threading.local()

    def with_credentials(self, access_key=None, secret_key=None, region=None, service=None):
        """The same client signing with other credentials, region or service."""
        return type(self)(
            self.base_url,
            access_key or self.access_key,
            secret_key or self.secret_key,
            region or self.region,
            service or self.service,
            self.timeout,
        )

    @property
    def session(self):
        # requests.Session is not thread-safe: one per thread, so tests can write concurrently.
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
        return self._local.session

    def url(self, path):
        if path.startswith(("http://", "https://")):
            return path
        return self.base_url + path.lstrip("/")

    def request(self, method, path, *, json=None, data=None, headers=None, params=None,
                sign=True, at=None, tamper=None, content_type=FHIR_JSON):
        """Sends one request and returns the `requests.Response`.

        json/data: body (a JSON-serialisable value, or str/bytes sent as is).
        sign: False sends the request without any signature.
        at: a `datetime` (naive UTC) to sign at instead of now.
        tamper: a callable given the signed `requests.PreparedRequest` to modify before sending.
        """
        headers = dict(headers or {})
        body = None
        if json is not None:
            body = jsonlib.dumps(json).encode("utf-8")
        elif data is not None:
            body = data.encode("utf-8") if isinstance(data, str) else data
        if body is not None and not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = content_type

        prepared = requests.Request(method, self.url(path), params=params, data=body, headers=headers).prepare()
        if sign:
            signed = AWSRequest(method=method, url=prepared.url, data=body or b"", headers=headers)
            credentials = Credentials(self.access_key, self.secret_key)
            signer = SigV4Auth(credentials, self.service, self.region)
            if at is None:
                signer.add_auth(signed)
            else:
                with mock.patch.object(botocore.auth, "get_current_datetime", return_value=at):
                    signer.add_auth(signed)
            for name, value in signed.headers.items():
                prepared.headers[name] = value
        if tamper is not None:
            tamper(prepared)
        return self.session.send(prepared, timeout=self.timeout, allow_redirects=False)

    def raw(self, method, path, **kwargs):
        """An unsigned request (or pass tamper/at/sign explicitly)."""
        kwargs.setdefault("sign", False)
        return self.request(method, path, **kwargs)

    def get(self, path, **kwargs):
        return self.request("GET", path, **kwargs)

    def post(self, path, json=None, **kwargs):
        return self.request("POST", path, json=json, **kwargs)

    def put(self, path, json=None, **kwargs):
        return self.request("PUT", path, json=json, **kwargs)

    def patch(self, path, json=None, **kwargs):
        return self.request("PATCH", path, json=json, **kwargs)

    def delete(self, path, **kwargs):
        return self.request("DELETE", path, **kwargs)

    def control(self, operation, payload=None, **kwargs):
        """A HealthLake control-plane call: POST / with X-Amz-Target: HealthLake.<operation>."""
        headers = {"X-Amz-Target": f"HealthLake.{operation}", **kwargs.pop("headers", {})}
        return self.request("POST", "", json=payload if payload is not None else {}, headers=headers,
                            content_type=AMZ_JSON, **kwargs)


def minutes_ago(minutes):
    """A naive UTC datetime `minutes` in the past (negative: in the future), for `at=`."""
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) - datetime.timedelta(minutes=minutes)

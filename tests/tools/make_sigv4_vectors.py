#!/usr/bin/env python3
"""Writes shared/fhirlake-auth/tests/vectors.json: SigV4 signatures made by botocore itself.

Every vector is a request as it goes over the wire (method, raw path, raw query, headers
including Host, body) together with botocore's own signature of it, so the Rust verifier is
tested against the client it has to accept, byte for byte. Credentials and the signing time are
fixed, so the output is reproducible; rerun after a botocore upgrade and diff:

    tests/.venv/bin/python tests/tools/make_sigv4_vectors.py
"""

import datetime
import json
import pathlib
from unittest import mock
from urllib.parse import urlsplit

import boto3
import botocore
import botocore.auth
from botocore.auth import SigV4Auth, SigV4QueryAuth, _host_from_url
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

ACCESS_KEY = "AKIDFHIRLAKETEST0001"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYFHIRLAKEKEY"
REGION = "us-east-1"
SERVICE = "healthlake"
NOW = datetime.datetime(2024, 5, 1, 12, 0, 0)
BASE = "http://localhost:8080"
DS = "/datastore/0123456789abcdef0123456789abcdef/r4"
OUT = pathlib.Path(__file__).resolve().parents[2] / "shared/fhirlake-auth/tests/vectors.json"

CREDENTIALS = Credentials(ACCESS_KEY, SECRET_KEY)


def text(value):
    return value.decode("utf-8") if isinstance(value, bytes) else value


def vector(name, prepared, body, signer, *, allow_unsigned_payload=False):
    """Records a signed request as it would be sent: url split into raw path and query."""
    parts = urlsplit(prepared.url)
    headers = [[text(k), text(v)] for k, v in prepared.headers.items()]
    if not any(k.lower() == "host" for k, _ in headers):
        # The HTTP client adds Host; botocore signs the value it will have.
        headers.insert(0, ["Host", _host_from_url(prepared.url)])
    return {
        "name": name,
        "method": prepared.method,
        "path": parts.path,
        "query": parts.query,
        "headers": headers,
        "body": body.decode("utf-8") if isinstance(body, bytes) else (body or ""),
        "now": NOW.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": REGION,
        "service": SERVICE,
        "allow_unsigned_payload": allow_unsigned_payload,
        "canonical_request": signer.get("canonical_request", ""),
    }


def sign(name, method, url, *, body=b"", headers=None, params=None, context=None,
         query_auth=False, allow_unsigned_payload=False):
    request = AWSRequest(method=method, url=url, data=body, headers=headers or {}, params=params or {})
    request.context.update(context or {})
    auth = (SigV4QueryAuth(CREDENTIALS, SERVICE, REGION, expires=300)
            if query_auth else SigV4Auth(CREDENTIALS, SERVICE, REGION))
    captured = {}
    original = auth.canonical_request

    def capture(req):
        captured["canonical_request"] = original(req)
        return captured["canonical_request"]

    with mock.patch.object(auth, "canonical_request", side_effect=capture):
        auth.add_auth(request)
    return vector(name, request.prepare(), body, captured, allow_unsigned_payload=allow_unsigned_payload)


class Captured(Exception):
    """Raised from botocore's before-send hook to stop a client call once it is signed."""

    def __init__(self, request):
        super().__init__("captured")
        self.request = request


def client_vectors():
    """Signed control-plane requests made by a real boto3 healthlake client."""
    session = boto3.session.Session(aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                                    region_name=REGION)
    client = session.client("healthlake", endpoint_url=BASE)

    def stop(request, **_):
        raise Captured(request)

    client.meta.events.register("before-send.healthlake.*", stop)
    calls = [
        ("control plane CreateFHIRDatastore", lambda: client.create_fhir_datastore(
            DatastoreTypeVersion="R4", DatastoreName="vectors", ClientToken="token-0001")),
        ("control plane ListFHIRDatastores", lambda: client.list_fhir_datastores(MaxResults=5)),
        ("control plane DescribeFHIRDatastore", lambda: client.describe_fhir_datastore(
            DatastoreId="0123456789abcdef0123456789abcdef")),
    ]
    out = []
    for name, call in calls:
        try:
            call()
        except Captured as c:
            req = c.request
            body = req.body if isinstance(req.body, bytes) else (req.body or "").encode()
            out.append(vector(name, req, body, {}))
    return out


def all_vectors():
    fhir_json = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
    patient = json.dumps({"resourceType": "Patient", "name": [{"family": "Smith", "given": ["José"]}]}).encode()
    return [
        sign("get read", "GET", f"{BASE}{DS}/Patient/123", headers={"Accept": "application/fhir+json"}),
        sign("get metadata on default port", "GET", f"http://localhost{DS}/metadata"),
        sign("get with an empty path", "GET", "http://127.0.0.1:9000"),
        sign("get search raw query with repeated keys and colons", "GET",
             f"{BASE}{DS}/Patient?name=Smith&name=Jones&_count=10&birthdate=ge2020-01-01&_since=2024-01-01T00:00:00Z"),
        sign("get search rfc3986 encoded query", "GET",
             f"{BASE}{DS}/Observation?code=http%3A%2F%2Floinc.org%7C1234-5&address=1%20Main%20St&given=Jos%C3%A9"),
        sign("get search query with plus and empty values", "GET",
             f"{BASE}{DS}/Patient?name=John+Smith&flag&empty=&a-b=1&a=2"),
        sign("get search params form encoded by botocore", "GET", f"{BASE}{DS}/Patient",
             params={"name": "a b", "x": "ü/?&=", "_sort": "-_lastUpdated"}),
        sign("post create json", "POST", f"{BASE}{DS}/Patient", body=patient, headers=fhir_json),
        sign("put update with if-match and messy header whitespace", "PUT", f"{BASE}{DS}/Patient/123", body=patient,
             headers={**fhir_json, "If-Match": 'W/"1"', "Prefer": "  return=representation   ,  handling=strict "}),
        sign("patch json patch", "PATCH", f"{BASE}{DS}/Patient/123",
             body=b'[{"op":"replace","path":"/active","value":true}]',
             headers={"Content-Type": "application/json-patch+json"}),
        sign("delete", "DELETE", f"{BASE}{DS}/Patient/123"),
        sign("get history paging", "GET", f"{BASE}{DS}/Patient/123/_history?_count=2&_since=2024-01-01T00%3A00%3A00Z"),
        sign("get vread", "GET", f"{BASE}{DS}/Patient/123/_history/2"),
        sign("post operation path with dollar", "POST", f"{BASE}{DS}/Patient/$validate", body=patient,
             headers=fhir_json),
        sign("get path with percent-encoded space", "GET", f"{BASE}{DS}/Binary/a%20b%2Fc"),
        sign("get path with colons", "GET", f"{BASE}{DS}/Patient/urn:uuid:6e7a:1"),
        sign("get path with encoded unicode", "GET", f"{BASE}{DS}/Patient/%C3%A9t%C3%A9"),
        sign("get path with raw unicode", "GET", f"{BASE}{DS}/Patient/été"),
        sign("get path with dot segments and double slashes", "GET", f"{BASE}{DS}/./Patient//123/../124"),
        sign("get with a date header instead of x-amz-date", "GET", f"{BASE}{DS}/Patient/123",
             headers={"Date": "Wed, 01 May 2024 11:00:00 GMT"}),
        sign("post with an explicit x-amz-content-sha256", "POST", f"{BASE}{DS}/Patient", body=patient,
             headers={**fhir_json, "X-Amz-Content-SHA256": botocore.auth.sha256(patient).hexdigest()}),
        sign("post with unsigned payload over https", "POST", f"https://localhost:8443{DS}/Patient", body=patient,
             headers=fhir_json, context={"payload_signing_enabled": False}, allow_unsigned_payload=True),
        sign("presigned get", "GET", f"{BASE}{DS}/Patient/123?_elements=id", query_auth=True),
        *client_vectors(),
    ]


def main():
    with mock.patch("botocore.auth.get_current_datetime", return_value=NOW):
        vectors = all_vectors()
    document = {
        "generated_by": "tests/tools/make_sigv4_vectors.py",
        "botocore_version": botocore.__version__,
        "access_key_id": ACCESS_KEY,
        "secret_access_key": SECRET_KEY,
        "vectors": vectors,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {len(vectors)} vectors to {OUT}")


if __name__ == "__main__":
    main()

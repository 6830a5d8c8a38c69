"""SigV4 (AWS_AUTH) on both planes: only requests signed for `healthlake` in the server's region,
with the configured key pair, within 15 minutes of the server's clock, over exactly the bytes
sent, are served. Every refusal is a 403: an OperationOutcome on the data plane and an AWS JSON
error (`__type`) on the control plane."""

import uuid

import boto3
import botocore.exceptions
import pytest
from botocore.config import Config

from fhir_asserts import all_history, error_outcome
from sigv4_http import minutes_ago


def control_error(resp, status=403):
    assert resp.status_code == status, f"expected {status}, got {resp.status_code}: {resp.text[:500]}"
    body = resp.json()
    assert isinstance(body.get("__type"), str) and body["__type"], body
    message = body.get("message", body.get("Message"))
    assert isinstance(message, str) and message, body
    return body


def patient_count(fhir):
    entries, _ = all_history(fhir, "Patient/_history")
    return len(entries)


# --- the happy path, so the refusals below mean something -----------------------------------------

def test_signed_requests_are_served_on_both_planes(fhir, control, datastore):
    resp = control.control("DescribeFHIRDatastore", {"DatastoreId": datastore.id})
    assert resp.status_code == 200, resp.text
    assert resp.json()["DatastoreProperties"]["DatastoreId"] == datastore.id
    assert fhir.get("metadata").status_code == 200
    created = fhir.post("Patient", json={"resourceType": "Patient"})
    assert created.status_code == 201, created.text
    assert fhir.get(f"Patient/{created.json()['id']}").status_code == 200


def test_a_signature_ten_minutes_old_is_still_accepted(fhir, control):
    assert fhir.get("metadata", at=minutes_ago(10)).status_code == 200
    assert control.control("ListFHIRDatastores", at=minutes_ago(10)).status_code == 200


# --- data plane refusals --------------------------------------------------------------------------

def test_unsigned_data_plane_request_is_403(fhir):
    error_outcome(fhir.raw("GET", "metadata"), 403)
    error_outcome(fhir.raw("POST", "Patient", json={"resourceType": "Patient"}), 403)


@pytest.mark.parametrize("credentials", [
    pytest.param({"secret_key": "not-the-secret"}, id="wrong secret"),
    pytest.param({"access_key": "AKIDUNKNOWN000000000"}, id="unknown access key"),
    pytest.param({"region": "eu-west-1"}, id="other region"),
    pytest.param({"service": "execute-api"}, id="other service"),
])
def test_data_plane_rejects_other_credentials_or_scope(fhir, credentials):
    other = fhir.with_credentials(**credentials)
    error_outcome(other.get("metadata"), 403)
    error_outcome(other.post("Patient", json={"resourceType": "Patient"}), 403)


@pytest.mark.parametrize("minutes", [20, -20], ids=["stale", "future"])
def test_data_plane_rejects_a_skewed_signature(fhir, minutes):
    error_outcome(fhir.get("metadata", at=minutes_ago(minutes)), 403)


def test_tampered_body_is_403_and_writes_nothing(fresh_fhir):
    before = patient_count(fresh_fhir)

    def swap_body(prepared):
        prepared.body = b'{"resourceType": "Patient", "active": false}'
        prepared.headers["Content-Length"] = str(len(prepared.body))

    resp = fresh_fhir.post("Patient", json={"resourceType": "Patient", "active": True}, tamper=swap_body)
    error_outcome(resp, 403)
    assert patient_count(fresh_fhir) == before


@pytest.mark.parametrize("tamper", [
    pytest.param(lambda p: setattr(p, "url", p.url.replace("/Patient", "/Observation")), id="path"),
    pytest.param(lambda p: setattr(p, "url", p.url + "&_count=2"), id="query"),
    pytest.param(lambda p: setattr(p, "method", "DELETE"), id="method"),
    pytest.param(lambda p: p.headers.__setitem__("X-Amz-Date", "20200101T000000Z"), id="x-amz-date"),
    pytest.param(lambda p: p.headers.__setitem__("Authorization", p.headers["Authorization"][:-4] + "0000"),
                 id="signature"),
    pytest.param(lambda p: p.headers.__setitem__("Authorization", "AWS4-HMAC-SHA256 garbage"), id="garbage header"),
    pytest.param(lambda p: p.headers.__setitem__("Authorization", "Bearer abc.def.ghi"), id="bearer token"),
])
def test_data_plane_rejects_a_tampered_request(fhir, tamper):
    error_outcome(fhir.get("Patient/_history", params={"_count": 1}, tamper=tamper), 403)


def test_unknown_datastore_requires_auth_first(fhir):
    base = fhir.base_url.split("/datastore/")[0]
    error_outcome(fhir.raw("GET", f"{base}/datastore/{uuid.uuid4().hex}/r4/Patient/1"), 403)


# --- control plane refusals -----------------------------------------------------------------------

def test_unsigned_control_plane_request_is_an_aws_json_403(control):
    body = control_error(control.control("ListFHIRDatastores", sign=False))
    assert body["__type"].split("#")[-1] in (
        "AccessDeniedException", "MissingAuthenticationTokenException", "UnrecognizedClientException",
        "IncompleteSignatureException")


@pytest.mark.parametrize("credentials", [
    pytest.param({"secret_key": "not-the-secret"}, id="wrong secret"),
    pytest.param({"access_key": "AKIDUNKNOWN000000000"}, id="unknown access key"),
    pytest.param({"region": "eu-west-1"}, id="other region"),
    pytest.param({"service": "execute-api"}, id="other service"),
])
def test_control_plane_rejects_other_credentials_or_scope(control, credentials):
    control_error(control.with_credentials(**credentials).control("ListFHIRDatastores"))


@pytest.mark.parametrize("minutes", [20, -20], ids=["stale", "future"])
def test_control_plane_rejects_a_skewed_signature(control, minutes):
    control_error(control.control("ListFHIRDatastores", at=minutes_ago(minutes)))


def test_control_plane_rejects_a_tampered_body(control, healthlake):
    before = len(healthlake.list_fhir_datastores()["DatastorePropertiesList"])

    def swap_body(prepared):
        prepared.body = b'{"DatastoreTypeVersion": "R4", "DatastoreName": "tampered"}'
        prepared.headers["Content-Length"] = str(len(prepared.body))

    resp = control.control("CreateFHIRDatastore", {"DatastoreTypeVersion": "R4", "DatastoreName": "signed"},
                           tamper=swap_body)
    control_error(resp)
    assert len(healthlake.list_fhir_datastores()["DatastorePropertiesList"]) == before


def test_boto3_with_a_wrong_secret_gets_403(server):
    client = boto3.session.Session(aws_access_key_id=server.access_key, aws_secret_access_key="wrong",
                                   region_name=server.region).client(
        "healthlake", endpoint_url=server.base_url, config=Config(retries={"max_attempts": 1, "mode": "standard"}))
    with pytest.raises(botocore.exceptions.ClientError) as raised:
        client.list_fhir_datastores()
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert raised.value.response["Error"]["Code"]


def test_aws_cli_with_a_wrong_secret_fails(aws_cli):
    ok = aws_cli("list-fhir-datastores")
    assert ok.returncode == 0, ok.stderr
    assert isinstance(ok.json["DatastorePropertiesList"], list)
    denied = aws_cli("list-fhir-datastores", env_overrides={"AWS_SECRET_ACCESS_KEY": "wrong"})
    assert denied.returncode != 0
    assert "An error occurred (" in denied.stderr, denied.stderr

"""The audit trail from the outside: every request on both planes leaves a record in
`<data-dir>/audit/audit.jsonl` (who, what, which resource, outcome, request id; never content),
and with `--audit-events` each data-plane record is also a FHIR AuditEvent in its datastore."""

import json
import uuid

import pytest

from conftest import _active_datastore, _healthlake_client, started_server
from sigv4_http import SigV4Http


@pytest.fixture(scope="module")
def auditing_server(tmp_path_factory, aws_backend):
    """A server of its own storing audit records as AuditEvent resources too."""
    srv = started_server(tmp_path_factory, aws_backend, "audit", ["--audit-events"])
    yield srv
    srv.stop()


def test_each_request_is_recorded_with_ids_and_without_content(auditing_server):
    healthlake = _healthlake_client(auditing_server)
    datastore = _active_datastore(healthlake)
    fhir = SigV4Http(datastore.endpoint, auditing_server.access_key, auditing_server.secret_key, auditing_server.region)
    family = f"Auditfam{uuid.uuid4().hex[:10]}"
    created = fhir.post("Patient", json={"resourceType": "Patient", "name": [{"family": family}]})
    assert created.status_code == 201, created.text
    patient_id = created.json()["id"]
    read = fhir.get(f"Patient/{patient_id}")
    assert read.status_code == 200
    request_id = read.headers["x-amzn-requestid"]
    assert fhir.get("Patient", params={"family": family}).status_code == 200
    unsigned = SigV4Http(datastore.endpoint, "AKIDNOBODY0000000000", "wrong", auditing_server.region)
    assert unsigned.get(f"Patient/{patient_id}").status_code == 403

    mine = lambda r: r.get("datastoreId") == datastore.id   # noqa: E731
    records = auditing_server.audit_records(mine, expect=5)
    by_request = {r["requestId"]: r for r in records}
    assert by_request[request_id] == {
        "time": by_request[request_id]["time"], "requestId": request_id, "plane": "data",
        "principal": auditing_server.access_key, "authentication": "sigv4", "operation": "ReadResource",
        "datastoreId": datastore.id, "resourceType": "Patient", "resourceId": patient_id,
        "outcome": "success", "status": 200}
    operations = [(r["operation"], r["outcome"]) for r in records if r["plane"] == "data"]
    assert ("CreateResource", "success") in operations and ("SearchWithGet", "success") in operations
    assert ("ReadResource", "denied") in operations
    control = [r for r in records if r["plane"] == "control"]
    assert any(r["operation"] == "DescribeFHIRDatastore" for r in control), control
    assert family not in json.dumps(records)

    # The same records as AuditEvent resources of the datastore, searchable by what they touched.
    events = fhir.get("AuditEvent", params={"entity": f"Patient/{patient_id}", "_count": "100"})
    assert events.status_code == 200, events.text
    resources = [e["resource"] for e in events.json().get("entry", [])]
    subtypes = {c["code"] for r in resources for c in r.get("subtype", [])}
    assert {"create", "read"} <= subtypes, subtypes
    reads = [r for r in resources if any(c["code"] == "read" for c in r.get("subtype", []))]
    (read_event,) = [r for r in reads if r["outcome"] == "0"]
    assert read_event["agent"][0]["who"]["identifier"]["value"] == auditing_server.access_key
    assert read_event["agent"][0]["requestor"] is True
    (denied,) = [r for r in reads if r["outcome"] != "0"]
    assert denied["outcome"] == "4" and denied["agent"][0]["who"]["identifier"]["value"] == "anonymous"
    assert family not in events.text

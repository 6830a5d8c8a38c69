"""The FHIR R4 data plane at /datastore/{id}/r4/ (http://hl7.org/fhir/R4/http.html), driven with
SigV4-signed HTTP exactly as HealthLake clients send it."""

import datetime
import threading
import time
import uuid

import pytest

from fhir_asserts import (
    FHIR_ID,
    all_history,
    bundle_entries,
    entry_version,
    error_outcome,
    etag_version,
    http_date,
    instant,
    location_id_and_version,
    outcome,
)
from sigv4_http import SigV4Http


def patient(family="Smith", **extra):
    return {"resourceType": "Patient", "active": True, "name": [{"family": family, "given": ["Ann"]}], **extra}


def create(fhir, resource):
    resp = fhir.post(resource["resourceType"], json=resource)
    assert resp.status_code == 201, resp.text[:500]
    return resp.json()


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc)


# --- create, read, vread ------------------------------------------------------------------------

def test_create_assigns_id_version_and_headers(fhir):
    before = utcnow() - datetime.timedelta(seconds=5)
    body = patient(meta={"versionId": "42", "lastUpdated": "2001-01-01T00:00:00Z"})
    resp = fhir.post("Patient", json=body)
    assert resp.status_code == 201, resp.text
    created = resp.json()
    assert created["resourceType"] == "Patient"
    assert FHIR_ID.match(created["id"])
    assert created["name"] == body["name"] and created["active"] is True
    # meta is the server's, whatever the client sent.
    assert created["meta"]["versionId"] == "1"
    last_updated = instant(created["meta"]["lastUpdated"])
    assert before <= last_updated <= utcnow() + datetime.timedelta(seconds=5)
    assert location_id_and_version(resp, "Patient") == (created["id"], "1")
    assert resp.headers["ETag"] == 'W/"1"'
    last_modified = http_date(resp.headers["Last-Modified"])
    assert abs((last_modified - last_updated).total_seconds()) < 1
    assert resp.headers["Content-Type"].startswith("application/fhir+json")


def test_create_ignores_or_rejects_a_client_id(fhir):
    client_id = f"client-{uuid.uuid4().hex[:8]}"
    resp = fhir.post("Patient", json=patient(id=client_id))
    # R4 http.html#create: the server SHALL either ignore the id or return 400.
    if resp.status_code == 201:
        assert resp.json()["id"] != client_id
    else:
        error_outcome(resp, 400)
    assert fhir.get(f"Patient/{client_id}").status_code == 404


def test_read_returns_the_current_version(fhir):
    created = create(fhir, patient("Read"))
    resp = fhir.get(f"Patient/{created['id']}")
    assert resp.status_code == 200, resp.text
    assert resp.json() == created
    assert resp.headers["ETag"] == 'W/"1"'
    assert http_date(resp.headers["Last-Modified"])
    assert resp.headers["Content-Type"].startswith("application/fhir+json")


def test_read_of_an_unknown_id_is_404(fhir):
    error_outcome(fhir.get(f"Patient/{uuid.uuid4()}"), 404)


def test_vread_returns_each_version(fhir):
    created = create(fhir, patient("Vread"))
    rid = created["id"]
    updated = {**created, "active": False}
    assert fhir.put(f"Patient/{rid}", json=updated).status_code == 200
    v1 = fhir.get(f"Patient/{rid}/_history/1")
    assert v1.status_code == 200, v1.text
    assert v1.json()["active"] is True and v1.json()["meta"]["versionId"] == "1"
    assert v1.headers["ETag"] == 'W/"1"'
    v2 = fhir.get(f"Patient/{rid}/_history/2")
    assert v2.status_code == 200 and v2.json()["active"] is False and v2.headers["ETag"] == 'W/"2"'
    error_outcome(fhir.get(f"Patient/{rid}/_history/3"), 404)


# --- update ---------------------------------------------------------------------------------------

def test_update_creates_a_new_version(fhir):
    created = create(fhir, patient("Update"))
    rid = created["id"]
    time.sleep(0.01)
    resp = fhir.put(f"Patient/{rid}", json={**created, "gender": "female", "meta": {"versionId": "7"}})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["gender"] == "female" and body["meta"]["versionId"] == "2"
    assert resp.headers["ETag"] == 'W/"2"'
    assert instant(body["meta"]["lastUpdated"]) >= instant(created["meta"]["lastUpdated"])
    assert fhir.get(f"Patient/{rid}").json() == body


def test_update_with_a_new_client_id_creates(fhir):
    rid = f"client-{uuid.uuid4().hex[:12]}"
    resp = fhir.put(f"Patient/{rid}", json=patient("CreateOnUpdate", id=rid))
    assert resp.status_code == 201, resp.text
    assert resp.json()["id"] == rid and resp.json()["meta"]["versionId"] == "1"
    assert location_id_and_version(resp, "Patient") == (rid, "1")
    assert resp.headers["ETag"] == 'W/"1"'
    assert fhir.get(f"Patient/{rid}").status_code == 200


def test_if_match_guards_updates(fhir):
    created = create(fhir, patient("IfMatch"))
    rid = created["id"]
    ok = fhir.put(f"Patient/{rid}", json={**created, "gender": "male"}, headers={"If-Match": 'W/"1"'})
    assert ok.status_code == 200, ok.text
    assert etag_version(ok) == "2"
    stale = fhir.put(f"Patient/{rid}", json={**created, "gender": "other"}, headers={"If-Match": 'W/"1"'})
    error_outcome(stale, 412)
    current = fhir.get(f"Patient/{rid}")
    assert current.headers["ETag"] == 'W/"2"' and current.json()["gender"] == "male"


def test_concurrent_conditional_updates_lose_nothing(fhir):
    created = create(fhir, patient("Concurrent"))
    rid = created["id"]
    workers = 10
    barrier = threading.Barrier(workers)
    results = [None] * workers

    def worker(i):
        current = fhir.get(f"Patient/{rid}")
        body = current.json()
        etag = current.headers["ETag"]
        body["name"][0]["given"] = [f"writer-{i}"]
        barrier.wait(timeout=30)
        resp = fhir.put(f"Patient/{rid}", json=body, headers={"If-Match": etag})
        results[i] = (resp.status_code, resp.headers.get("ETag"), resp.text)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert all(r is not None for r in results), results
    statuses = [r[0] for r in results]
    assert set(statuses) <= {200, 412}, results
    wins = [r[1] for r in results if r[0] == 200]
    assert wins, "no writer succeeded"
    assert len(set(wins)) == len(wins), f"two writers produced the same version: {wins}"
    final = fhir.get(f"Patient/{rid}")
    assert etag_version(final) == str(1 + len(wins))
    entries, _ = all_history(fhir, f"Patient/{rid}/_history")
    assert len(entries) == 1 + len(wins)


def test_update_rejects_an_id_mismatch_and_a_missing_id(fhir):
    created = create(fhir, patient("Mismatch"))
    rid = created["id"]
    error_outcome(fhir.put(f"Patient/{rid}", json={**created, "id": "someone-else"}), 400)
    body = {k: v for k, v in created.items() if k != "id"}
    error_outcome(fhir.put(f"Patient/{rid}", json=body), 400)
    assert fhir.get(f"Patient/{rid}").headers["ETag"] == 'W/"1"'


# --- delete ---------------------------------------------------------------------------------------

def test_delete_is_soft(fhir):
    created = create(fhir, patient("Delete"))
    rid = created["id"]
    resp = fhir.delete(f"Patient/{rid}")
    assert resp.status_code in (200, 204), resp.text
    if resp.status_code == 204:
        assert resp.content == b""
    error_outcome(fhir.get(f"Patient/{rid}"), 410)
    old = fhir.get(f"Patient/{rid}/_history/1")
    assert old.status_code == 200 and old.json()["name"] == created["name"]

    entries, _ = all_history(fhir, f"Patient/{rid}/_history")
    assert [e["request"]["method"] for e in entries] == ["DELETE", "POST"]
    assert "resource" not in entries[0]
    assert entries[0]["request"]["url"].endswith(f"Patient/{rid}")
    assert entries[1]["resource"]["meta"]["versionId"] == "1"

    again = fhir.delete(f"Patient/{rid}")
    assert again.status_code in (200, 204, 404)


def test_delete_of_an_unknown_resource(fhir):
    assert fhir.delete(f"Patient/{uuid.uuid4()}").status_code in (200, 204, 404)


def test_update_after_delete_revives_with_a_later_version(fhir):
    created = create(fhir, patient("Revive"))
    rid = created["id"]
    assert fhir.delete(f"Patient/{rid}").status_code in (200, 204)
    resp = fhir.put(f"Patient/{rid}", json={**created, "active": False})
    assert resp.status_code in (200, 201), resp.text
    version = resp.json()["meta"]["versionId"]
    assert int(version) > 1
    assert etag_version(resp) == version
    read = fhir.get(f"Patient/{rid}")
    assert read.status_code == 200 and read.json()["active"] is False
    entries, _ = all_history(fhir, f"Patient/{rid}/_history")
    assert [e["request"]["method"] for e in entries] == ["PUT", "DELETE", "POST"]


# --- history --------------------------------------------------------------------------------------

def make_versions(fhir, count, family="History"):
    created = create(fhir, patient(family))
    rid = created["id"]
    for i in range(2, count + 1):
        resp = fhir.put(f"Patient/{rid}", json={**created, "name": [{"family": family, "given": [f"v{i}"]}]})
        assert resp.status_code == 200, resp.text
    return rid


def test_instance_history_lists_versions_newest_first(fhir):
    rid = make_versions(fhir, 4)
    resp = fhir.get(f"Patient/{rid}/_history")
    assert resp.status_code == 200, resp.text
    entries = bundle_entries(resp.json())
    assert [entry_version(e) for e in entries] == ["4", "3", "2", "1"]
    assert [e["request"]["method"] for e in entries] == ["PUT", "PUT", "PUT", "POST"]
    assert entries[-1]["response"]["status"].startswith("201")
    assert entries[0]["response"]["status"].startswith("200")
    for e in entries:
        assert e["resource"]["id"] == rid
        assert e["fullUrl"].endswith(f"Patient/{rid}")
        assert e["request"]["url"]
    assert entries[0]["resource"]["name"][0]["given"] == ["v4"]


def test_history_pages_with_count_yield_every_version_once(fhir):
    rid = make_versions(fhir, 5)
    entries, pages = all_history(fhir, f"Patient/{rid}/_history", params={"_count": 2})
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [entry_version(e) for e in entries] == ["5", "4", "3", "2", "1"]


def test_history_since_filters_by_last_updated(fhir):
    created = create(fhir, patient("Since"))
    rid = created["id"]
    fhir.put(f"Patient/{rid}", json={**created, "gender": "male"})
    time.sleep(1.1)
    v3 = fhir.put(f"Patient/{rid}", json={**created, "gender": "female"}).json()
    fhir.put(f"Patient/{rid}", json={**created, "gender": "other"})
    entries, _ = all_history(fhir, f"Patient/{rid}/_history", params={"_since": v3["meta"]["lastUpdated"]})
    assert sorted(entry_version(e) for e in entries) == ["3", "4"]
    future = (utcnow() + datetime.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    entries, _ = all_history(fhir, f"Patient/{rid}/_history", params={"_since": future})
    assert entries == []


def test_type_and_system_history(fresh_fhir):
    fhir = fresh_fhir
    # Pauses keep lastUpdated strictly increasing, so newest-first order is unambiguous.
    p1 = create(fhir, patient("TypeHistory1"))
    time.sleep(0.02)
    obs = create(fhir, {"resourceType": "Observation", "status": "final", "code": {"text": "weight"}})
    time.sleep(0.02)
    p2 = create(fhir, patient("TypeHistory2"))
    time.sleep(0.02)
    fhir.put(f"Patient/{p1['id']}", json={**p1, "active": False})

    entries, _ = all_history(fhir, "Patient/_history")
    got = [(e["resource"]["id"], entry_version(e)) for e in entries]
    assert got == [(p1["id"], "2"), (p2["id"], "1"), (p1["id"], "1")]

    entries, pages = all_history(fhir, "_history", params={"_count": 1})
    got = [(e["resource"]["resourceType"], e["resource"]["id"], entry_version(e)) for e in entries]
    assert got == [("Patient", p1["id"], "2"), ("Patient", p2["id"], "1"), ("Observation", obs["id"], "1"),
                   ("Patient", p1["id"], "1")]
    assert all(len(p) == 1 for p in pages)
    stamps = [instant(e["resource"]["meta"]["lastUpdated"]) for e in entries]
    assert stamps == sorted(stamps, reverse=True)

    observations, _ = all_history(fhir, "Observation/_history")
    assert [e["resource"]["id"] for e in observations] == [obs["id"]]


# --- patch ----------------------------------------------------------------------------------------

JSON_PATCH = "application/json-patch+json"


def test_json_patch(fhir):
    created = create(fhir, patient("JsonPatch", gender="male", telecom=[{"system": "phone", "value": "1"}]))
    rid = created["id"]
    ops = [
        {"op": "test", "path": "/gender", "value": "male"},
        {"op": "replace", "path": "/gender", "value": "female"},
        {"op": "add", "path": "/birthDate", "value": "1990-01-02"},
        {"op": "add", "path": "/name/0/given/-", "value": "Beth"},
        {"op": "remove", "path": "/telecom"},
        {"op": "move", "from": "/name/0/given/0", "path": "/name/0/given/1"},
    ]
    resp = fhir.patch(f"Patient/{rid}", json=ops, headers={"Content-Type": JSON_PATCH})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["gender"] == "female" and body["birthDate"] == "1990-01-02"
    assert body["name"][0]["given"] == ["Beth", "Ann"]
    assert "telecom" not in body
    assert body["meta"]["versionId"] == "2" and resp.headers["ETag"] == 'W/"2"'
    assert fhir.get(f"Patient/{rid}").json() == body


def test_json_patch_honours_if_match(fhir):
    created = create(fhir, patient("PatchIfMatch"))
    ops = [{"op": "replace", "path": "/active", "value": False}]
    error_outcome(fhir.patch(f"Patient/{created['id']}", json=ops,
                             headers={"Content-Type": JSON_PATCH, "If-Match": 'W/"9"'}), 412)
    ok = fhir.patch(f"Patient/{created['id']}", json=ops, headers={"Content-Type": JSON_PATCH, "If-Match": 'W/"1"'})
    assert ok.status_code == 200, ok.text


def fhirpath_op(kind, path, **parts):
    part = [{"name": "type", "valueCode": kind}, {"name": "path", "valueString": path}]
    for name, value in parts.items():
        part.append({"name": name, **value})
    return {"name": "operation", "part": part}


def test_fhirpath_patch(fhir):
    created = create(fhir, patient("FhirPathPatch", gender="male"))
    rid = created["id"]
    params = {"resourceType": "Parameters", "parameter": [
        fhirpath_op("replace", "Patient.gender", value={"valueCode": "female"}),
        fhirpath_op("add", "Patient", name={"valueString": "birthDate"}, value={"valueDate": "1980-12-31"}),
        fhirpath_op("insert", "Patient.name[0].given", index={"valueInteger": 0}, value={"valueString": "Zoe"}),
        fhirpath_op("move", "Patient.name[0].given", source={"valueInteger": 0}, destination={"valueInteger": 1}),
        fhirpath_op("delete", "Patient.active"),
    ]}
    resp = fhir.patch(f"Patient/{rid}", json=params)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["gender"] == "female" and body["birthDate"] == "1980-12-31"
    assert body["name"][0]["given"] == ["Ann", "Zoe"]
    assert "active" not in body
    assert body["meta"]["versionId"] == "2"
    assert fhir.get(f"Patient/{rid}").json() == body


@pytest.mark.parametrize("content_type, body", [
    (JSON_PATCH, [{"op": "replace", "path": "/gender", "value": 42}]),
    (JSON_PATCH, [{"op": "add", "path": "/notAnElement", "value": "x"}]),
    (JSON_PATCH, [{"op": "replace", "path": "/resourceType", "value": "Observation"}]),
    (JSON_PATCH, [{"op": "replace", "path": "/id", "value": "other-id"}]),
    (JSON_PATCH, [{"op": "test", "path": "/gender", "value": "unknown"}]),
    (JSON_PATCH, {"op": "replace"}),
    ("application/fhir+json", {"resourceType": "Parameters", "parameter": [
        fhirpath_op("add", "Patient", name={"valueString": "birthDate"}, value={"valueString": "not a date"})]}),
    ("application/fhir+json", {"resourceType": "Parameters", "parameter": [
        fhirpath_op("replace", "Patient.gender", value={"valueBoolean": True})]}),
    ("application/fhir+json", {"resourceType": "Parameters", "parameter": [
        fhirpath_op("explode", "Patient.gender")]}),
])
def test_patch_that_breaks_the_resource_writes_nothing(fhir, content_type, body):
    created = create(fhir, patient("BadPatch", gender="male"))
    rid = created["id"]
    resp = fhir.patch(f"Patient/{rid}", json=body, headers={"Content-Type": content_type})
    error_outcome(resp, {400, 422})
    current = fhir.get(f"Patient/{rid}")
    assert current.headers["ETag"] == 'W/"1"'
    assert current.json() == created


# --- Prefer ---------------------------------------------------------------------------------------

def test_prefer_return_minimal(fhir):
    resp = fhir.post("Patient", json=patient("Minimal"), headers={"Prefer": "return=minimal"})
    assert resp.status_code == 201
    assert resp.content == b""
    rid, version = location_id_and_version(resp, "Patient")
    assert version == "1" and resp.headers["ETag"] == 'W/"1"'
    upd = fhir.put(f"Patient/{rid}", json=patient("Minimal", id=rid), headers={"Prefer": "return=minimal"})
    assert upd.status_code == 200 and upd.content == b"" and upd.headers["ETag"] == 'W/"2"'


def test_prefer_return_representation(fhir):
    resp = fhir.post("Patient", json=patient("Representation"), headers={"Prefer": "return=representation"})
    assert resp.status_code == 201
    assert resp.json()["resourceType"] == "Patient" and resp.json()["meta"]["versionId"] == "1"


def test_prefer_return_operation_outcome(fhir):
    resp = fhir.post("Patient", json=patient("Outcome"), headers={"Prefer": "return=OperationOutcome"})
    assert resp.status_code == 201
    outcome(resp)
    rid, _ = location_id_and_version(resp, "Patient")
    upd = fhir.put(f"Patient/{rid}", json=patient("Outcome", id=rid), headers={"Prefer": "return=OperationOutcome"})
    assert upd.status_code == 200
    outcome(upd)


# --- capabilities and content negotiation ---------------------------------------------------------

def test_capability_statement_tells_the_truth(fhir):
    resp = fhir.get("metadata")
    assert resp.status_code == 200, resp.text
    cs = resp.json()
    assert cs["resourceType"] == "CapabilityStatement"
    assert cs["fhirVersion"] == "4.0.1"
    assert cs["kind"] == "instance" and cs["status"] in ("active", "draft")
    assert cs["format"], "format must list the supported formats"
    assert all("json" in f for f in cs["format"]), cs["format"]
    assert not any("xml" in f for f in cs["format"]), cs["format"]
    assert "application/json-patch+json" in cs.get("patchFormat", [])
    rest = cs["rest"][0]
    assert rest["mode"] == "server"
    system = {i["code"] for i in rest.get("interaction", [])}
    assert "history-system" in system
    resources = {r["type"]: r for r in rest["resource"]}
    assert len(resources) >= 140, "R4 defines 145 resource types"
    for name in ("Patient", "Observation", "Encounter", "Condition"):
        interactions = {i["code"] for i in resources[name]["interaction"]}
        assert {"read", "vread", "update", "patch", "delete", "history-instance", "history-type",
                "create"} <= interactions, (name, interactions)
        assert resources[name].get("versioning") in (None, "versioned", "versioned-update")


@pytest.mark.parametrize("accept", ["application/fhir+xml", "application/xml", "text/xml"])
def test_xml_accept_is_406(fhir, accept):
    created = create(fhir, patient("Accept"))
    error_outcome(fhir.get(f"Patient/{created['id']}", headers={"Accept": accept}), 406)


@pytest.mark.parametrize("fmt", ["xml", "application/fhir+xml", "text/xml"])
def test_format_xml_is_406(fhir, fmt):
    created = create(fhir, patient("Format"))
    error_outcome(fhir.get(f"Patient/{created['id']}", params={"_format": fmt}), 406)


@pytest.mark.parametrize("accept", ["application/fhir+json", "application/json", "*/*", "application/fhir+json; fhirVersion=4.0"])
def test_json_accept_is_served(fhir, accept):
    created = create(fhir, patient("JsonAccept"))
    resp = fhir.get(f"Patient/{created['id']}", headers={"Accept": accept})
    assert resp.status_code == 200, resp.text
    assert fhir.get(f"Patient/{created['id']}", params={"_format": "json"}).status_code == 200


def test_xml_body_is_415_and_writes_nothing(fresh_fhir):
    xml = '<Patient xmlns="http://hl7.org/fhir"><active value="true"/></Patient>'
    error_outcome(fresh_fhir.post("Patient", data=xml, headers={"Content-Type": "application/fhir+xml"}), 415)
    assert history_size(fresh_fhir) == 0


def test_plain_json_content_type_is_accepted(fhir):
    resp = fhir.post("Patient", json=patient("PlainJson"), headers={"Content-Type": "application/json"})
    assert resp.status_code == 201, resp.text


# --- bad input ------------------------------------------------------------------------------------

def history_size(fhir):
    entries, _ = all_history(fhir, "_history")
    return len(entries)


# Over HealthLake's 5 MB request limit and a Lambda payload's 6 MB, by a margin small enough that the
# server can answer before the client has finished sending.
BIG = 6 * 1024 * 1024


BAD_INPUT = [
    ("malformed json", "POST", "Patient", '{"resourceType": "Patient", ', 400),
    ("json array", "POST", "Patient", "[]", 400),
    ("json string", "POST", "Patient", '"Patient"', 400),
    ("empty body", "POST", "Patient", "", 400),
    ("no resourceType", "POST", "Patient", '{"active": true}', 400),
    ("resourceType differs from url", "POST", "Patient",
     '{"resourceType": "Observation", "status": "final", "code": {"text": "x"}}', 400),
    ("unknown element", "POST", "Patient", '{"resourceType": "Patient", "favouriteColour": "blue"}', 400),
    ("wrong primitive type", "POST", "Patient", '{"resourceType": "Patient", "active": "yes"}', 400),
    ("bad date", "POST", "Patient", '{"resourceType": "Patient", "birthDate": "01/02/1990"}', 400),
    ("code outside a required binding", "POST", "Patient", '{"resourceType": "Patient", "gender": "dragon"}', 400),
    ("object where an array belongs", "POST", "Patient",
     '{"resourceType": "Patient", "name": {"family": "NotAList"}}', 400),
    ("missing required element", "POST", "Observation",
     '{"resourceType": "Observation", "code": {"text": "no status"}}', 400),
    ("put id differs from url", "PUT", "Patient/abc", '{"resourceType": "Patient", "id": "xyz"}', 400),
    ("put resourceType differs from url", "PUT", "Patient/abc",
     '{"resourceType": "Observation", "id": "abc", "status": "final", "code": {"text": "x"}}', 400),
    ("put invalid id", "PUT", "Patient/bad_id!", '{"resourceType": "Patient", "id": "bad_id!"}', 400),
    ("unknown type post", "POST", "NotAResource", '{"resourceType": "NotAResource"}', (400, 404)),
    ("unknown type put", "PUT", "NotAResource/abc", '{"resourceType": "NotAResource", "id": "abc"}', (400, 404)),
    ("body over the size limit", "POST", "Patient",
     '{"resourceType": "Patient", "text": {"status": "generated", "div": "%s"}}' % ("x" * BIG), 413),
]


@pytest.mark.parametrize("method, path, body, status", [pytest.param(*case[1:], id=case[0]) for case in BAD_INPUT])
def test_bad_input_is_rejected_before_anything_is_written(fresh_fhir, method, path, body, status):
    resp = fresh_fhir.request(method, path, data=body)
    error_outcome(resp, status)
    assert history_size(fresh_fhir) == 0


@pytest.mark.parametrize("path", ["NotAResource/123", "NotAResource", "patient/123"])
def test_unknown_resource_type_in_url(fhir, path):
    error_outcome(fhir.get(path), (400, 404))


def test_unknown_datastore_is_404(server, fhir):
    base = fhir.base_url.split("/datastore/")[0]
    other = SigV4Http(f"{base}/datastore/{uuid.uuid4().hex}/r4/", server.access_key, server.secret_key, server.region)
    error_outcome(other.get("Patient/123"), 404)
    error_outcome(other.post("Patient", json=patient()), 404)
    error_outcome(other.get("metadata"), 404)


# --- persistence ----------------------------------------------------------------------------------

def test_data_survives_a_restart(server, fhir):
    created = create(fhir, patient("Durable"))
    rid = created["id"]
    updated = fhir.put(f"Patient/{rid}", json={**created, "gender": "female"}).json()
    server.restart()
    read = fhir.get(f"Patient/{rid}")
    assert read.status_code == 200, read.text
    assert read.json() == updated and read.headers["ETag"] == 'W/"2"'
    entries, _ = all_history(fhir, f"Patient/{rid}/_history")
    assert [entry_version(e) for e in entries] == ["2", "1"]
    after = fhir.put(f"Patient/{rid}", json={**updated, "gender": "male"}, headers={"If-Match": 'W/"2"'})
    assert after.status_code == 200 and after.headers["ETag"] == 'W/"3"'

"""Conditional create, update, delete and patch (http://hl7.org/fhir/R4/http.html#ccreate,
#cond-update, #cdelete, #patch): the write's target is named by search criteria."""

from fhir_asserts import error_outcome


def error_with(resp, status, code):
    body = error_outcome(resp, status)
    assert any(i["code"] == code for i in body["issue"]), body


def patient(mrn, family="Okafor", **extra):
    return {"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": mrn}], "name": [{"family": family}], **extra}


def test_conditional_create_creates_once_then_returns_the_match(fresh_fhir):
    first = fresh_fhir.post("Patient", json=patient("c-1"), headers={"If-None-Exist": "identifier=urn:mrn|c-1"})
    assert first.status_code == 201, first.text
    again = fresh_fhir.post("Patient", json=patient("c-1", "Other"), headers={"If-None-Exist": "identifier=urn:mrn|c-1"})
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"] and again.json()["name"][0]["family"] == "Okafor"
    assert fresh_fhir.get("Patient?identifier=urn:mrn|c-1").json()["total"] == 1
    # Two matches: 412, and nothing written.
    assert fresh_fhir.post("Patient", json=patient("c-2", "Twin")).status_code == 201
    assert fresh_fhir.post("Patient", json=patient("c-3", "Twin")).status_code == 201
    error_with(fresh_fhir.post("Patient", json=patient("c-4", "Twin"), headers={"If-None-Exist": "family=twin"}), 412, "conflict")
    assert fresh_fhir.get("Patient?family=twin").json()["total"] == 2


def test_conditional_update_creates_updates_or_refuses(fresh_fhir):
    created = fresh_fhir.put("Patient?identifier=urn:mrn|u-1", json=patient("u-1"))
    assert created.status_code == 201, created.text
    pid = created.json()["id"]
    updated = fresh_fhir.put("Patient?identifier=urn:mrn|u-1", json=patient("u-1", "Updated"))
    assert updated.status_code == 200, updated.text
    assert updated.json()["id"] == pid and updated.json()["meta"]["versionId"] == "2"
    error_with(fresh_fhir.put("Patient?identifier=urn:mrn|u-1", json={**patient("u-1"), "id": "someone-else"}), 400, "invalid")
    assert fresh_fhir.put("Patient?identifier=urn:mrn|u-2", json=patient("u-2", "Same")).status_code == 201
    assert fresh_fhir.put("Patient?identifier=urn:mrn|u-3", json=patient("u-3", "Same")).status_code == 201
    error_with(fresh_fhir.put("Patient?family=same", json=patient("u-4")), 412, "conflict")


def test_conditional_delete_and_patch(fresh_fhir):
    pid = fresh_fhir.post("Patient", json=patient("d-1")).json()["id"]
    patched = fresh_fhir.patch("Patient?identifier=urn:mrn|d-1", json=[{"op": "add", "path": "/active", "value": True}],
                               headers={"Content-Type": "application/json-patch+json"})
    assert patched.status_code == 200, patched.text
    assert patched.json()["id"] == pid and patched.json()["active"] is True
    error_with(fresh_fhir.patch("Patient?identifier=urn:mrn|nobody", json=[{"op": "add", "path": "/active", "value": True}],
                                headers={"Content-Type": "application/json-patch+json"}), 404, "not-found")
    assert fresh_fhir.delete("Patient?identifier=urn:mrn|d-1").status_code == 204
    assert fresh_fhir.get(f"Patient/{pid}").status_code == 410
    assert fresh_fhir.delete("Patient?identifier=urn:mrn|d-1").status_code == 204
    assert fresh_fhir.post("Patient", json=patient("d-2", "Pair")).status_code == 201
    assert fresh_fhir.post("Patient", json=patient("d-3", "Pair")).status_code == 201
    error_with(fresh_fhir.delete("Patient?family=pair"), 412, "conflict")
    assert fresh_fhir.get("Patient?family=pair").json()["total"] == 2


def test_conditional_requests_need_valid_criteria(fresh_fhir):
    error_with(fresh_fhir.delete("Patient"), 400, "invalid")
    error_with(fresh_fhir.put("Patient?nosuchparam=1", json=patient("x")), 400, "invalid")
    error_with(fresh_fhir.post("Patient", json=patient("x"), headers={"If-None-Exist": "birthdate=notadate"}), 400, "invalid")

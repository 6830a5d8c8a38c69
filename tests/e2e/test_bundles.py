"""Batch and transaction Bundles posted to the base (http://hl7.org/fhir/R4/http.html#transaction)."""

import uuid

from fhir_asserts import error_outcome


def post_bundle(fhir, kind, entries, expected=200):
    resp = fhir.post("", json={"resourceType": "Bundle", "type": kind, "entry": entries})
    assert resp.status_code == expected, resp.text[:800]
    return resp.json()


def statuses(bundle):
    return [e["response"]["status"].split()[0] for e in bundle["entry"]]


def count(fhir, query):
    resp = fhir.get(query + ("&" if "?" in query else "?") + "_summary=count")
    assert resp.status_code == 200, resp.text[:500]
    return resp.json()["total"]


def test_batch_entries_succeed_or_fail_alone(fresh_fhir):
    existing = fresh_fhir.post("Patient", json={"resourceType": "Patient", "name": [{"family": "Batch"}]}).json()
    bundle = post_bundle(fresh_fhir, "batch", [
        {"resource": {"resourceType": "Patient", "name": [{"family": "New"}]}, "request": {"method": "POST", "url": "Patient"}},
        {"request": {"method": "GET", "url": f"Patient/{existing['id']}"}},
        {"resource": {"resourceType": "Patient", "birthDate": "not-a-date"}, "request": {"method": "POST", "url": "Patient"}},
        {"request": {"method": "GET", "url": "Patient/does-not-exist"}},
        {"request": {"method": "GET", "url": "Patient?family=batch"}},
        {"request": {"method": "DELETE", "url": f"Patient/{existing['id']}"}},
    ])
    assert bundle["type"] == "batch-response"
    assert statuses(bundle) == ["201", "200", "400", "404", "200", "204"]
    assert bundle["entry"][0]["response"]["location"].startswith("Patient/")
    assert bundle["entry"][1]["resource"]["id"] == existing["id"]
    assert bundle["entry"][2]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert bundle["entry"][4]["resource"]["type"] == "searchset"


def test_transaction_rewrites_placeholders_and_commits_together(fresh_fhir):
    patient_url = f"urn:uuid:{uuid.uuid4()}"
    entries = [{"fullUrl": patient_url, "resource": {"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "tx-1"}]},
                "request": {"method": "POST", "url": "Patient"}}]
    for i in range(3):
        entries.append({"fullUrl": f"urn:uuid:{uuid.uuid4()}", "request": {"method": "POST", "url": "Observation"},
                        "resource": {"resourceType": "Observation", "status": "final", "code": {"text": f"obs {i}"},
                                     "subject": {"reference": patient_url}}})
    bundle = post_bundle(fresh_fhir, "transaction", entries)
    assert bundle["type"] == "transaction-response"
    assert statuses(bundle) == ["201"] * 4
    pid = bundle["entry"][0]["resource"]["id"]
    assert all(e["resource"]["subject"]["reference"] == f"Patient/{pid}" for e in bundle["entry"][1:])
    assert count(fresh_fhir, f"Observation?subject=Patient/{pid}") == 3
    # A conditional create that matches, and a conditional reference to the same patient.
    again = post_bundle(fresh_fhir, "transaction", [
        {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=urn:mrn|tx-1"}},
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "later"},
                      "subject": {"reference": "Patient?identifier=urn:mrn|tx-1"}}, "request": {"method": "POST", "url": "Observation"}},
    ])
    assert statuses(again) == ["200", "201"]
    assert again["entry"][0]["resource"]["id"] == pid
    assert again["entry"][1]["resource"]["subject"]["reference"] == f"Patient/{pid}"


def test_a_failing_transaction_writes_nothing(fresh_fhir):
    pid = fresh_fhir.post("Patient", json={"resourceType": "Patient", "name": [{"family": "Keep"}]}).json()["id"]
    invalid = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "name": [{"family": "Ghost"}]}, "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Patient", "id": pid, "gender": "not-a-gender"}, "request": {"method": "PUT", "url": f"Patient/{pid}"}},
    ]}
    error_outcome(fresh_fhir.post("", json=invalid), 400)
    stale = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "name": [{"family": "Ghost"}]}, "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Patient", "id": pid, "name": [{"family": "Changed"}]},
         "request": {"method": "PUT", "url": f"Patient/{pid}", "ifMatch": 'W/"7"'}},
    ]}
    error_outcome(fresh_fhir.post("", json=stale), 412)
    assert count(fresh_fhir, "Patient?family=ghost") == 0
    assert fresh_fhir.get(f"Patient/{pid}").json()["name"][0]["family"] == "Keep"
    error_outcome(fresh_fhir.post("", json={"resourceType": "Bundle", "type": "collection"}), 400)
    error_outcome(fresh_fhir.post("", json={"resourceType": "Patient"}), 400)


# The large bundles run on a server of their own (`bulk_server`): on moto, the thousands of items
# they write would slow every later test's queries.
def test_a_transaction_of_a_hundred_writes(bulk_fhir):
    entries = [{"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": {"resourceType": "Patient", "identifier": [{"system": "urn:tx100", "value": str(i)}]},
                "request": {"method": "POST", "url": "Patient"}} for i in range(100)]
    bundle = post_bundle(bulk_fhir, "transaction", entries)
    assert statuses(bundle) == ["201"] * 100
    assert count(bulk_fhir, "Patient?identifier=urn:tx100|") == 100


def test_a_transaction_of_a_thousand_entries_commits_through_its_commit_record(bulk_fhir):
    """More writes than one DynamoDB TransactWriteItems takes: the commit-record protocol."""
    kept = bulk_fhir.post("Patient", json={"resourceType": "Patient", "name": [{"family": "Before"}]}).json()
    patient_url = f"urn:uuid:{uuid.uuid4()}"
    entries = [{"fullUrl": patient_url, "resource": {"resourceType": "Patient", "identifier": [{"system": "urn:tx1000", "value": "p"}]},
                "request": {"method": "POST", "url": "Patient"}},
               {"resource": {"resourceType": "Patient", "id": kept["id"], "name": [{"family": "After"}]},
                "request": {"method": "PUT", "url": f"Patient/{kept['id']}", "ifMatch": 'W/"1"'}}]
    entries += [{"fullUrl": f"urn:uuid:{uuid.uuid4()}", "request": {"method": "POST", "url": "Observation"},
                 "resource": {"resourceType": "Observation", "status": "final", "code": {"text": f"obs {i}"},
                              "subject": {"reference": patient_url}}} for i in range(998)]
    bundle = post_bundle(bulk_fhir, "transaction", entries)
    assert statuses(bundle) == ["201", "200"] + ["201"] * 998
    pid = bundle["entry"][0]["resource"]["id"]
    assert count(bulk_fhir, f"Observation?subject=Patient/{pid}") == 998
    assert count(bulk_fhir, "Patient?family=before") == 0
    updated = bulk_fhir.get(f"Patient/{kept['id']}").json()
    assert (updated["name"][0]["family"], updated["meta"]["versionId"]) == ("After", "2")
    # The same bundle again now fails its ifMatch: nothing of it is written.
    for entry in entries:
        entry["fullUrl"] = f"urn:uuid:{uuid.uuid4()}" if entry.get("fullUrl") != patient_url else entry["fullUrl"]
    error_outcome(bulk_fhir.post("", json={"resourceType": "Bundle", "type": "transaction", "entry": entries}), 412)
    assert count(bulk_fhir, "Observation?code:text=obs") == 998


def test_a_batch_of_a_thousand_entries(bulk_fhir):
    entries = [{"resource": {"resourceType": "Patient", "identifier": [{"system": "urn:bulk", "value": str(i)}]},
                "request": {"method": "POST", "url": "Patient"}} for i in range(1000)]
    bundle = post_bundle(bulk_fhir, "batch", entries)
    assert statuses(bundle) == ["201"] * 1000
    assert count(bulk_fhir, "Patient?identifier=urn:bulk|") == 1000

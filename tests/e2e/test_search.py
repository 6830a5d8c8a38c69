"""FHIR search through the HTTP API (http://hl7.org/fhir/R4/search.html): searchset bundles, GET
and POST _search, paging links, compartments, includes, and that writes are visible to the very
next search. The differential suite checks match sets at scale; this file checks the wire."""

import urllib.parse

import pytest

from fhir_asserts import error_outcome


def error_with(resp, status, code):
    body = error_outcome(resp, status)
    assert any(i["code"] == code for i in body["issue"]), body


def put(fhir, resource):
    resp = fhir.put(f"{resource['resourceType']}/{resource['id']}", json=resource)
    assert resp.status_code in (200, 201), resp.text[:500]
    return resp.json()


@pytest.fixture
def clinic(fresh_fhir):
    fhir = fresh_fhir
    put(fhir, {"resourceType": "Patient", "id": "pa", "name": [{"family": "Lindqvist", "given": ["Åsa"]}], "gender": "female",
               "birthDate": "1968-03-02", "identifier": [{"system": "urn:mrn", "value": "MRN-77"}]})
    put(fhir, {"resourceType": "Patient", "id": "pb", "name": [{"family": "Lind", "given": ["Bo"]}], "gender": "male", "birthDate": "1990"})
    for i, (patient, code) in enumerate([("pa", "2339-0"), ("pa", "2339-0"), ("pb", "2339-0"), ("pb", "718-7")]):
        put(fhir, {"resourceType": "Observation", "id": f"ob{i}", "status": "final", "subject": {"reference": f"Patient/{patient}"},
                   "code": {"coding": [{"system": "http://loinc.org", "code": code}]}, "effectiveDateTime": f"2024-0{i + 1}-15",
                   "valueQuantity": {"value": 100 + i, "system": "http://unitsofmeasure.org", "code": "mg/dL"}})
    return fhir


def ids(bundle, mode="match"):
    return sorted(e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == mode)


def search(fhir, path, expected=200):
    resp = fhir.get(path)
    assert resp.status_code == expected, resp.text[:500]
    return resp.json()


def test_searchset_bundle_shape(clinic):
    bundle = search(clinic, "Patient?family=lind")
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    assert ids(bundle) == ["pa", "pb"]
    assert bundle["total"] == 2
    for entry in bundle["entry"]:
        assert entry["fullUrl"].endswith(f"/r4/Patient/{entry['resource']['id']}")
    assert bundle["link"][0]["relation"] == "self" and "family=lind" in bundle["link"][0]["url"]


def test_each_parameter_type_over_http(clinic):
    assert ids(search(clinic, "Patient?given=asa")) == ["pa"]
    assert ids(search(clinic, "Patient?identifier=urn:mrn|MRN-77")) == ["pa"]
    assert ids(search(clinic, "Patient?birthdate=lt1980")) == ["pa"]
    assert ids(search(clinic, "Observation?code=http://loinc.org|2339-0&subject=Patient/pb")) == ["ob2"]
    assert ids(search(clinic, "Observation?date=ge2024-03-01")) == ["ob2", "ob3"]
    assert ids(search(clinic, "Observation?value-quantity=gt101|http://unitsofmeasure.org|mg/dL")) == ["ob2", "ob3"]
    assert ids(search(clinic, "Observation?subject:Patient.gender=female")) == ["ob0", "ob1"]
    assert ids(search(clinic, "Patient?_has:Observation:subject:code=718-7")) == ["pb"]


def test_post_search_takes_form_parameters(clinic):
    resp = clinic.post("Patient/_search", data="gender=male", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert resp.status_code == 200, resp.text[:500]
    assert ids(resp.json()) == ["pb"]
    resp = clinic.post("Patient/_search", data="{}", headers={"Content-Type": "application/json"})
    error_with(resp, 415, "not-supported")


def test_paging_follows_next_links_to_every_match_once(clinic):
    seen, url = [], "Observation?_count=1"
    while url:
        bundle = search(clinic, url)
        assert len(bundle.get("entry", [])) <= 1
        seen += ids(bundle)
        nxt = [l["url"] for l in bundle["link"] if l["relation"] == "next"]
        url = nxt[0].split("/r4/", 1)[1] if nxt else None
    assert sorted(seen) == ["ob0", "ob1", "ob2", "ob3"]


def test_compartment_search_and_includes(clinic):
    assert ids(search(clinic, "Patient/pa/Observation")) == ["ob0", "ob1"]
    assert ids(search(clinic, "Patient/pb/Observation?code=718-7")) == ["ob3"]
    bundle = search(clinic, "Observation?code=718-7&_include=Observation:subject")
    assert ids(bundle) == ["ob3"] and ids(bundle, "include") == ["pb"]
    bundle = search(clinic, "Patient?_id=pa&_revinclude=Observation:subject")
    assert ids(bundle) == ["pa"] and ids(bundle, "include") == ["ob0", "ob1"]


def test_sort_summary_and_elements(clinic):
    bundle = search(clinic, "Observation?_sort=-date")
    assert [e["resource"]["id"] for e in bundle["entry"]] == ["ob3", "ob2", "ob1", "ob0"]
    counted = search(clinic, "Observation?code=2339-0&_summary=count")
    assert counted["total"] == 3 and "entry" not in counted
    shaped = search(clinic, "Patient?_id=pa&_elements=birthDate")["entry"][0]["resource"]
    assert shaped["birthDate"] == "1968-03-02" and "name" not in shaped
    assert any(t["code"] == "SUBSETTED" for t in shaped["meta"]["tag"])


def test_a_write_is_visible_to_the_next_search(clinic):
    put(clinic, {"resourceType": "Patient", "id": "pb", "name": [{"family": "Berg"}], "gender": "male"})
    assert ids(search(clinic, "Patient?family=lind")) == ["pa"]
    assert ids(search(clinic, "Patient?family=berg")) == ["pb"]
    assert clinic.delete("Patient/pa").status_code == 204
    assert ids(search(clinic, "Patient?family=lind")) == []


def test_bad_searches_are_400_with_an_outcome(clinic):
    error_with(clinic.get("Patient?birthdate=notadate"), 400, "invalid")
    error_with(clinic.get("Patient?nosuchparam=1", headers={"Prefer": "handling=strict"}), 400, "invalid")
    lenient = search(clinic, "Patient?nosuchparam=1&gender=male")
    assert ids(lenient) == ["pb"] and "nosuchparam" not in lenient["link"][0]["url"]
    error_with(clinic.get("Patient?_cursor=" + urllib.parse.quote("not a cursor")), 400, "invalid")
    error_with(clinic.get("Patient?_count=many"), 400, "invalid")
    error_with(clinic.get("Patient?gender:nosuchmodifier=male", headers={"Prefer": "handling=strict"}), 400, "not-supported")
    error_with(clinic.get("Observation?subject.nosuchparam=x", headers={"Prefer": "handling=strict"}), 400, "invalid")


def test_patient_everything(clinic):
    bundle = search(clinic, "Patient/pa/$everything")
    got = sorted((e["resource"]["resourceType"], e["resource"]["id"]) for e in bundle["entry"])
    assert got == [("Observation", "ob0"), ("Observation", "ob1"), ("Patient", "pa")]
    assert bundle["total"] == 3
    assert ids(search(clinic, "Patient/pa/$everything?_type=Observation")) == ["ob0", "ob1"]
    seen, url = [], "Patient/pb/$everything?_count=1"
    while url:
        page = search(clinic, url)
        seen += [e["resource"]["id"] for e in page.get("entry", [])]
        nxt = [l["url"] for l in page["link"] if l["relation"] == "next"]
        url = nxt[0].split("/r4/", 1)[1] if nxt else None
    assert sorted(seen) == ["ob2", "ob3", "pb"]
    assert ids(search(clinic, "Patient/pa/$everything?_since=2999-01-01T00:00:00Z")) == []
    error_with(clinic.get("Patient/nobody/$everything"), 404, "not-found")
    error_with(clinic.get("Patient/pa/$everything?_type=NotAType"), 400, "invalid")


def test_everything_of_every_patient(clinic):
    put(clinic, {"resourceType": "Encounter", "id": "en0", "status": "finished", "class": {"code": "AMB"}, "subject": {"reference": "Patient/pb"}})
    clinic.delete("Observation/ob1")
    expected = [("Patient", "pa"), ("Observation", "ob0"), ("Patient", "pb"), ("Encounter", "en0"), ("Observation", "ob2"), ("Observation", "ob3")]
    whole = search(clinic, "Patient/$everything")
    assert [(e["resource"]["resourceType"], e["resource"]["id"]) for e in whole["entry"]] == expected
    assert whole["entry"][0]["fullUrl"].endswith("/r4/Patient/pa")
    for count in (1, 2, 4):
        seen, url = [], f"Patient/$everything?_count={count}"
        while url:
            page = search(clinic, url)
            assert len(page.get("entry", [])) <= count
            seen += [(e["resource"]["resourceType"], e["resource"]["id"]) for e in page.get("entry", [])]
            nxt = [l["url"] for l in page["link"] if l["relation"] == "next"]
            url = nxt[0].split("/r4/", 1)[1] if nxt else None
        assert seen == expected, count
    assert ids(search(clinic, "Patient/$everything?_type=Observation")) == ["ob0", "ob2", "ob3"]
    assert ids(search(clinic, "Patient/$everything?_since=2999-01-01T00:00:00Z")) == []
    error_with(clinic.get("Patient/$everything?_type=NotAType"), 400, "invalid")
    error_with(clinic.get("Patient/$everything?_cursor=garbage"), 400, "invalid")
    everything = [op for r in search(clinic, "metadata")["rest"][0]["resource"] if r["type"] == "Patient" for op in r.get("operation", [])]
    assert everything == [{"name": "everything", "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything"}]


def test_system_level_search(clinic):
    def keys(bundle):
        return [(e["resource"]["resourceType"], e["resource"]["id"]) for e in bundle.get("entry", [])]

    everything = [("Observation", "ob0"), ("Observation", "ob1"), ("Observation", "ob2"), ("Observation", "ob3"), ("Patient", "pa"), ("Patient", "pb")]
    whole = search(clinic, "?_type=Patient,Observation")
    assert keys(whole) == everything and whole["total"] == 6
    assert keys(search(clinic, "?_lastUpdated=gt2000-01-01")) == everything
    assert keys(search(clinic, "?_id=pa,ob3")) == [("Observation", "ob3"), ("Patient", "pa")]
    seen, url = [], "?_type=Patient,Observation&_count=4"
    while url:
        page = search(clinic, url)
        assert len(page.get("entry", [])) <= 4
        seen += keys(page)
        nxt = [l["url"] for l in page["link"] if l["relation"] == "next"]
        url = nxt[0].split("/r4/", 1)[1] if nxt else None
    assert seen == everything
    latest = search(clinic, "?_type=Patient,Observation&_sort=-_lastUpdated&_count=1&_total=accurate")
    assert keys(latest) == [("Observation", "ob3")] and latest["total"] == 6
    assert search(clinic, "?_type=Patient&_summary=count")["total"] == 2
    posted = clinic.post("_search", data={"_id": "pb"}, headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert posted.status_code == 200, posted.text[:300]
    assert keys(posted.json()) == [("Patient", "pb")]
    error_with(clinic.get("?_type=NotAType"), 400, "invalid")
    error_with(clinic.get("?_type=Patient&_cursor=garbage"), 400, "invalid")
    error_with(clinic.get("?family=lind", headers={"Prefer": "handling=strict"}), 400, "invalid")
    system = [i["code"] for i in search(clinic, "metadata")["rest"][0]["interaction"]]
    assert "search-system" in system

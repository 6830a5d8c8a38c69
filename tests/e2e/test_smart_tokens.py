"""SMART on FHIR bearer tokens on the data plane: which tokens a SMART datastore accepts, and
what each one reaches.

A local identity provider (smart_idp.SmartIdp, on 127.0.0.1) publishes its JWKS and signs the
tokens; each datastore here is created with that issuer in its Metadata. Data is seeded with
SigV4, which keeps full access on SMART datastores. Two patients live in every datastore: the
launch patient ("own") and another one ("other"), whose name, MRN and observation texts are
the PHI that no refusal and no search of the launch patient's token may show.

Contract under test:
- a bad token (expired, not yet valid, wrong aud or iss, bad signature, alg none or HS256,
  tampered, unknown key...) is 401 with `WWW-Authenticate: Bearer ... error="invalid_token"`
  and an OperationOutcome; no Authorization at all is 401 `Bearer realm="fhirlake"`;
- a valid token whose scopes do not allow the interaction is 403 (`forbidden`,
  `insufficient_scope`); `patient/` scopes without a `patient` claim are 403;
- `patient/` scopes confine reads, searches (chained, _include, _revinclude, compartment),
  $everything, history, batch entries and writes to the launch patient's compartment;
- `system/` scopes (and `user/` scopes without fine-grained authorization) reach everything;
  with FineGrainedAuthorizationEnabled `user/` scopes reach the fhirUser's compartment;
- SMART 2.2 filtered scopes restrict reads and searches to the resources matching the filter;
- the issuer's JWKS is cached, refreshed for a new kid, and not refetched for made-up kids.
"""

import json
import time
import uuid
from dataclasses import dataclass, field

import pytest
import requests
from fhirclient import client as fhir_client
from fhirclient.auth import FHIRAuth
from fhirclient.models.observation import Observation as FCObservation
from fhirclient.models.patient import Patient as FCPatient
from fhirclient.server import FHIRPermissionDeniedException, FHIRUnauthorizedException

from fhir_asserts import error_outcome, link
from sigv4_http import SigV4Http
from smart_idp import SmartIdp, generate_key, idp  # noqa: F401  (idp is a fixture)

FHIR_JSON = "application/fhir+json"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
ASYNC = {"Prefer": "respond-async", "Accept": FHIR_JSON}


# --- datastores and data --------------------------------------------------------------------------

def active(healthlake, **config):
    created = healthlake.create_fhir_datastore(DatastoreTypeVersion="R4", DatastoreName=f"smart-tok-{uuid.uuid4().hex[:10]}",
                                               **config)
    datastore_id = created["DatastoreId"]
    healthlake.get_waiter("fhir_datastore_active").wait(DatastoreId=datastore_id, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    return healthlake.describe_fhir_datastore(DatastoreId=datastore_id)["DatastoreProperties"]


class SmartStore:
    """A SMART datastore: its endpoint, a SigV4 client for seeding and checking, and requests
    with bearer tokens from `idp`."""

    def __init__(self, props, server, idp):
        self.props = props
        self.id = props["DatastoreId"]
        self.endpoint = props["DatastoreEndpoint"]
        self.idp = idp
        self.sigv4 = SigV4Http(self.endpoint, server.access_key, server.secret_key, server.region)
        self.session = requests.Session()
        self.population = None

    def token(self, scope, **claims):
        """A token of `idp` for this datastore (aud = its endpoint)."""
        claims.setdefault("aud", self.endpoint)
        return self.idp.mint(scope, **claims)

    def url(self, path):
        return path if path.startswith(("http://", "https://")) else self.endpoint + path.lstrip("/")

    def request(self, method, path, token, *, json=None, params=None, headers=None):
        """`token` None sends no Authorization header at all."""
        headers = {"Accept": FHIR_JSON, **(headers or {})}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        body = None
        if json is not None:
            body = _encode(json)
            headers.setdefault("Content-Type", FHIR_JSON)
        return self.session.request(method, self.url(path), data=body, params=params, headers=headers, timeout=60,
                                    allow_redirects=False)

    def get(self, path, token, **kwargs):
        return self.request("GET", path, token, **kwargs)

    def post(self, path, token, json=None, **kwargs):
        return self.request("POST", path, token, json=json, **kwargs)

    def put(self, path, token, json=None, **kwargs):
        return self.request("PUT", path, token, json=json, **kwargs)

    def delete(self, path, token, **kwargs):
        return self.request("DELETE", path, token, **kwargs)

    def search(self, path, token, params=None, max_pages=20):
        """A search with every page (`next` followed with the same token): (status, entries,
        last response). A refused search gives (status, [], its response)."""
        resp = self.get(path, token, params=params)
        if resp.status_code != 200:
            return resp.status_code, [], resp
        entries = []
        for _ in range(max_pages):
            bundle = resp.json()
            assert bundle.get("resourceType") == "Bundle", bundle
            entries.extend(bundle.get("entry", []))
            nxt = link(bundle, "next")
            if not nxt:
                return 200, entries, resp
            resp = self.get(nxt, token)
            assert resp.status_code == 200, f"next page refused: {resp.status_code} {resp.text[:300]}"
        raise AssertionError("search paging does not end")


def _encode(value):
    return json.dumps(value).encode("utf-8")


def smart_store(server, healthlake, idp, strategy="SMART_ON_FHIR", fine_grained=False):
    config = {"AuthorizationStrategy": strategy, "FineGrainedAuthorizationEnabled": fine_grained,
              "Metadata": json.dumps(idp.metadata())}
    props = active(healthlake, IdentityProviderConfiguration=config)
    assert props["IdentityProviderConfiguration"]["AuthorizationStrategy"] == strategy, props
    return SmartStore(props, server, idp)


@dataclass
class Population:
    """Two patients with a laboratory and a vital-signs Observation each."""
    sfx: str
    own: str
    other: str
    own_family: str
    other_family: str
    other_given: str
    other_mrn: str
    own_lab: str
    own_vital: str
    other_lab: str
    other_vital: str
    texts: dict = field(default_factory=dict)    # observation id -> its code.text

    @property
    def own_refs(self):
        return {f"Patient/{self.own}", f"Observation/{self.own_lab}", f"Observation/{self.own_vital}"}

    @property
    def other_refs(self):
        return {f"Patient/{self.other}", f"Observation/{self.other_lab}", f"Observation/{self.other_vital}"}

    @property
    def other_phi(self):
        """Strings that only the other patient's resources contain."""
        return [self.other_family, self.other_given, self.other_mrn, self.texts[self.other_lab], self.texts[self.other_vital]]

    @property
    def own_phi(self):
        return [self.own_family, self.texts[self.own_lab], self.texts[self.own_vital]]


def patient_resource(pid, family, given, mrn):
    return {"resourceType": "Patient", "id": pid, "active": True, "gender": "female", "birthDate": "1970-01-01",
            "identifier": [{"system": "urn:fhirlake:e2e:mrn", "value": mrn}],
            "name": [{"family": family, "given": [given]}]}


def observation_resource(oid, patient, category, text, performer=None, identifier=None):
    obs = {"resourceType": "Observation", "id": oid, "status": "final",
           "category": [{"coding": [{"system": CATEGORY, "code": category}]}],
           "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0" if category == "laboratory" else "8867-4"}],
                    "text": text},
           "subject": {"reference": f"Patient/{patient}"},
           "valueQuantity": {"value": 95, "unit": "mg/dL"}}
    if oid is None:
        del obs["id"]
    if performer:
        obs["performer"] = [{"reference": performer}]
    if identifier:
        obs["identifier"] = [{"system": "urn:fhirlake:e2e:obs", "value": identifier}]
    return obs


def put(sigv4, resource):
    resp = sigv4.put(f"{resource['resourceType']}/{resource['id']}", json=resource)
    assert resp.status_code in (200, 201), resp.text[:500]
    return resp.json()


def seed(store):
    """Two patients and their observations, with fresh ids. The fixtures make the first one
    `store.population`; tests that add to a compartment seed one of their own."""
    sfx = uuid.uuid4().hex[:10]
    pop = Population(sfx=sfx, own=f"own-{sfx}", other=f"oth-{sfx}", own_family=f"Ownfam{sfx}",
                     other_family=f"Secretfam{sfx}", other_given=f"Hiddengiven{sfx}", other_mrn=f"MRN-OTHER-{sfx}",
                     own_lab=f"own-lab-{sfx}", own_vital=f"own-vit-{sfx}", other_lab=f"oth-lab-{sfx}",
                     other_vital=f"oth-vit-{sfx}")
    put(store.sigv4, patient_resource(pop.own, pop.own_family, "Alice", f"MRN-OWN-{sfx}"))
    put(store.sigv4, patient_resource(pop.other, pop.other_family, pop.other_given, pop.other_mrn))
    for oid, patient, category in [(pop.own_lab, pop.own, "laboratory"), (pop.own_vital, pop.own, "vital-signs"),
                                   (pop.other_lab, pop.other, "laboratory"), (pop.other_vital, pop.other, "vital-signs")]:
        pop.texts[oid] = f"{'secret ' if patient == pop.other else ''}{category} text {oid}"
        put(store.sigv4, observation_resource(oid, patient, category, pop.texts[oid]))
    if store.population is None:
        store.population = pop
    return pop


@pytest.fixture(scope="module")
def smart(server, healthlake, idp):
    """A SMART_ON_FHIR (v2) datastore without fine-grained authorization, seeded."""
    store = smart_store(server, healthlake, idp)
    seed(store)
    return store


@pytest.fixture(scope="module")
def smart_v1(server, healthlake, idp):
    """A SMART_ON_FHIR_V1 datastore of the same issuer, seeded."""
    store = smart_store(server, healthlake, idp, strategy="SMART_ON_FHIR_V1")
    seed(store)
    return store


@dataclass
class Clinic:
    store: SmartStore
    pop: Population
    prac_a: str
    prac_b: str
    obs_a: str          # own patient, performer A
    obs_b: str          # other patient, performer B
    enc_a: str
    enc_b: str


@pytest.fixture(scope="module")
def clinic(server, healthlake, idp):
    """A SMART datastore with FineGrainedAuthorizationEnabled: the two patients, two
    practitioners, and an Observation and an Encounter of each practitioner."""
    store = smart_store(server, healthlake, idp, fine_grained=True)
    pop = seed(store)
    sfx = pop.sfx
    c = Clinic(store, pop, f"prac-a-{sfx}", f"prac-b-{sfx}", f"obs-a-{sfx}", f"obs-b-{sfx}", f"enc-a-{sfx}", f"enc-b-{sfx}")
    for pid, family in [(c.prac_a, f"Adoc{sfx}"), (c.prac_b, f"Bdoc{sfx}")]:
        put(store.sigv4, {"resourceType": "Practitioner", "id": pid, "name": [{"family": family}]})
    for oid, patient, prac in [(c.obs_a, pop.own, c.prac_a), (c.obs_b, pop.other, c.prac_b)]:
        pop.texts[oid] = f"performed text {oid}"
        put(store.sigv4, observation_resource(oid, patient, "laboratory", pop.texts[oid], performer=f"Practitioner/{prac}"))
    for eid, patient, prac in [(c.enc_a, pop.own, c.prac_a), (c.enc_b, pop.other, c.prac_b)]:
        put(store.sigv4, {"resourceType": "Encounter", "id": eid, "status": "finished",
                          "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                          "subject": {"reference": f"Patient/{patient}"},
                          "participant": [{"individual": {"reference": f"Practitioner/{prac}"}}]})
    return c


# --- assertions -----------------------------------------------------------------------------------

def refs(entries, mode=None):
    """`Type/id` of the entries' resources (optionally only those of one search mode),
    OperationOutcomes left out."""
    out = set()
    for e in entries:
        r = e.get("resource") or {}
        if r.get("resourceType") in (None, "OperationOutcome"):
            continue
        if mode is not None and (e.get("search") or {}).get("mode", "match") != mode:
            continue
        out.add(f"{r['resourceType']}/{r['id']}")
    return out


def assert_no_phi(text, markers):
    for marker in markers:
        assert marker not in text, f"response shows {marker!r}: {text[:800]}"


def unauthorized(resp, token=None):
    """401, a Bearer invalid_token challenge, an OperationOutcome, and no trace of the token."""
    body = error_outcome(resp, 401)
    challenge = resp.headers.get("WWW-Authenticate", "")
    assert challenge.startswith("Bearer"), resp.headers
    assert 'error="invalid_token"' in challenge, challenge
    if token:
        for part in [p for p in token.split(".") if len(p) > 16]:
            assert part not in resp.text and part not in challenge, "the token is echoed"
    return body


def insufficient_scope(resp):
    """403 for a valid token whose scopes do not allow the interaction."""
    body = error_outcome(resp, 403)
    assert any(i["code"] == "forbidden" for i in body["issue"]), body
    challenge = resp.headers.get("WWW-Authenticate", "")
    assert challenge.startswith("Bearer") and "insufficient_scope" in challenge, resp.headers
    return body


def refused_or_none_of(store, path, token, forbidden_refs, params=None):
    """A search that reaches into another patient's data: either refused with a 403
    OperationOutcome, or answered without any of `forbidden_refs`. Returns the entries."""
    status, entries, resp = store.search(path, token, params=params)
    if status == 403:
        error_outcome(resp, 403)
        assert_no_phi(resp.text, store.population.other_phi)
    else:
        assert status == 200, f"{path}: {status} {resp.text[:500]}"
    assert not refs(entries) & forbidden_refs, refs(entries)
    # The entries, not the whole bundle: its self link may repeat the query's own words.
    assert_no_phi(json.dumps(entries), store.population.other_phi)
    return entries


def observations_of(ids):
    return {f"Observation/{i}" for i in ids}


def sigv4_count(store, path, params):
    resp = store.sigv4.get(path, params={**params, "_count": "100"})
    assert resp.status_code == 200, resp.text[:500]
    return len([e for e in resp.json().get("entry", []) if e.get("resource", {}).get("resourceType") != "OperationOutcome"])


# --- tokens accepted ------------------------------------------------------------------------------

@pytest.fixture
def patient_token(smart):
    """`patient/*.rs` for the launch patient of `smart`."""
    return smart.token("launch/patient openid fhirUser patient/*.rs", patient=smart.population.own)


def test_a_patient_token_reads_its_launch_patient(smart, patient_token):
    pop = smart.population
    resp = smart.get(f"Patient/{pop.own}", patient_token)
    assert resp.status_code == 200, resp.text[:500]
    assert resp.json()["name"][0]["family"] == pop.own_family


@pytest.mark.parametrize("audience", ["endpoint", "without trailing slash", "in an array"])
def test_aud_is_the_datastore_endpoint_with_or_without_the_trailing_slash(smart, audience):
    pop = smart.population
    aud = {"endpoint": smart.endpoint, "without trailing slash": smart.endpoint.rstrip("/"),
           "in an array": ["https://some-other-api.example/", smart.endpoint]}[audience]
    assert smart.endpoint.endswith("/")
    resp = smart.get(f"Patient/{pop.own}", smart.token("patient/Patient.rs", patient=pop.own, aud=aud))
    assert resp.status_code == 200, resp.text[:500]


def test_an_es256_token_is_accepted(smart):
    pop = smart.population
    token = smart.token("patient/Patient.rs", patient=pop.own, alg="ES256")
    assert SmartIdp.decode_unverified(token)[0]["alg"] == "ES256"
    resp = smart.get(f"Patient/{pop.own}", token)
    assert resp.status_code == 200, resp.text[:500]


def test_a_smart_2_datastore_accepts_smart_1_scopes(smart):
    pop = smart.population
    resp = smart.get(f"Patient/{pop.own}", smart.token("patient/*.read", patient=pop.own))
    assert resp.status_code == 200, resp.text[:500]


def test_sigv4_keeps_full_access_on_a_smart_datastore(smart):
    pop = smart.population
    assert smart.sigv4.get(f"Patient/{pop.other}").status_code == 200
    assert sigv4_count(smart, "Observation", {"_id": ",".join([pop.own_lab, pop.own_vital, pop.other_lab, pop.other_vital])}) == 4


# --- tokens refused: 401 --------------------------------------------------------------------------

def test_no_authorization_header_is_401_with_a_bearer_challenge(smart):
    pop = smart.population
    for resp in [smart.get(f"Patient/{pop.other}", None), smart.get("Observation", None),
                 smart.post("Observation", None, json=observation_resource(None, pop.other, "laboratory", "x"))]:
        error_outcome(resp, 401)
        challenge = resp.headers.get("WWW-Authenticate", "")
        assert challenge.startswith("Bearer") and 'realm="fhirlake"' in challenge, resp.headers
        assert "error=" not in challenge, challenge        # RFC 6750 3.1: no error code without credentials
        assert_no_phi(resp.text, pop.other_phi + pop.own_phi)


def _unknown_kid(store, pop):
    return store.idp.mint("patient/*.rs", store.endpoint, patient=pop.other, kid=f"rsa-unknown-{uuid.uuid4().hex[:6]}",
                          key=generate_key("RS256"))


# Every bad token would, if it were accepted, read the other patient: a 401 is the only answer
# that shows nothing of them.
BAD_TOKENS = {
    "expired": lambda s, p, o: s.token("patient/*.rs", patient=p.other, exp_in=-120, extra_claims={"iat": int(time.time()) - 420}),
    "not yet valid": lambda s, p, o: s.token("patient/*.rs", patient=p.other, nbf=120),
    "no exp": lambda s, p, o: s.token("patient/*.rs", patient=p.other, extra_claims={"exp": None}),
    "no aud": lambda s, p, o: s.token("patient/*.rs", patient=p.other, extra_claims={"aud": None}),
    "aud of another datastore": lambda s, p, o: s.token("patient/*.rs", patient=p.other, aud=o),
    "aud of the server root": lambda s, p, o: s.token("patient/*.rs", patient=p.other, aud=s.endpoint.split("/datastore/")[0] + "/"),
    "aud a prefix of the endpoint": lambda s, p, o: s.token("patient/*.rs", patient=p.other, aud=s.endpoint.rsplit("r4/", 1)[0]),
    "wrong iss": lambda s, p, o: s.token("patient/*.rs", patient=p.other, iss=s.idp.issuer + "/other"),
    "iss with a trailing slash": lambda s, p, o: s.token("patient/*.rs", patient=p.other, iss=s.idp.issuer + "/"),
    "no iss": lambda s, p, o: s.token("patient/*.rs", patient=p.other, extra_claims={"iss": None}),
    "bad signature": lambda s, p, o: s.idp.forged_token("patient/*.rs", s.endpoint, patient=p.other),
    "bad es256 signature": lambda s, p, o: s.idp.forged_token("patient/*.rs", s.endpoint, alg="ES256", patient=p.other),
    "tampered payload": lambda s, p, o: SmartIdp.tampered_token(s.token("patient/*.rs", patient=p.own), patient=p.other),
    "alg none": lambda s, p, o: s.idp.unsigned_token("patient/*.rs", s.endpoint, patient=p.other),
    "hs256 keyed with the rsa public key": lambda s, p, o: s.idp.hs256_confusion_token("patient/*.rs", s.endpoint, patient=p.other),
    "rs384": lambda s, p, o: s.token("patient/*.rs", patient=p.other, alg="RS384", kid=s.idp.kid("RS256")),
    "ps256": lambda s, p, o: s.token("patient/*.rs", patient=p.other, alg="PS256", kid=s.idp.kid("RS256")),
    "es256 under the rsa kid": lambda s, p, o: s.token("patient/*.rs", patient=p.other, alg="ES256", kid=s.idp.kid("RS256"),
                                                       key=s.idp.private_key(s.idp.kid("ES256"))),
    "unknown kid": lambda s, p, o: _unknown_kid(s, p),
    "not a jwt": lambda s, p, o: "not-a-jwt",
    "signature stripped": lambda s, p, o: s.token("patient/*.rs", patient=p.other).rsplit(".", 1)[0] + ".",
}


@pytest.mark.parametrize("case", list(BAD_TOKENS))
def test_a_bad_token_is_401_invalid_token(smart, smart_v1, case):
    pop = smart.population
    good = smart.token("patient/*.rs", patient=pop.other)       # what each bad token pretends to be
    assert smart.get(f"Patient/{pop.other}", good).status_code == 200
    token = BAD_TOKENS[case](smart, pop, smart_v1.endpoint)
    for resp in [smart.get(f"Patient/{pop.other}", token), smart.get("Observation", token, params={"patient": pop.other})]:
        unauthorized(resp, token)
        assert_no_phi(resp.text, pop.other_phi)


def test_a_token_is_accepted_only_by_the_datastore_it_names(smart, smart_v1):
    """Both datastores trust the same issuer; the token for one is refused by the other."""
    v1_pop = smart_v1.population
    token = smart_v1.token("patient/*.read", patient=v1_pop.own)
    assert smart_v1.get(f"Patient/{v1_pop.own}", token).status_code == 200
    resp = smart.get(f"Patient/{v1_pop.own}", token)
    unauthorized(resp, token)
    resp = smart.get(f"Patient/{smart.population.own}", token)
    unauthorized(resp, token)
    assert_no_phi(resp.text, smart.population.own_phi)


def test_a_bad_token_writes_nothing(smart):
    pop = smart.population
    marker = uuid.uuid4().hex
    for token in [smart.idp.unsigned_token("patient/*.cruds", smart.endpoint, patient=pop.own),
                  smart.token("patient/*.cruds", patient=pop.own, exp_in=-600),
                  smart.idp.hs256_confusion_token("patient/*.cruds", smart.endpoint, patient=pop.own)]:
        unauthorized(smart.post("Observation", token, json=observation_resource(None, pop.own, "laboratory", "x", identifier=marker)),
                     token)
    assert sigv4_count(smart, "Observation", {"identifier": f"urn:fhirlake:e2e:obs|{marker}"}) == 0


# --- tokens refused: 403 --------------------------------------------------------------------------

def test_writing_needs_a_write_scope(smart, patient_token):
    pop = smart.population
    marker = uuid.uuid4().hex
    insufficient_scope(smart.post("Observation", patient_token,
                                  json=observation_resource(None, pop.own, "laboratory", "new", identifier=marker)))
    assert sigv4_count(smart, "Observation", {"identifier": f"urn:fhirlake:e2e:obs|{marker}"}) == 0

    before = smart.sigv4.get(f"Observation/{pop.own_lab}").json()
    changed = observation_resource(pop.own_lab, pop.own, "laboratory", "overwritten")
    insufficient_scope(smart.put(f"Observation/{pop.own_lab}", patient_token, json=changed))
    insufficient_scope(smart.delete(f"Observation/{pop.own_lab}", patient_token))
    after = smart.sigv4.get(f"Observation/{pop.own_lab}")
    assert after.status_code == 200 and after.json()["meta"]["versionId"] == before["meta"]["versionId"]
    assert after.json()["code"]["text"] == pop.texts[pop.own_lab]


def test_reading_a_type_the_scopes_do_not_name_is_403(smart):
    pop = smart.population
    token = smart.token("patient/Patient.rs", patient=pop.own)
    assert smart.get(f"Patient/{pop.own}", token).status_code == 200
    for resp in [smart.get(f"Observation/{pop.own_lab}", token), smart.get("Observation", token),
                 smart.get(f"Patient/{pop.own}/Observation", token)]:
        insufficient_scope(resp)
        assert_no_phi(resp.text, [pop.texts[pop.own_lab], pop.texts[pop.own_vital]] + pop.other_phi)


def test_read_without_search_permission_cannot_search(smart):
    """SMART 2: `r` is read, `s` is search; one does not give the other."""
    pop = smart.population
    token = smart.token("patient/Observation.r", patient=pop.own)
    assert smart.get(f"Observation/{pop.own_lab}", token).status_code == 200
    insufficient_scope(smart.get("Observation", token))
    search_only = smart.token("patient/Observation.s", patient=pop.own)
    insufficient_scope(smart.get(f"Observation/{pop.own_lab}", search_only))


def test_patient_scopes_without_a_patient_claim_are_403(smart):
    pop = smart.population
    assert smart.get(f"Patient/{pop.own}", smart.token("launch/patient patient/*.rs", patient=pop.own)).status_code == 200
    token = smart.token("launch/patient patient/*.rs")
    for resp in [smart.get(f"Patient/{pop.own}", token), smart.get(f"Patient/{pop.other}", token),
                 smart.get("Observation", token), smart.get("Patient", token)]:
        error_outcome(resp, 403)
        assert_no_phi(resp.text, pop.own_phi + pop.other_phi)


def test_a_smart_1_datastore_ignores_smart_2_scopes(smart_v1):
    pop = smart_v1.population
    resp = smart_v1.get(f"Patient/{pop.own}", smart_v1.token("patient/*.rs", patient=pop.own))
    error_outcome(resp, 403)
    assert_no_phi(resp.text, pop.own_phi)
    assert smart_v1.get(f"Patient/{pop.own}", smart_v1.token("patient/*.read", patient=pop.own)).status_code == 200


# --- patient/ scopes: the launch patient's compartment --------------------------------------------

def test_reading_the_other_patient_is_403(smart, patient_token):
    pop = smart.population
    resp = smart.get(f"Patient/{pop.other}", patient_token)
    error_outcome(resp, 403)
    assert_no_phi(resp.text, pop.other_phi)
    assert smart.get(f"Patient/{pop.own}", patient_token).status_code == 200


def test_reading_the_other_patients_observation_is_403(smart, patient_token):
    pop = smart.population
    for path in [f"Observation/{pop.other_lab}", f"Observation/{pop.other_vital}", f"Observation/{pop.other_lab}/_history/1"]:
        resp = smart.get(path, patient_token)
        error_outcome(resp, 403)
        assert_no_phi(resp.text, pop.other_phi)
    assert smart.get(f"Observation/{pop.own_lab}", patient_token).status_code == 200


def test_a_search_returns_only_the_launch_patients_resources(smart, patient_token):
    pop = smart.population
    status, entries, resp = smart.search("Observation", patient_token, params={"_count": "100"})
    assert status == 200, resp.text[:500]
    assert refs(entries) == observations_of([pop.own_lab, pop.own_vital])
    assert_no_phi(resp.text, pop.other_phi)
    status, entries, _ = smart.search("Patient", patient_token)
    assert status == 200 and refs(entries) == {f"Patient/{pop.own}"}
    status, entries, _ = smart.search("Observation", patient_token, params={"code": "http://loinc.org|2339-0"})
    assert status == 200 and refs(entries) == observations_of([pop.own_lab])


@pytest.mark.parametrize("params", [
    pytest.param(lambda patient, obs: {"subject": f"Patient/{patient}"}, id="subject"),
    pytest.param(lambda patient, obs: {"patient": patient}, id="patient"),
    pytest.param(lambda patient, obs: {"subject": patient}, id="bare id"),
    pytest.param(lambda patient, obs: {"_id": ",".join(obs)}, id="_id"),
])
def test_searching_for_the_other_patient_finds_nothing(smart, patient_token, params):
    pop = smart.population
    own_obs = [pop.own_lab, pop.own_vital]
    status, entries, resp = smart.search("Observation", patient_token, params=params(pop.own, own_obs))
    assert status == 200 and refs(entries) == observations_of(own_obs), resp.text[:500]
    refused_or_none_of(smart, "Observation", patient_token, pop.other_refs, params=params(pop.other, [pop.other_lab, pop.other_vital]))


def test_a_chained_search_cannot_reach_the_other_patient(smart, patient_token):
    pop = smart.population
    status, entries, resp = smart.search("Observation", patient_token, params={"subject:Patient.name": pop.own_family})
    assert status == 200 and refs(entries) == observations_of([pop.own_lab, pop.own_vital]), resp.text[:500]
    refused_or_none_of(smart, "Observation", patient_token, pop.other_refs, params={"subject:Patient.name": pop.other_family})
    refused_or_none_of(smart, "Observation", patient_token, pop.other_refs,
                       params={"subject:Patient.identifier": f"urn:fhirlake:e2e:mrn|{pop.other_mrn}"})


def test_include_adds_only_the_launch_patient(smart, patient_token):
    pop = smart.population
    status, entries, resp = smart.search("Observation", patient_token, params={"_include": "Observation:subject"})
    assert status == 200, resp.text[:500]
    assert refs(entries, "match") == observations_of([pop.own_lab, pop.own_vital])
    assert refs(entries, "include") == {f"Patient/{pop.own}"}
    assert_no_phi(resp.text, pop.other_phi)


def test_revinclude_adds_only_the_launch_patients_observations(smart, patient_token):
    pop = smart.population
    own_obs = observations_of([pop.own_lab, pop.own_vital])
    for params in [{"_revinclude": "Observation:subject"}, {"_id": pop.own, "_revinclude": "Observation:subject"},
                   {"_id": f"{pop.own},{pop.other}", "_revinclude": "Observation:subject"}]:
        status, entries, resp = smart.search("Patient", patient_token, params=params)
        assert status == 200, resp.text[:500]
        assert refs(entries, "match") == {f"Patient/{pop.own}"}, params
        assert refs(entries, "include") == own_obs, params
        assert_no_phi(resp.text, pop.other_phi)
    refused_or_none_of(smart, "Patient", patient_token, pop.other_refs, params={"_id": pop.other, "_revinclude": "Observation:subject"})


def test_everything_is_only_the_launch_patients(smart, patient_token):
    pop = smart.population
    resp = smart.get(f"Patient/{pop.other}/$everything", patient_token)
    error_outcome(resp, 403)
    assert_no_phi(resp.text, pop.other_phi)

    status, entries, resp = smart.search(f"Patient/{pop.own}/$everything", patient_token)
    assert status == 200, resp.text[:500]
    assert refs(entries) == pop.own_refs
    assert_no_phi(json.dumps(entries), pop.other_phi)


def test_history_of_the_other_patient_is_403(smart, patient_token):
    pop = smart.population
    for path in [f"Patient/{pop.other}/_history", f"Observation/{pop.other_lab}/_history"]:
        resp = smart.get(path, patient_token)
        error_outcome(resp, 403)
        assert_no_phi(resp.text, pop.other_phi)
    own = smart.get(f"Patient/{pop.own}/_history", patient_token)
    assert own.status_code == 200, own.text[:500]
    assert refs(own.json().get("entry", [])) == {f"Patient/{pop.own}"}


def test_batch_entries_are_authorized_one_by_one(smart, patient_token):
    pop = smart.population
    urls = [f"Patient/{pop.own}", f"Patient/{pop.other}", f"Observation/{pop.own_lab}", f"Observation/{pop.other_lab}",
            f"Observation?subject=Patient/{pop.other}"]
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [{"request": {"method": "GET", "url": u}} for u in urls]}
    resp = smart.post("", patient_token, json=bundle)
    assert resp.status_code == 200, resp.text[:500]
    answer = resp.json()
    assert answer["type"] == "batch-response" and len(answer["entry"]) == len(urls)
    own_patient, other_patient, own_obs, other_obs, other_search = answer["entry"]
    assert own_patient["response"]["status"].startswith("200") and own_patient["resource"]["id"] == pop.own
    assert own_obs["response"]["status"].startswith("200") and own_obs["resource"]["id"] == pop.own_lab
    for entry in (other_patient, other_obs):
        assert entry["response"]["status"].startswith("403"), entry
        assert (entry.get("resource") or {}).get("resourceType") in (None, "OperationOutcome"), entry
    search_status = other_search["response"]["status"]
    assert search_status.startswith("403") or (search_status.startswith("200") and not refs(other_search["resource"].get("entry", []))), \
        other_search
    assert_no_phi(resp.text, pop.other_phi)


def test_compartment_search_stays_in_the_launch_patients_compartment(smart, patient_token):
    pop = smart.population
    status, entries, resp = smart.search(f"Patient/{pop.own}/Observation", patient_token)
    assert status == 200 and refs(entries) == observations_of([pop.own_lab, pop.own_vital]), resp.text[:500]
    refused_or_none_of(smart, f"Patient/{pop.other}/Observation", patient_token, pop.other_refs)


# --- patient/ write scopes ------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["v2", "v1"])
def test_a_patient_write_scope_writes_only_into_the_launch_patients_compartment(smart, smart_v1, version):
    store, scope = (smart, "patient/Observation.cruds") if version == "v2" else (smart_v1, "patient/Observation.write")
    pop = seed(store)
    token = store.token(f"launch/patient {scope}", patient=pop.own)

    mine = uuid.uuid4().hex
    created = store.post("Observation", token, json=observation_resource(None, pop.own, "laboratory", "mine", identifier=mine))
    assert created.status_code == 201, created.text[:500]
    assert sigv4_count(store, "Observation", {"identifier": f"urn:fhirlake:e2e:obs|{mine}"}) == 1

    theirs = uuid.uuid4().hex
    resp = store.post("Observation", token, json=observation_resource(None, pop.other, "laboratory", "theirs", identifier=theirs))
    error_outcome(resp, 403)
    assert_no_phi(resp.text, pop.other_phi)
    new_id = f"new-{theirs[:12]}"
    resp = store.put(f"Observation/{new_id}", token,
                     json=observation_resource(new_id, pop.other, "laboratory", "theirs", identifier=theirs))
    error_outcome(resp, 403)
    assert sigv4_count(store, "Observation", {"identifier": f"urn:fhirlake:e2e:obs|{theirs}"}) == 0
    assert store.sigv4.get(f"Observation/{new_id}").status_code in (404, 410)

    before = store.sigv4.get(f"Observation/{pop.other_vital}").json()
    resp = store.put(f"Observation/{pop.other_vital}", token,
                     json=observation_resource(pop.other_vital, pop.other, "vital-signs", "overwritten"))
    error_outcome(resp, 403)
    assert_no_phi(resp.text, pop.other_phi)
    resp = store.delete(f"Observation/{pop.other_vital}", token)
    error_outcome(resp, 403)
    after = store.sigv4.get(f"Observation/{pop.other_vital}")
    assert after.status_code == 200, after.text[:500]
    assert after.json()["meta"]["versionId"] == before["meta"]["versionId"]
    assert after.json()["code"]["text"] == pop.texts[pop.other_vital]


def test_an_update_cannot_move_a_resource_into_the_other_patients_compartment(smart):
    pop = seed(smart)
    token = smart.token("patient/Observation.cruds", patient=pop.own)
    oid = f"move-{uuid.uuid4().hex[:12]}"
    created = smart.put(f"Observation/{oid}", token, json=observation_resource(oid, pop.own, "laboratory", "to move"))
    assert created.status_code == 201, created.text[:500]
    resp = smart.put(f"Observation/{oid}", token, json=observation_resource(oid, pop.other, "laboratory", "moved"))
    error_outcome(resp, 403)
    stored = smart.sigv4.get(f"Observation/{oid}").json()
    assert stored["subject"]["reference"] == f"Patient/{pop.own}" and stored["meta"]["versionId"] == "1"


def test_a_batch_cannot_write_for_the_other_patient(smart):
    pop = seed(smart)
    token = smart.token("patient/Observation.cruds", patient=pop.own)
    mine, theirs = uuid.uuid4().hex, uuid.uuid4().hex
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "POST", "url": "Observation"},
         "resource": observation_resource(None, pop.own, "laboratory", "mine", identifier=mine)},
        {"request": {"method": "POST", "url": "Observation"},
         "resource": observation_resource(None, pop.other, "laboratory", "theirs", identifier=theirs)},
    ]}
    resp = smart.post("", token, json=bundle)
    assert resp.status_code == 200, resp.text[:500]
    first, second = resp.json()["entry"]
    assert first["response"]["status"].startswith("201"), first
    assert second["response"]["status"].startswith("403"), second
    assert sigv4_count(smart, "Observation", {"identifier": f"urn:fhirlake:e2e:obs|{mine}"}) == 1
    assert sigv4_count(smart, "Observation", {"identifier": f"urn:fhirlake:e2e:obs|{theirs}"}) == 0


# --- system/ scopes -------------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["v2", "v1"])
def test_a_system_scope_reads_everything(smart, smart_v1, version):
    store, scope = (smart, "system/*.rs") if version == "v2" else (smart_v1, "system/*.read")
    pop = store.population
    token = store.token(scope, sub="backend-service", client_id="bulk-client")
    resp = store.get(f"Patient/{pop.other}", token)
    assert resp.status_code == 200 and resp.json()["name"][0]["family"] == pop.other_family, resp.text[:500]
    status, entries, resp = store.search("Observation", token,
                                         params={"_id": ",".join([pop.own_lab, pop.own_vital, pop.other_lab, pop.other_vital])})
    assert status == 200 and refs(entries) == observations_of([pop.own_lab, pop.own_vital, pop.other_lab, pop.other_vital]), \
        resp.text[:500]
    status, entries, _ = store.search("Patient", token, params={"_id": f"{pop.own},{pop.other}"})
    assert status == 200 and refs(entries) == {f"Patient/{pop.own}", f"Patient/{pop.other}"}


@pytest.mark.parametrize("version", ["v2", "v1"])
def test_export_needs_a_system_scope(smart, smart_v1, version):
    store, system, patient = ((smart, "system/*.rs", "patient/*.rs") if version == "v2"
                              else (smart_v1, "system/*.read", "patient/*.read"))
    pop = store.population
    kick = store.get("$export", store.token(system), headers=ASYNC, params={"_type": "Patient"})
    assert kick.status_code == 202, kick.text[:500]
    assert kick.headers.get("Content-Location"), kick.headers

    resp = store.get("$export", store.token(patient, patient=pop.own), headers=ASYNC, params={"_type": "Patient"})
    error_outcome(resp, 403)
    assert_no_phi(resp.text, pop.other_phi)


# --- SMART 2.2 filtered scopes --------------------------------------------------------------------

@pytest.mark.parametrize("query", ["category=laboratory", f"category={CATEGORY}|laboratory"], ids=["code", "system|code"])
def test_a_filtered_scope_reaches_only_matching_observations(smart, query):
    pop = smart.population
    token = smart.token(f"launch/patient patient/Observation.rs?{query}", patient=pop.own)
    status, entries, resp = smart.search("Observation", token)
    assert status == 200 and refs(entries) == observations_of([pop.own_lab]), resp.text[:500]
    assert pop.texts[pop.own_vital] not in resp.text
    status, entries, resp = smart.search("Observation", token, params={"category": "vital-signs"})
    assert status in (200, 403) and not refs(entries), resp.text[:500]

    assert smart.get(f"Observation/{pop.own_lab}", token).status_code == 200
    vital = smart.get(f"Observation/{pop.own_vital}", token)
    error_outcome(vital, {403, 404})
    assert pop.texts[pop.own_vital] not in vital.text
    other = smart.get(f"Observation/{pop.other_lab}", token)
    error_outcome(other, 403)
    assert_no_phi(other.text, pop.other_phi)
    insufficient_scope(smart.get(f"Patient/{pop.own}", token))


# --- user/ scopes ---------------------------------------------------------------------------------

@pytest.mark.parametrize("form", ["relative", "absolute"])
def test_fine_grained_user_scopes_reach_the_practitioners_compartment(clinic, form):
    store, pop = clinic.store, clinic.pop
    fhir_user = f"Practitioner/{clinic.prac_a}" if form == "relative" else f"{store.endpoint}Practitioner/{clinic.prac_a}"
    token = store.token("openid fhirUser user/*.rs", fhir_user=fhir_user, sub="dr-a")
    status, entries, resp = store.search("Observation", token)
    assert status == 200 and refs(entries) == {f"Observation/{clinic.obs_a}"}, resp.text[:500]
    status, entries, resp = store.search("Encounter", token)
    assert status == 200 and refs(entries) == {f"Encounter/{clinic.enc_a}"}, resp.text[:500]
    assert store.get(f"Observation/{clinic.obs_a}", token).status_code == 200
    for path in [f"Observation/{clinic.obs_b}", f"Encounter/{clinic.enc_b}", f"Observation/{pop.own_lab}"]:
        resp = store.get(path, token)
        error_outcome(resp, 403)
        assert_no_phi(resp.text, [pop.texts[clinic.obs_b], pop.texts[pop.own_lab]])


def test_user_scopes_without_fine_grained_authorization_read_everything(smart):
    pop = smart.population
    token = smart.token("openid fhirUser user/*.rs", fhir_user="Practitioner/anyone", sub="dr-x")
    resp = smart.get(f"Patient/{pop.other}", token)
    assert resp.status_code == 200 and resp.json()["name"][0]["family"] == pop.other_family, resp.text[:500]
    status, entries, resp = smart.search("Observation", token,
                                         params={"_id": ",".join([pop.own_lab, pop.own_vital, pop.other_lab, pop.other_vital])})
    assert status == 200 and refs(entries) == observations_of([pop.own_lab, pop.own_vital, pop.other_lab, pop.other_vital])


# --- a SMART client library -----------------------------------------------------------------------

def fhirclient_with_token(store, token):
    """fhirclient's FHIRClient for the datastore, holding an access token obtained elsewhere:
    its OAuth2 auth restored from state, as an app that saved its session would."""
    smart_client = fhir_client.FHIRClient(settings={"app_id": "app-1", "api_base": store.endpoint})
    metadata = store.idp.metadata()
    smart_client.server.auth = FHIRAuth.create("oauth2", state={
        "app_id": "app-1", "aud": store.endpoint, "access_token": token,
        "authorize_uri": metadata["authorization_endpoint"], "token_uri": metadata["token_endpoint"]})
    assert smart_client.ready
    return smart_client


def test_fhirclient_reads_the_launch_patient_with_a_smart_token(smart):
    pop = smart.population
    app = fhirclient_with_token(smart, smart.token("launch/patient patient/*.rs", patient=pop.own))
    patient = FCPatient.read(pop.own, app.server)
    assert patient.name[0].family == pop.own_family
    assert app.human_name(patient.name[0]) == f"Alice {pop.own_family}"
    observations = list(FCObservation.where(struct={"_count": "50"}).perform_resources_iter(app.server))
    assert sorted(o.id for o in observations) == sorted([pop.own_lab, pop.own_vital])
    with pytest.raises(FHIRPermissionDeniedException) as denied:
        FCPatient.read(pop.other, app.server)
    assert_no_phi(denied.value.response.text, pop.other_phi)

    expired = fhirclient_with_token(smart, smart.token("launch/patient patient/*.rs", patient=pop.own, exp_in=-600))
    with pytest.raises(FHIRUnauthorizedException):
        FCPatient.read(pop.own, expired.server)


# --- the issuer's keys ----------------------------------------------------------------------------

MIN_REFRESH_INTERVAL = 30     # seconds: fhirlake fetches one JWKS URI at most this often


def test_the_jwks_is_cached_refetched_for_a_new_key_and_not_for_made_up_ones(server, healthlake):
    with SmartIdp() as issuer:
        store = smart_store(server, healthlake, issuer)
        pop = seed(store)
        token = store.token("patient/Patient.rs", patient=pop.own)
        assert store.get(f"Patient/{pop.own}", token).status_code == 200
        first = issuer.fetches
        assert 1 <= first <= 2, first
        for _ in range(9):
            assert store.get(f"Patient/{pop.own}", store.token("patient/Patient.rs", patient=pop.own)).status_code == 200
        assert issuer.fetches == first, "valid tokens of a known key refetch the JWKS"

        for i in range(8):
            made_up = issuer.mint("patient/Patient.rs", store.endpoint, patient=pop.own, kid=f"made-up-{i}", key=generate_key("RS256"))
            unauthorized(store.get(f"Patient/{pop.own}", made_up), made_up)
        assert issuer.fetches <= first + 1, f"{issuer.fetches - first} JWKS fetches for made-up kids"

        new_kid, old_kid = issuer.rotate("RS256")
        wait = issuer.last_fetch() + MIN_REFRESH_INTERVAL + 1.5 - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        before = issuer.fetches
        rotated = store.token("patient/Patient.rs", patient=pop.own)
        assert SmartIdp.decode_unverified(rotated)[0]["kid"] == new_kid
        resp = store.get(f"Patient/{pop.own}", rotated)
        assert resp.status_code == 200, resp.text[:500]
        assert issuer.fetches == before + 1, "a token of a new kid fetches the JWKS once"

        withdrawn = store.token("patient/Patient.rs", patient=pop.own, kid=old_kid)
        unauthorized(store.get(f"Patient/{pop.own}", withdrawn), withdrawn)
        for _ in range(3):
            assert store.get(f"Patient/{pop.own}", store.token("patient/Patient.rs", patient=pop.own)).status_code == 200
        assert issuer.fetches <= before + 2


# --- transactions, counts, conditional interactions -----------------------------------------------

def test_a_transaction_with_a_write_for_the_other_patient_commits_nothing(smart):
    pop = seed(smart)
    token = smart.token("patient/Observation.cruds patient/Patient.rs", patient=pop.own)
    mine, theirs = uuid.uuid4().hex, uuid.uuid4().hex
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "request": {"method": "POST", "url": "Observation"},
         "resource": observation_resource(None, pop.own, "laboratory", "mine", identifier=mine)},
        {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "request": {"method": "POST", "url": "Observation"},
         "resource": observation_resource(None, pop.other, "laboratory", "theirs", identifier=theirs)},
    ]}
    resp = smart.post("", token, json=bundle)
    error_outcome(resp, 403)
    assert_no_phi(resp.text, pop.other_phi)
    assert sigv4_count(smart, "Observation", {"identifier": f"urn:fhirlake:e2e:obs|{mine}"}) == 0
    assert sigv4_count(smart, "Observation", {"identifier": f"urn:fhirlake:e2e:obs|{theirs}"}) == 0

    # Deleting or overwriting the other patient's resource inside a transaction is refused too.
    for entry in [{"request": {"method": "DELETE", "url": f"Observation/{pop.other_lab}"}},
                  {"request": {"method": "PUT", "url": f"Observation/{pop.other_lab}"},
                   "resource": observation_resource(pop.other_lab, pop.own, "laboratory", "stolen")}]:
        resp = smart.post("", token, json={"resourceType": "Bundle", "type": "transaction", "entry": [entry]})
        error_outcome(resp, 403)
    stored = smart.sigv4.get(f"Observation/{pop.other_lab}")
    assert stored.status_code == 200 and stored.json()["meta"]["versionId"] == "1", stored.text[:300]

    # A transaction within the launch patient's compartment commits, and its reads are checked.
    ok = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "request": {"method": "POST", "url": "Observation"},
         "resource": observation_resource(None, pop.own, "laboratory", "mine", identifier=mine)},
        {"request": {"method": "GET", "url": f"Patient/{pop.other}"}},
    ]}
    resp = smart.post("", token, json=ok)
    assert resp.status_code == 200, resp.text[:500]
    created, read_other = resp.json()["entry"]
    assert created["response"]["status"].startswith("201"), created
    assert read_other["response"]["status"].startswith("403"), read_other
    assert_no_phi(resp.text, pop.other_phi)
    assert sigv4_count(smart, "Observation", {"identifier": f"urn:fhirlake:e2e:obs|{mine}"}) == 1


def test_counts_never_include_the_other_patients_resources(smart, patient_token):
    pop = smart.population
    resp = smart.get("Observation", patient_token, params={"_summary": "count"})
    assert resp.status_code == 200, resp.text[:500]
    own_count = sigv4_count(smart, "Observation", {"subject": f"Patient/{pop.own}"})
    assert resp.json()["total"] == own_count
    # Counting another patient's compartment is refused rather than answered with their number.
    resp = smart.get(f"Patient/{pop.other}/Observation", patient_token, params={"_summary": "count"})
    error_outcome(resp, 403)


def test_conditional_interactions_need_a_scope_that_reaches_every_resource(smart):
    pop = smart.population
    token = smart.token("patient/Observation.cruds", patient=pop.own)
    # If-None-Exist would tell whether the other patient has a matching resource.
    resp = smart.post("Observation", token, json=observation_resource(None, pop.own, "laboratory", "cond"),
                      headers={"If-None-Exist": f"subject=Patient/{pop.other}"})
    error_outcome(resp, 403)
    resp = smart.delete("Observation", token, params={"subject": f"Patient/{pop.other}"})
    error_outcome(resp, 403)
    assert smart.sigv4.get(f"Observation/{pop.other_lab}").status_code == 200


def test_smart_requests_leave_audit_records_naming_the_token_and_no_phi(server, smart, patient_token):
    pop = smart.population
    assert smart.get(f"Patient/{pop.own}", patient_token).status_code == 200
    assert smart.get(f"Patient/{pop.other}", patient_token).status_code == 403
    assert smart.get("Observation", patient_token, params={"code:text": pop.other_family}).status_code == 200
    records = server.audit_records(lambda r: r.get("datastoreId") == smart.id and r.get("authentication") == "smart", expect=3)
    read_own = [r for r in records if r["operation"] == "ReadResource" and r.get("resourceId") == pop.own]
    read_other = [r for r in records if r["operation"] == "ReadResource" and r.get("resourceId") == pop.other]
    assert read_own and read_other, records[-5:]
    assert read_own[-1]["principal"] == "user-1" and read_own[-1]["clientId"] == "app-1"
    assert read_own[-1]["patient"] == f"Patient/{pop.own}" and read_own[-1]["outcome"] == "success"
    assert read_other[-1]["status"] == 403 and read_other[-1]["outcome"] == "denied"
    assert any(r["operation"] == "SearchWithGet" and r.get("resourceType") == "Observation" for r in records)
    assert_no_phi(json.dumps(records), pop.other_phi + pop.own_phi)


# --- token introspection (IdpLambdaArn) -----------------------------------------------------------

IDP_LAMBDA_ARN = "arn:aws:lambda:us-east-1:123456789012:function:token-introspection"


@pytest.fixture(scope="module")
def introspected(server, healthlake, idp):
    """A SMART datastore whose tokens an IdpLambdaArn judges (locally: the session's
    introspection endpoint, with HealthLake's event and response)."""
    metadata = {k: v for k, v in idp.metadata().items() if k != "jwks_uri"}
    config = {"AuthorizationStrategy": "SMART_ON_FHIR", "FineGrainedAuthorizationEnabled": False,
              "Metadata": json.dumps(metadata), "IdpLambdaArn": IDP_LAMBDA_ARN}
    props = active(healthlake, IdentityProviderConfiguration=config)
    store = SmartStore(props, server, idp)
    seed(store)
    return store


def introspection_answer(store, scope, patient=None, authorized="true", exp_in=300, aud=None):
    now = int(time.time())
    payload = {"iss": "https://idp.example.com", "aud": aud or store.endpoint, "iat": now, "nbf": now - 1,
               "exp": now + exp_in, "isAuthorized": authorized, "uid": "introspected-user", "scope": scope}
    if patient:
        payload["launch_response_patient"] = f"Patient/{patient}"
    return {"authPayload": payload, "iamRoleARN": "arn:aws:iam::123456789012:role/healthlake-access"}


def test_an_idp_lambda_judges_tokens_with_healthlakes_event_and_response(introspected, introspection):
    pop = introspected.population
    token = "opaque-" + uuid.uuid4().hex
    introspection.answer = lambda event: (200, introspection_answer(introspected, "patient/*.rs", patient=pop.own))
    sent = len(introspection.events)
    own = introspected.get(f"Patient/{pop.own}", token)
    assert own.status_code == 200, own.text[:500]
    assert own.json()["id"] == pop.own
    event = introspection.events[sent]
    assert event == {"datastoreEndpoint": introspected.endpoint, "bearerToken": token, "operationName": "ReadResource",
                     "datastoreId": introspected.id, "datastoreTypeVersion": "R4",
                     "datastoreName": introspected.props["DatastoreName"]}
    # The launch patient of the response confines the token like a JWT's `patient` claim.
    error_outcome(introspected.get(f"Patient/{pop.other}", token), 403)
    status, entries, _ = introspected.search("Observation", token)
    assert status == 200 and refs(entries) == observations_of([pop.own_lab, pop.own_vital])
    assert introspection.events[-1]["operationName"] == "SearchWithGet"

    # The function's refusals and unusable answers are 401; a function that cannot answer in
    # time, or fails, is 503; nothing is served either way.
    refusals = [
        lambda event: (200, introspection_answer(introspected, "patient/*.rs", patient=pop.own, authorized="false")),
        lambda event: (200, introspection_answer(introspected, "patient/*.rs", patient=pop.own, exp_in=-3600)),
        lambda event: (200, introspection_answer(introspected, "patient/*.rs", patient=pop.own, aud="https://elsewhere/r4/")),
        lambda event: (200, {"authPayload": {"isAuthorized": "true"}}),
    ]
    for answer in refusals:
        introspection.answer = answer
        unauthorized(introspected.get(f"Patient/{pop.own}", token), token)
    introspection.answer = lambda event: (500, {"message": "boom"})
    failed = introspected.get(f"Patient/{pop.own}", token)
    error_outcome(failed, 503)
    introspection.answer = lambda event: (200, introspection_answer(introspected, "system/*.rs"))
    introspection.delay = 1.5
    try:
        started = time.monotonic()
        slow = introspected.get(f"Patient/{pop.own}", token)
        assert time.monotonic() - started < 1.4, "the 1 s budget was not kept"
        error_outcome(slow, 503)
    finally:
        introspection.delay = 0.0
    assert_no_phi(failed.text + slow.text, pop.own_phi)


def test_fine_grained_user_scopes_reach_the_practitioners_patients(clinic):
    store, pop = clinic.store, clinic.pop
    sfx = uuid.uuid4().hex[:10]
    patient, obs = f"gp-pat-{sfx}", f"gp-obs-{sfx}"
    put(store.sigv4, {**patient_resource(patient, f"Gpfam{sfx}", "Gina", f"MRN-GP-{sfx}"),
                      "generalPractitioner": [{"reference": f"Practitioner/{clinic.prac_a}"}]})
    put(store.sigv4, observation_resource(obs, patient, "laboratory", f"gp text {sfx}"))
    token = store.token("openid fhirUser user/*.rs", fhir_user=f"Practitioner/{clinic.prac_a}")
    # The practitioner's patient, and what is in that patient's compartment, are reached...
    assert store.get(f"Patient/{patient}", token).status_code == 200
    assert store.get(f"Observation/{obs}", token).status_code == 200
    status, entries, resp = store.search("Observation", token)
    assert status == 200, resp.text[:500]
    assert {f"Observation/{obs}", f"Observation/{clinic.obs_a}"} <= refs(entries)
    # ...and nothing of a patient who is neither theirs nor in their own compartment.
    assert not refs(entries) & (observations_of([pop.other_lab, pop.other_vital, clinic.obs_b]))
    error_outcome(store.get(f"Observation/{pop.other_lab}", token), 403)
    assert_no_phi(json.dumps(entries), pop.other_phi)


def poll_manifest(store, location, token, timeout=120):
    deadline = time.monotonic() + timeout
    while True:
        resp = store.get(location, token)
        if resp.status_code == 200:
            return resp.json()
        assert resp.status_code == 202, f"{resp.status_code} {resp.text[:500]}"
        assert time.monotonic() < deadline, "the export did not finish"
        time.sleep(0.2)


def test_a_patient_token_exports_its_own_compartment_and_only_it_may_follow_the_job(smart):
    pop = seed(smart)
    token = smart.token("launch/patient patient/*.rs", patient=pop.own)
    kick = smart.get("Patient/$export", token, headers=ASYNC)
    assert kick.status_code == 202, kick.text[:500]
    location = kick.headers["Content-Location"]
    manifest = poll_manifest(smart, location, token)
    assert manifest["requiresAccessToken"] is True
    exported = set()
    for item in manifest["output"]:
        resp = smart.get(item["url"], token)
        assert resp.status_code == 200, resp.text[:300]
        assert_no_phi(resp.text, pop.other_phi)
        exported |= {f"{r['resourceType']}/{r['id']}" for r in map(json.loads, resp.text.splitlines())}
    assert exported == pop.own_refs, exported

    # Another patient's token can neither follow the job nor read its files; a system token can.
    other = smart.token("launch/patient patient/*.rs", patient=pop.other)
    error_outcome(smart.get(location, other), 403)
    error_outcome(smart.get(manifest["output"][0]["url"], other), 403)
    error_outcome(smart.delete(location, other), 403)
    assert smart.get(location, smart.token("system/*.rs")).status_code == 200

    # A token that reads only some types of the compartment names them; system and group
    # exports stay refused.
    observations_only = smart.token("launch/patient patient/Observation.rs", patient=pop.own)
    error_outcome(smart.get("Patient/$export", observations_only, headers=ASYNC), 403)
    narrowed = smart.get("Patient/$export", observations_only, headers=ASYNC, params={"_type": "Observation"})
    assert narrowed.status_code == 202, narrowed.text[:500]
    files = poll_manifest(smart, narrowed.headers["Content-Location"], observations_only)["output"]
    assert {f["type"] for f in files} == {"Observation"}
    error_outcome(smart.get("$export", token, headers=ASYNC), 403)

"""The searches of the differential suite, derived from the dataset itself, and their coverage.

`searches(resources)` returns a deterministic list of `Search` (the same dataset gives the same
list, in the same order): real codes, names and name prefixes, dates and quantities around the
values present, references to real patients, chains, `_has`, result shaping. Values are read
straight from the resources' JSON here (not through the oracle), so building the list is cheap
enough for test collection.

`_lastUpdated` values are only known once the server stored the resources: those searches hold a
placeholder `{lastUpdated:min|median|max}` that `Search.resolved(...)` fills in at run time.

`features(search)` names what a search exercises (parameter types, modifiers, prefixes, chain and
`_has` depth, result parameters); `REQUIRED_FEATURES` is what the suite promises to cover.
"""

import collections
import random
import re
import urllib.parse
from dataclasses import dataclass

import dataset as ds
from oracle import PREFIXES, definitions, split_prefix

SEED = 4242
UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"
# A code with more matches than this would page through hundreds of pages: not worth it.
MAX_MATCHES = 400


@dataclass(frozen=True)
class Search:
    """`GET [base]/{resource_type}?{params}`; params are (name, value) pairs, unencoded."""
    resource_type: str
    params: tuple

    def query(self):
        return "&".join(f"{name}={value}" for name, value in self.params)

    def encoded_query(self):
        return "&".join(f"{urllib.parse.quote(name, safe=':._-')}={urllib.parse.quote(value, safe=':/,$|._-')}"
                        for name, value in self.params)

    def test_id(self):
        return f"{self.resource_type}?{self.query()}"

    def resolved(self, placeholders):
        """The search with `{lastUpdated:…}` placeholders replaced by `placeholders[…]`."""
        params = tuple((n, re.sub(r"\{([^}]+)\}", lambda m: placeholders[m.group(1)], v)) for n, v in self.params)
        return Search(self.resource_type, params)


def esc(value):
    """A string as a search value: `\\`, `,`, `$` and `|` escaped (search.html#escaping)."""
    return re.sub(r"([\\,$|])", r"\\\1", value)


def S(resource_type, *params):
    return Search(resource_type, tuple(params))


# --- reading values from the data ---------------------------------------------------------------------

class Data:
    def __init__(self, resources):
        self.resources = resources
        self.by_type = collections.defaultdict(list)
        for r in resources:
            self.by_type[r["resourceType"]].append(r)
        self.rng = random.Random(SEED)

    def pick(self, items, n):
        items = sorted(set(items), key=str)
        if len(items) <= n:
            return items
        return self.rng.sample(items, n)

    def codings(self, rtype, element):
        """Counter of (system, code, display) of a CodeableConcept element (or list of them)."""
        counts = collections.Counter()
        for r in self.by_type[rtype]:
            value = r.get(element)
            for cc in value if isinstance(value, list) else [value] if value else []:
                for c in cc.get("coding", []):
                    if c.get("code"):
                        counts[(c.get("system"), c["code"], c.get("display") or "")] += 1
        return counts

    def codes(self, rtype, element, n, lo=1, hi=MAX_MATCHES):
        counts = self.codings(rtype, element)
        return self.pick([k for k, c in counts.items() if lo <= c <= hi], n)

    def ids(self, rtype, n):
        return self.pick([r["id"] for r in self.by_type[rtype] if not r["id"].startswith("edge-")], n)

    def patients(self):
        return [r for r in self.by_type["Patient"] if not r["id"].startswith("edge-")]

    def refs_of(self, rtype, element):
        out = collections.Counter()
        for r in self.by_type[rtype]:
            value = r.get(element)
            for ref in value if isinstance(value, list) else [value] if value else []:
                if isinstance(ref, dict) and ref.get("reference"):
                    out[ref["reference"]] += 1
        return out


def _day(value):
    return value[:10]


def _shift(day, days):
    import datetime
    return (datetime.date.fromisoformat(day) + datetime.timedelta(days=days)).isoformat()


# --- the searches ---------------------------------------------------------------------------------------

def searches(resources):
    d = Data(resources)
    out = []
    add = out.append
    patients = d.patients()
    pat_ids = sorted(p["id"] for p in patients)
    families = sorted({n["family"] for p in patients for n in p.get("name", []) if n.get("family")})
    observations = sorted((o for o in d.by_type["Observation"] if not o["id"].startswith("edge-")), key=lambda r: r["id"])
    by_id = {f"{r['resourceType']}/{r['id']}": r for r in resources}
    givens = sorted({g for p in patients for n in p.get("name", []) for g in n.get("given", [])})

    # token: codes of the clinical types, plain and system-qualified
    for rtype, element, param, n in [("Observation", "code", "code", 10), ("Condition", "code", "code", 6),
                                     ("Procedure", "code", "code", 5), ("Immunization", "vaccineCode", "vaccine-code", 5),
                                     ("MedicationRequest", "medicationCodeableConcept", "code", 4),
                                     ("DiagnosticReport", "code", "code", 3), ("Encounter", "type", "type", 3),
                                     ("AllergyIntolerance", "code", "code", 2), ("CarePlan", "category", "category", 2)]:
        for system, code, _ in d.codes(rtype, element, n):
            add(S(rtype, (param, code)))
            add(S(rtype, (param, f"{system}|{code}")))
    obs_codes = d.codes("Observation", "code", 6, 5, 200)
    add(S("Observation", ("category", "|social-history")))
    add(S("Observation", ("code", "|2339-0")))
    add(S("Observation", ("code", f"{LOINC}|2339-0,{LOINC}|29463-7")))
    add(S("Patient", ("identifier", "http://hl7.org/fhir/sid/us-ssn|")))
    add(S("Patient", ("identifier", f"{ds.MRN_SYSTEM}|")))
    add(S("AllergyIntolerance", ("code", "http://snomed.info/sct|")))
    add(S("Patient", ("gender:not", "male")))
    add(S("Patient", ("gender:not", "female")))
    add(S("Patient", ("gender:not", "male,female")))
    add(S("Condition", ("clinical-status:not", "active")))
    add(S("AllergyIntolerance", ("criticality:not", "low")))
    add(S("MedicationRequest", ("status:not", "stopped")))
    add(S("Immunization", ("status:not", "completed")))
    for system, code, display in obs_codes[:4]:
        add(S("Observation", ("code:text", display.split()[0])))
    for system, code, display in d.codes("Condition", "code", 3):
        add(S("Condition", ("code:text", display[:6])))
    add(S("Observation", ("code:text", "blood glucose")))
    add(S("Condition", ("code:text", "sore")))
    mr = [(i["system"], i["value"]) for p in patients for i in p.get("identifier", [])
          if any(c.get("code") == "MR" for c in i.get("type", {}).get("coding", []))]
    ss = [(i["system"], i["value"]) for p in patients for i in p.get("identifier", [])
          if any(c.get("code") == "SS" for c in i.get("type", {}).get("coding", []))]
    for system, value in d.pick(mr, 3):
        add(S("Patient", ("identifier:of-type", f"http://terminology.hl7.org/CodeSystem/v2-0203|MR|{value}")))
        add(S("Patient", ("identifier", value)))
    for system, value in d.pick(ss, 2):
        add(S("Patient", ("identifier:of-type", f"http://terminology.hl7.org/CodeSystem/v2-0203|SS|{value}")))
        add(S("Patient", ("identifier", f"{system}|{value}")))
    add(S("Patient", ("identifier:of-type", "http://terminology.hl7.org/CodeSystem/v2-0203|MR|MRN-EDGE-1")))
    add(S("Patient", ("identifier:of-type", "http://terminology.hl7.org/CodeSystem/v2-0203|SS|MRN-EDGE-1")))
    add(S("Patient", ("identifier", f"{ds.MRN_SYSTEM}|MRN-EDGE-1")))
    add(S("Patient", ("identifier:text", "medical")))
    add(S("Patient", ("active", "true")))
    add(S("Patient", ("active", "false")))
    add(S("Patient", ("deceased", "true")))
    for g in ("male", "female", "unknown"):
        add(S("Patient", ("gender", g)))
    emails = [t["value"] for p in patients for t in p.get("telecom", []) if t.get("system") == "email"]
    phones = [t["value"] for p in patients for t in p.get("telecom", []) if t.get("system") == "phone"]
    for e in d.pick(emails, 2):
        add(S("Patient", ("email", e)))
    for ph in d.pick(phones, 2):
        add(S("Patient", ("phone", ph)))
        add(S("Patient", ("telecom", ph)))
    for pid in d.pick(pat_ids, 3):
        add(S("Patient", ("_id", pid)))
    add(S("Patient", ("_id", ",".join(d.pick(pat_ids, 2)))))
    for oid in d.ids("Observation", 2):
        add(S("Observation", ("_id", oid)))
    add(S("Condition", ("_id", "edge-condition-period,edge-condition-age,no-such-id")))

    # meta: _tag, _security, _profile, _source
    add(S("Patient", ("_tag", "differential")))
    add(S("Patient", ("_tag", f"{ds.EDGE_TAG_SYSTEM}|second")))
    add(S("Patient", ("_tag", f"{ds.EDGE_TAG_SYSTEM}|")))
    add(S("Observation", ("_tag", f"{ds.EDGE_TAG_SYSTEM}|differential")))
    add(S("Patient", ("_tag:not", "differential")))
    add(S("Patient", ("_security", "http://terminology.hl7.org/CodeSystem/v3-Confidentiality|R")))
    add(S("Patient", ("_security", "HTEST")))
    add(S("Patient", ("_profile", ds.EDGE_PROFILE)))
    add(S("Patient", ("_profile", "http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient")))
    add(S("Patient", ("_profile:below", "http://hl7.org/fhir/us/core/StructureDefinition")))
    add(S("Patient", ("_profile:above", ds.EDGE_PROFILE + "/extra")))
    add(S("AllergyIntolerance", ("_profile:below", "http://hl7.org/fhir/us/core")))
    add(S("Patient", ("_source", ds.EDGE_SOURCE)))
    add(S("Patient", ("_source:below", "http://example.org/fhirlake/source")))
    add(S("Patient", ("_source:missing", "false")))

    # string: names, prefixes, :exact, :contains, accents
    for fam in d.pick(families, 6):
        add(S("Patient", ("family", fam[:3])))
    for fam in d.pick(families, 3):
        add(S("Patient", ("family:exact", fam)))
        add(S("Patient", ("name", fam.upper())))
    for fam in d.pick(families, 3):
        mid = fam[1:4] if len(fam) > 4 else fam[1:]
        add(S("Patient", ("name:contains", mid.lower())))
    for given in d.pick(givens, 4):
        add(S("Patient", ("given", given[:2].lower())))
    add(S("Patient", ("family:exact", families[0].lower())))
    for text in ("muller", "Müll", "MULLER", "mü", "Muller,Mueller"):
        add(S("Patient", ("family", text)))
    add(S("Patient", ("family:exact", "Müller")))
    add(S("Patient", ("family:exact", "Muller")))
    add(S("Patient", ("family:contains", "ülle")))
    add(S("Patient", ("name", "jurgen")))
    add(S("Patient", ("given", "Jür")))
    add(S("Patient", ("name", "jupp")))
    add(S("Patient", ("given:exact", "Anne-Marie")))
    add(S("Patient", ("address-city", "zur")))
    add(S("Patient", ("address", "Königstr")))
    add(S("Practitioner", ("family", "Øster")))
    add(S("Practitioner", ("name", "soren")))
    cities = sorted({a["city"] for p in patients for a in p.get("address", []) if a.get("city")})
    for city in d.pick(cities, 2):
        add(S("Patient", ("address-city", city[:4])))
        add(S("Patient", ("address-city:exact", city)))
    orgs = sorted({o["name"] for o in d.by_type["Organization"] if o.get("name")})
    for name in d.pick(orgs, 3):
        add(S("Organization", ("name", esc(name.split()[0]))))
        add(S("Organization", ("name:contains", esc(name[2:7]))))
        add(S("Organization", ("name:exact", esc(name))))
    prac_families = sorted({n["family"] for p in d.by_type["Practitioner"] for n in p.get("name", []) if n.get("family")})
    for fam in d.pick(prac_families, 2):
        add(S("Practitioner", ("family", fam[:4])))

    # date: every prefix on birthdates, periods, partial dates
    births = sorted(p["birthDate"] for p in patients if p.get("birthDate"))
    for b in d.pick(births, 3):
        add(S("Patient", ("birthdate", b)))
    for b in d.pick(births, 2):
        add(S("Patient", ("birthdate", b[:4])))
        add(S("Patient", ("birthdate", b[:7])))
    for prefix in PREFIXES:
        for b in d.pick(births, 2):
            add(S("Patient", ("birthdate", f"{prefix}{b}")))
    add(S("Patient", ("birthdate", "1974")))
    add(S("Patient", ("birthdate", "1974-12")))
    add(S("Patient", ("birthdate", "1974-12-25")))
    add(S("Patient", ("birthdate", "ge1974-06"), ("birthdate", "le1975")))
    add(S("Patient", ("_tag", "differential"), ("_tag", "second")))
    add(S("Patient", ("family", "mu"), ("family", "mül")))
    add(S("Patient", ("gender:not", "male"), ("gender:not", "female")))
    add(S("Observation", ("date", "ge2019"), ("date", "lt2020-01-02"), ("subject:Patient.family", "Muller,Müller")))
    add(S("Patient", ("birthdate", "sa1974-12-01")))
    add(S("Patient", ("birthdate", "eb1974-12-31")))
    add(S("Patient", ("death-date", "2020-02-29")))
    add(S("Patient", ("death-date", "ge2000")))
    encounters = sorted(d.by_type["Encounter"], key=lambda r: r["id"])
    for enc in d.pick([e["id"] for e in encounters if e.get("period", {}).get("start")], 2):
        e = next(x for x in encounters if x["id"] == enc)
        day = _day(e["period"]["start"])
        subject = e["subject"]["reference"]
        for prefix in PREFIXES:
            add(S("Encounter", ("subject", subject), ("date", f"{prefix}{day}")))
    add(S("Encounter", ("date", "ge2021-03-04T08:30:00Z"), ("status", "in-progress")))
    add(S("Encounter", ("date", "2021-03"), ("class", "IMP")))
    add(S("Encounter", ("date", "sa2021-03-01"), ("class", "IMP")))
    for system, code, _ in obs_codes[:2]:
        dates = sorted(_day(o["effectiveDateTime"]) for o in d.by_type["Observation"]
                       if o.get("effectiveDateTime") and any(c.get("code") == code for c in o["code"].get("coding", [])))
        mid = dates[len(dates) // 2]
        for prefix in PREFIXES:
            add(S("Observation", ("code", code), ("date", f"{prefix}{mid}")))
    for value in ("2020-01", "2020-01-02", "ge2020-01-02", "le2020-01-02", "ap2020-01-02", "sa2019-12-31", "eb2020-01-04",
                  "2019", "2019-07", "ne2019", "gt2019-06", "lt2019-07-15", "2022-05-05", "2022-05-05T10:00:00Z"):
        add(S("Observation", ("date", value), ("subject", "Patient/edge-mueller,Patient/edge-muller,Patient/edge-noname"),
              ("subject:missing", "false")))
    add(S("Observation", ("date", "2022-05-05"), ("code", "8310-5")))
    add(S("Observation", ("date", "2022-05-05T10:00:00Z"), ("code", "8310-5")))
    conditions = sorted(d.by_type["Condition"], key=lambda r: r["id"])
    cond_code = d.codes("Condition", "code", 1, 20, 120)[0][1]
    onsets = sorted(_day(c["onsetDateTime"]) for c in conditions if c.get("onsetDateTime"))
    for prefix in ("eq", "lt", "ge", "sa", "eb"):
        add(S("Condition", ("onset-date", f"{prefix}{onsets[len(onsets) // 3]}"),
              ("code", cond_code)))
    add(S("Condition", ("onset-date", "2017-02-05")))
    add(S("Condition", ("onset-date", "2017-02")))
    # date windows: both ends bounded, no other criterion, so the window drives the search
    obs_days = sorted({_day(o["effectiveDateTime"]) for o in d.by_type["Observation"] if o.get("effectiveDateTime")})
    for day in d.pick(obs_days, 3):
        add(S("Observation", ("date", f"ge{day}"), ("date", f"lt{_shift(day, 1)}")))
    day = obs_days[len(obs_days) // 2]
    add(S("Observation", ("date", f"gt{day}"), ("date", f"le{_shift(day, 3)}")))
    add(S("Observation", ("date", f"sa{day}"), ("date", f"eb{_shift(day, 10)}")))
    add(S("Observation", ("date", "ge2019-06-15"), ("date", "le2019-07-20")))
    add(S("Observation", ("date", "ge2019-12-31T23:00:00Z"), ("date", "lt2020-01-03"), ("date", "ne2020-01-02")))
    enc_days = sorted({_day(e["period"]["start"]) for e in encounters if e.get("period", {}).get("start")})
    for day in d.pick(enc_days, 2):
        add(S("Encounter", ("date", f"ge{day}"), ("date", f"lt{_shift(day, 2)}")))
    add(S("Encounter", ("date", "sa2019"), ("date", "lt2030")))
    add(S("Encounter", ("date", "ge1900"), ("date", "lt2100")))
    add(S("Patient", ("birthdate", "ge1950"), ("birthdate", "lt1960")))
    add(S("Patient", ("birthdate", "gt1974-12"), ("birthdate", "eb1990-06")))
    add(S("Condition", ("onset-date", f"ge{onsets[len(onsets) // 2]}"), ("onset-date", f"le{_shift(onsets[len(onsets) // 2], 30)}")))
    add(S("Condition", ("recorded-date", "2017-02")))
    add(S("Condition", ("recorded-date", "2016-12-01")))
    add(S("Condition", ("recorded-date", "2016-11-30")))
    imms = sorted(d.by_type["Immunization"], key=lambda r: r["id"])
    for im in d.pick([i["id"] for i in imms], 2):
        i = next(x for x in imms if x["id"] == im)
        day = _day(i["occurrenceDateTime"])
        add(S("Immunization", ("date", day)))
        add(S("Immunization", ("date", f"ge{day}"), ("patient", i["patient"]["reference"])))
    meds = sorted(d.by_type["MedicationRequest"], key=lambda r: r["id"])
    for m in d.pick([x["id"] for x in meds if x.get("authoredOn")], 2):
        x = next(y for y in meds if y["id"] == m)
        add(S("MedicationRequest", ("authoredon", f"le{_day(x['authoredOn'])}"), ("subject", x["subject"]["reference"])))
    add(S("Patient", ("_lastUpdated", "ge{lastUpdated:min}")))
    add(S("Patient", ("_lastUpdated", "gt{lastUpdated:max}")))
    add(S("Condition", ("_lastUpdated", "le{lastUpdated:median}"), ("code", cond_code)))
    add(S("Condition", ("_lastUpdated", "gt{lastUpdated:median}"), ("code", cond_code)))
    add(S("RiskAssessment", ("_lastUpdated", "lt{lastUpdated:min}")))
    add(S("Device", ("_lastUpdated", "sa2000-01-01")))

    # number
    for value in ("0.25", "0.3", "0.30", "0.031", "ne0.3", "gt0.3", "lt0.3", "ge0.3", "le0.25", "sa0.3", "eb0.3",
                  "ap0.3", "ap0.75", "gt0.1", "0.3,0.75"):
        add(S("RiskAssessment", ("probability", value)))

    # quantity
    weighed = collections.defaultdict(list)
    for o in observations:
        if o.get("valueQuantity") and o["code"]["coding"][0]["code"] == "29463-7":
            weighed[o["subject"]["reference"]].append(o["valueQuantity"]["value"])
    for subject in d.pick([s for s, ws in weighed.items() if len(ws) >= 10], 2):
        ws = sorted(weighed[subject])
        w = ws[len(ws) // 2]
        for prefix in PREFIXES:
            add(S("Observation", ("subject", subject), ("code", "29463-7"), ("value-quantity", f"{prefix}{w}")))
        add(S("Observation", ("subject", subject), ("value-quantity", f"gt{int(w)}|{UCUM}|kg")))
        add(S("Observation", ("subject", subject), ("value-quantity", f"le{int(w)}||kg")))
        add(S("Observation", ("value-quantity", f"{w}|{UCUM}|kg")))
    add(S("Observation", ("value-quantity", "5.4||mmol/L")))
    add(S("Observation", ("value-quantity", "5.4")))
    add(S("Observation", ("value-quantity", "ge5||mmol/L")))
    add(S("Observation", ("value-quantity", f"100|{UCUM}|kg")))
    add(S("Observation", ("value-quantity", f"100.25|{UCUM}|kg")))
    add(S("Observation", ("value-quantity", f"ap37|{UCUM}|Cel")))
    add(S("Observation", ("value-quantity", f"37.5|{UCUM}|Cel")))
    add(S("Encounter", ("length", "90")))
    add(S("Encounter", ("length", f"gt60|{UCUM}|min")))
    add(S("Condition", ("onset-age", "42")))
    add(S("Condition", ("onset-age", f"lt50|{UCUM}|a")))
    add(S("Observation", ("component-value-quantity", f"gt140|{UCUM}|mm[Hg]")))
    add(S("Observation", ("combo-value-quantity", "95")))

    # composite
    add(S("Observation", ("code-value-quantity", f"{LOINC}|29463-7$gt99")))
    add(S("Observation", ("code-value-quantity", f"{LOINC}|29463-7$100|{UCUM}|kg")))
    add(S("Observation", ("code-value-quantity", "2339-0$5.4")))
    # R4 composites are multipleOr = false: an OR of composite values is refused (REFUSED), so each alone.
    add(S("Observation", ("code-value-quantity", "8310-5$ge37")))
    add(S("Observation", ("code-value-quantity", "2339-0$lt100")))
    add(S("Observation", ("component-code-value-quantity", f"{LOINC}|8480-6$gt145")))
    add(S("Observation", ("component-code-value-quantity", f"{LOINC}|8462-4$le60")))
    add(S("Observation", ("component-code-value-quantity", "8480-6$95")))
    add(S("Observation", ("combo-code-value-quantity", "8462-4$95")))
    add(S("Observation", ("combo-code-value-quantity", f"{LOINC}|29463-7$100.25")))
    add(S("Observation", ("code-value-concept", f"{LOINC}|72166-2$http://snomed.info/sct|266919005")))
    add(S("Observation", ("code-value-concept", "72166-2$266919005")))
    add(S("Observation", ("combo-code-value-concept", "72166-2$449868002")))

    # reference
    for oid in d.pick([o["id"] for o in observations], 4):
        o = next(x for x in observations if x["id"] == oid)
        add(S("Observation", ("subject", o["subject"]["reference"]), ("code", o["code"]["coding"][0]["code"])))
    for pid in d.pick(pat_ids, 4):
        add(S("Condition", ("patient", pid)))
    for pid in d.pick(pat_ids, 2):
        add(S("Encounter", ("subject:Patient", pid)))
        add(S("Claim", ("patient", f"Patient/{pid}")))
        add(S("ExplanationOfBenefit", ("patient", pid)))
    two = d.pick(pat_ids, 2)
    add(S("Immunization", ("patient", f"Patient/{two[0]},Patient/{two[1]}")))
    add(S("Condition", ("subject", f"Patient/{two[0]},{two[1]}")))
    enc_pract = collections.Counter()
    for e in encounters:
        for p in e.get("participant", []):
            if p.get("individual", {}).get("reference"):
                enc_pract[p["individual"]["reference"]] += 1
    for ref in d.pick([r for r, c in enc_pract.items() if c <= MAX_MATCHES], 2):
        add(S("Encounter", ("participant", ref)))
        add(S("Encounter", ("practitioner", ref.split("/", 1)[1])))
    providers = collections.Counter(e["serviceProvider"]["reference"] for e in encounters if e.get("serviceProvider"))
    for ref in d.pick([r for r, c in providers.items() if c <= MAX_MATCHES], 2):
        add(S("Encounter", ("service-provider", ref)))
    reports = sorted(d.by_type["DiagnosticReport"], key=lambda r: r["id"])
    for rid in d.pick([r["id"] for r in reports if r.get("result")], 2):
        r = next(x for x in reports if x["id"] == rid)
        add(S("DiagnosticReport", ("result", r["result"][0]["reference"])))
    for cid in d.pick([c["id"] for c in conditions if c.get("encounter")], 2):
        c = next(x for x in conditions if x["id"] == cid)
        add(S("Condition", ("encounter", c["encounter"]["reference"])))
    add(S("Observation", ("subject:identifier", f"{ds.MRN_SYSTEM}|MRN-EDGE-1")))
    add(S("Observation", ("subject:identifier", "MRN-EDGE-1")))
    add(S("Observation", ("subject", "Patient/edge-mueller")))
    add(S("Observation", ("patient", "edge-muller")))
    add(S("Patient", ("general-practitioner", "Practitioner/edge-practitioner")))
    add(S("Patient", ("general-practitioner:Practitioner", "edge-practitioner")))
    add(S("Device", ("patient", "Patient/edge-mueller")))

    # uri
    add(S("Device", ("url", "http://example.org/fhirlake/devices/pump/v2")))
    add(S("Device", ("url", "http://example.org/fhirlake/devices/pump")))
    add(S("Device", ("url:below", "http://example.org/fhirlake/devices")))
    add(S("Device", ("url:below", "http://example.org/fhirlake/devices/pump")))
    add(S("Device", ("url:above", "http://example.org/fhirlake/devices/pump/v2/x")))
    add(S("Device", ("url:above", "http://example.org/fhirlake")))

    # :missing
    add(S("Patient", ("birthdate:missing", "false")))
    add(S("Patient", ("family:missing", "true")))
    add(S("Observation", ("value-quantity:missing", "true"), ("code", "72166-2")))
    add(S("Observation", ("encounter:missing", "true"), ("subject:missing", "false")))
    add(S("Condition", ("abatement-date:missing", "false"), ("code", cond_code)))
    add(S("Encounter", ("length:missing", "false")))
    add(S("RiskAssessment", ("date:missing", "true")))
    add(S("Device", ("url:missing", "false")))

    # chains, one and two levels
    for oid in d.pick([o["id"] for o in observations if o.get("encounter")], 6):
        o = next(x for x in observations if x["id"] == oid)
        code = o["code"]["coding"][0]["code"]
        patient = by_id[o["subject"]["reference"]]
        encounter = by_id[o["encounter"]["reference"]]
        add(S("Observation", ("subject:Patient.family", esc(patient["name"][0]["family"])), ("code", code)))
        org = by_id.get(encounter.get("serviceProvider", {}).get("reference"))
        if org and org.get("name"):
            add(S("Observation", ("encounter.service-provider.name", esc(org["name"])), ("code", code)))
        for part in encounter.get("participant", [])[:1]:
            prac = by_id.get(part.get("individual", {}).get("reference"))
            if prac and prac.get("name"):
                add(S("Observation", ("encounter.participant:Practitioner.family", esc(prac["name"][0]["family"])),
                      ("code", code)))
    for fam in d.pick(families, 3):
        add(S("Encounter", ("subject.family", fam[:4])))
    add(S("Observation", ("subject:Patient.name", "müller")))
    add(S("Observation", ("patient.family:exact", "Muller")))
    add(S("Observation", ("subject:Patient.birthdate", "1974")))
    add(S("Condition", ("subject:Patient.gender", "female"), ("code", cond_code)))
    add(S("Immunization", ("patient.birthdate", f"ge{births[len(births) // 2]}"),
          ("vaccine-code", imms[0]["vaccineCode"]["coding"][0]["code"])))
    add(S("Encounter", ("participant:Practitioner.family", "Øster")))
    for name in d.pick(orgs, 2):
        add(S("Encounter", ("service-provider.name", esc(name))))
    for fam in d.pick(families, 2):
        add(S("DiagnosticReport", ("result.subject:Patient.family", fam)))
    add(S("Observation", ("encounter.subject:Patient.family", "Müller")))

    # _has, one and two levels
    for system, code, _ in obs_codes[:4]:
        add(S("Patient", (f"_has:Observation:patient:code", code)))
    for system, code, _ in d.codes("Condition", "code", 3):
        add(S("Patient", ("_has:Condition:subject:code", f"{system}|{code}")))
    for system, code, _ in d.codes("Immunization", "vaccineCode", 2):
        add(S("Patient", ("_has:Immunization:patient:vaccine-code", code)))
    add(S("Patient", ("_has:Observation:subject:value-quantity", f"gt140|{UCUM}|kg")))
    add(S("Patient", ("_has:Observation:subject:code", "2339-0"), ("gender", "male")))
    add(S("Practitioner", ("_has:Encounter:participant:class", "IMP")))
    add(S("Patient", ("_has:Observation:subject:_tag", "differential")))
    for system, code, _ in obs_codes[:3]:
        add(S("Patient", ("_has:Encounter:patient:_has:Observation:encounter:code", code)))
    for system, code, _ in d.codes("Condition", "code", 2):
        add(S("Organization", ("_has:Encounter:service-provider:_has:Condition:encounter:code", code)))
    add(S("Patient", ("_has:Encounter:patient:_has:Observation:encounter:code", "2339-0")))

    # full text
    add(S("Patient", ("_text", ds.NARRATIVE_WORD)))
    add(S("Observation", ("_text", ds.NARRATIVE_WORD)))
    add(S("Patient", ("_text", "plain narrative")))
    add(S("Observation", ("_content", ds.CONTENT_WORD)))
    add(S("Patient", ("_content", ds.NARRATIVE_WORD)))

    # result shaping: _sort, _include, _revinclude, paging, _total
    add(S("Patient", ("_sort", "birthdate")))
    add(S("Patient", ("_sort", "-birthdate")))
    add(S("Patient", ("_sort", "family,given")))
    add(S("Patient", ("_sort", "-family")))
    add(S("Patient", ("_sort", "gender,-birthdate")))
    add(S("Patient", ("_sort", "_id")))
    for system, code, _ in obs_codes[:2]:
        add(S("Observation", ("code", code), ("_sort", "-date")))
        add(S("Observation", ("code", code), ("_sort", "subject,-date")))
    add(S("Encounter", ("subject", f"Patient/{pat_ids[0]}"), ("_sort", "-date,_id")))
    add(S("Condition", ("subject", f"Patient/{pat_ids[1]}"), ("_sort", "onset-date,code")))
    add(S("Immunization", ("patient", f"Patient/{pat_ids[2]}"), ("_sort", "-date,vaccine-code")))
    add(S("RiskAssessment", ("_sort", "-probability")))
    add(S("RiskAssessment", ("_sort", "date")))
    for system, code, _ in obs_codes[:2]:
        add(S("Observation", ("code", code), ("_include", "Observation:subject")))
    add(S("Observation", ("code", obs_codes[2][1]), ("_include", "Observation:encounter")))
    add(S("Observation", ("code", obs_codes[3][1]), ("_include", "Observation:subject:Patient")))
    add(S("Encounter", ("subject", f"Patient/{pat_ids[3]}"), ("_include", "Encounter:participant")))
    add(S("DiagnosticReport", ("subject", f"Patient/{pat_ids[4]}"), ("_include", "DiagnosticReport:result")))
    for oid in d.ids("Observation", 2):
        add(S("Observation", ("_id", oid), ("_include", "Observation:encounter"),
              ("_include:iterate", "Encounter:service-provider")))
    add(S("MedicationRequest", ("subject", f"Patient/{pat_ids[5]}"), ("_include", "MedicationRequest:encounter"),
          ("_include:iterate", "Encounter:participant")))
    add(S("DiagnosticReport", ("_id", d.ids("DiagnosticReport", 1)[0]), ("_include", "DiagnosticReport:result"),
          ("_include:iterate", "Observation:subject")))
    for pid in d.pick(pat_ids, 2):
        add(S("Patient", ("_id", pid), ("_revinclude", "Condition:subject")))
    for eid in d.ids("Encounter", 2):
        add(S("Encounter", ("_id", eid), ("_revinclude", "Observation:encounter")))
    for pid in d.pick(pat_ids, 2):
        add(S("Patient", ("_id", pid), ("_revinclude", "Encounter:patient"),
              ("_revinclude:iterate", "Condition:encounter")))
    add(S("Patient", ("family", "Mül"), ("_revinclude", "Observation:subject"),
          ("_revinclude:iterate", "DiagnosticReport:result")))
    add(S("Practitioner", ("_id", "edge-practitioner"), ("_revinclude", "Patient:general-practitioner")))
    for system, code, _ in obs_codes[:3]:
        add(S("Observation", ("code", code), ("_count", "7")))
    add(S("Patient", ("_count", "5")))
    add(S("Patient", ("_count", "4"), ("_sort", "birthdate")))
    add(S("Condition", ("code", cond_code), ("_count", "3"), ("_total", "accurate")))
    add(S("Observation", ("code", obs_codes[4][1]), ("_count", "10"), ("_include", "Observation:subject")))
    add(S("Immunization", ("vaccine-code", imms[0]["vaccineCode"]["coding"][0]["code"]), ("_count", "6"),
          ("_sort", "-date"), ("_total", "accurate")))
    add(S("Patient", ("_total", "accurate")))
    add(S("Patient", ("gender", "female"), ("_total", "accurate")))
    add(S("Observation", ("code", obs_codes[5][1]), ("_total", "accurate")))
    add(S("Device", ("url:below", "http://example.org/fhirlake"), ("_total", "accurate"), ("_count", "1")))

    # de-duplicate, keeping the first occurrence
    seen, unique = set(), []
    for s in out:
        if s not in seen:
            seen.add(s)
            unique.append(s)
    return unique


# Searches the server must refuse (400 with an OperationOutcome), as the oracle does (SearchError):
# a comma-separated value of a parameter whose definition says `multipleOr = false`, as every R4
# composite does ("whether multiple values are allowed for each time the parameter exists").
REFUSED = [
    S("Observation", ("code-value-quantity", "8310-5$ge37,2339-0$lt5")),
    S("Observation", ("component-code-value-quantity", f"{LOINC}|8480-6$gt145,{LOINC}|8462-4$le60")),
]


# --- coverage ---------------------------------------------------------------------------------------------

REQUIRED_FEATURES = sorted(
    [f"type:{t}" for t in ("token", "string", "date", "number", "quantity", "reference", "uri", "composite")]
    + [f"token:{f}" for f in ("code", "system|code", "|code", "system|")]
    + [f"modifier:{m}" for m in ("not", "text", "of-type", "exact", "contains", "missing", "below", "above",
                                 "identifier", "[type]")]
    + [f"prefix:date:{p}" for p in PREFIXES]
    + [f"prefix:number:{p}" for p in PREFIXES]
    + [f"prefix:quantity:{p}" for p in PREFIXES]
    + ["quantity:system|code", "quantity:||unit", "quantity:number-only"]
    + ["reference:Type/id", "reference:id"]
    + ["or", "and", "chain:1", "chain:2", "has:1", "has:2"]
    + [f"special:{p}" for p in ("_id", "_lastUpdated", "_tag", "_profile", "_security", "_source", "_text",
                                "_content")]
    + ["string:accent", "date:partial", "date:period-data"]
    + ["result:_sort", "result:_sort:multi", "result:_sort:desc", "result:_include", "result:_include:iterate",
       "result:_revinclude", "result:_revinclude:iterate", "result:_count", "result:_total"]
)


def _param_type(resource_type, name):
    """(type, modifier, chain depth, has depth) of a query parameter name, following chains."""
    defs = definitions()
    has = chain = 0
    rtype = resource_type
    while name.startswith("_has:"):
        parts = name.split(":")
        has += 1
        rtype, name = parts[1], ":".join(parts[3:])
    while "." in name:
        head, name = name.split(".", 1)
        code, _, type_mod = head.partition(":")
        param = defs.param(rtype, code)
        chain += 1
        targets = [type_mod] if type_mod else param.get("target", [])
        nxt = name.split(".", 1)[0].split(":", 1)[0]
        rtype = next((t for t in targets if defs.param(t, nxt)), targets[0])
    code, _, modifier = name.partition(":")
    param = defs.param(rtype, code)
    if param and param["type"] == "reference" and modifier in param.get("target", []):
        modifier = "[type]"
    return (param["type"] if param else None), code, modifier, chain, has


def features(search):
    """The names of what `search` exercises (see REQUIRED_FEATURES)."""
    out = set()
    names = collections.Counter(n for n, _ in search.params)
    if any(c > 1 for n, c in names.items() if not n.startswith("_include") and not n.startswith("_revinclude")):
        out.add("and")
    for name, value in search.params:
        base = name.split(":", 1)[0]
        if base in ("_sort", "_include", "_revinclude", "_count", "_total"):
            out.add(f"result:{base}")
            if base == "_sort":
                if "," in value:
                    out.add("result:_sort:multi")
                if value.startswith("-") or ",-" in value:
                    out.add("result:_sort:desc")
            if name.endswith(":iterate"):
                out.add(f"result:{base}:iterate")
            continue
        kind, code, modifier, chain, has = _param_type(search.resource_type, name)
        if chain:
            out.add(f"chain:{chain}")
        if has:
            out.add(f"has:{has}")
        if code.startswith("_"):
            out.add(f"special:{code}")
        out.add(f"type:{kind}")
        if modifier:
            out.add(f"modifier:{modifier}")
        values = value.split(",")
        if len(values) > 1:
            out.add("or")
        for v in values:
            if kind == "token" and modifier in ("", "not"):
                if v.startswith("|"):
                    out.add("token:|code")
                elif v.endswith("|"):
                    out.add("token:system|")
                elif "|" in v:
                    out.add("token:system|code")
                else:
                    out.add("token:code")
            if kind in ("date", "number", "quantity") and modifier != "missing":
                prefix, rest = split_prefix(v)
                out.add(f"prefix:{kind}:{prefix}")
                if kind == "date" and len(rest) < 10:
                    out.add("date:partial")
                if kind == "quantity":
                    parts = rest.split("|")
                    if len(parts) == 1:
                        out.add("quantity:number-only")
                    elif parts[1] == "":
                        out.add("quantity:||unit")
                    else:
                        out.add("quantity:system|code")
            if kind == "reference" and modifier == "":
                out.add("reference:Type/id" if "/" in v else "reference:id")
            if kind == "string" and any(ord(ch) > 127 for ch in v) or v.lower() in ("muller", "jurgen", "soren"):
                out.add("string:accent")
            if kind == "date" and search.resource_type in ("Encounter", "Observation", "Condition") and \
                    ("edge" in search.query() or search.resource_type == "Encounter"):
                out.add("date:period-data")
    return out


def coverage(search_list):
    """feature → number of searches exercising it."""
    counts = collections.Counter()
    for s in search_list:
        counts.update(features(s))
    return counts

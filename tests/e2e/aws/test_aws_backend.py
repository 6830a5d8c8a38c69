"""What only `fhirlake serve --backend aws` has: `fhirlake aws init`, a fail-fast start when
its resources are missing, and datastores encrypted under a customer-managed KMS key
(SseConfiguration CUSTOMER_MANAGED_KMS_KEY) in KMS itself. Runs with FHIRLAKE_E2E_BACKEND=aws."""

import os
import subprocess
import uuid

import botocore.exceptions
import pytest

from sigv4_http import SigV4Http

ENCRYPTION_CONTEXT_KEY = "fhirlake:context"


@pytest.fixture(autouse=True)
def _require_aws(aws_backend):
    assert aws_backend is not None, "tests under e2e/aws/ run with FHIRLAKE_E2E_BACKEND=aws (tests/run does)"


def run_fhirlake(aws_backend, *args, timeout=60):
    return subprocess.run([os.environ["FHIRLAKE_BIN"], *args], env={**os.environ, **aws_backend.moto.env},
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def test_init_is_idempotent_and_creates_what_serve_needs(aws_backend):
    again = run_fhirlake(aws_backend, "aws", "init", "--table", aws_backend.table, "--bucket", aws_backend.bucket,
                         "--kms-key", aws_backend.kms_key)
    assert again.returncode == 0, again.stderr
    table = aws_backend.moto.client("dynamodb").describe_table(TableName=aws_backend.table)["Table"]
    assert {k["AttributeName"]: k["KeyType"] for k in table["KeySchema"]} == {"pk": "HASH", "sk": "RANGE"}
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert table["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    aws_backend.moto.client("s3").head_bucket(Bucket=aws_backend.bucket)
    key = aws_backend.moto.client("kms").describe_key(KeyId=aws_backend.kms_key)["KeyMetadata"]
    assert key["KeyUsage"] == "ENCRYPT_DECRYPT" and key["Enabled"]
    assert key["Arn"] in again.stdout


def test_serve_refuses_to_start_without_its_table(aws_backend, tmp_path):
    missing = f"fhirlake-missing-{uuid.uuid4().hex[:8]}"
    proc = run_fhirlake(aws_backend, "serve", "--backend", "aws", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path),
                        "--table", missing, "--bucket", aws_backend.bucket, "--kms-key", aws_backend.kms_key)
    assert proc.returncode != 0
    assert f"the table {missing} does not exist" in proc.stderr, proc.stderr
    assert "fhirlake aws init" in proc.stderr


def test_customer_managed_key_wraps_the_datastore_key_in_kms(server, healthlake, aws_backend):
    kms = aws_backend.moto.client("kms")
    cmk = kms.create_key(Description="fhirlake e2e customer managed key")["KeyMetadata"]["Arn"]
    created = healthlake.create_fhir_datastore(
        DatastoreTypeVersion="R4", DatastoreName=f"e2e-cmk-{uuid.uuid4().hex[:8]}",
        SseConfiguration={"KmsEncryptionConfig": {"CmkType": "CUSTOMER_MANAGED_KMS_KEY", "KmsKeyId": cmk}})
    datastore_id = created["DatastoreId"]
    healthlake.get_waiter("fhir_datastore_active").wait(DatastoreId=datastore_id, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    props = healthlake.describe_fhir_datastore(DatastoreId=datastore_id)["DatastoreProperties"]
    assert props["SseConfiguration"]["KmsEncryptionConfig"] == {"CmkType": "CUSTOMER_MANAGED_KMS_KEY", "KmsKeyId": cmk}

    fhir = SigV4Http(props["DatastoreEndpoint"], server.access_key, server.secret_key, server.region)
    resp = fhir.post("Patient", json={"resourceType": "Patient", "name": [{"family": "Kms"}]})
    assert resp.status_code == 201, resp.text[:300]
    assert fhir.get(f"Patient/{resp.json()['id']}").json()["name"][0]["family"] == "Kms"

    # The datastore's data key is wrapped by that CMK in KMS, bound to the datastore id.
    item = aws_backend.moto.client("dynamodb").get_item(
        TableName=aws_backend.table, Key={"pk": {"S": "CP#datastores"}, "sk": {"S": f"DS#{datastore_id}"}})["Item"]
    assert item["master_key_id"]["S"] == cmk
    unwrapped = kms.decrypt(CiphertextBlob=item["wrapped_key"]["B"], EncryptionContext={ENCRYPTION_CONTEXT_KEY: datastore_id})
    assert unwrapped["KeyId"] == cmk and len(unwrapped["Plaintext"]) == 32
    with pytest.raises(botocore.exceptions.ClientError):
        kms.decrypt(CiphertextBlob=item["wrapped_key"]["B"], EncryptionContext={ENCRYPTION_CONTEXT_KEY: "another-datastore"})

    # The default key wraps the others, not this one.
    default_arn = kms.describe_key(KeyId=aws_backend.kms_key)["KeyMetadata"]["Arn"]
    assert default_arn != cmk


def test_unknown_customer_managed_key_is_a_validation_error(healthlake):
    missing = "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000"
    with pytest.raises(botocore.exceptions.ClientError) as raised:
        healthlake.create_fhir_datastore(
            DatastoreTypeVersion="R4", DatastoreName="e2e-cmk-missing",
            SseConfiguration={"KmsEncryptionConfig": {"CmkType": "CUSTOMER_MANAGED_KMS_KEY", "KmsKeyId": missing}})
    assert raised.value.response["Error"]["Code"] == "ValidationException"
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400

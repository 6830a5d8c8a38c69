"""The HealthLake control plane, driven through boto3 and the AWS CLI exactly as against AWS.

Covers CreateFHIRDatastore (with the `fhir_datastore_active` waiter), Describe, List (every filter
and NextToken paging), Update, Delete (DELETING -> DELETED, after which the datastore's data plane
answers 404), ClientToken idempotency, tags, every validation error, and persistence across a
restart. Errors are asserted as botocore parses them: `Error.Code` and the HTTP status.

Decisions checked here (documented in fhirlake-core's datastores module):
- a ClientToken reused with different parameters is a ValidationException;
- deleting a DELETED datastore, or updating one, is a ConflictException;
- client faults are HTTP 400 (HealthLake's model gives its exceptions no status), server faults 500.
"""

import concurrent.futures
import datetime
import math
import re
import time
import uuid

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from sigv4_http import SigV4Http

HEX32 = re.compile(r"^[0-9a-f]{32}$")
KMS_KEY_ARN = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
SMART_METADATA = (
    '{"issuer":"https://idp.example.com","authorization_endpoint":"https://idp.example.com/authorize",'
    '"token_endpoint":"https://idp.example.com/token","jwks_uri":"https://idp.example.com/jwks",'
    '"grant_types_supported":["client_credentials"],"capabilities":["launch-standalone"],'
    '"code_challenge_methods_supported":["S256"]}'
)


# --- helpers ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def unchecked(server):
    """A boto3 client that skips botocore's own parameter checks, so the server's are exercised."""
    session = boto3.session.Session(aws_access_key_id=server.access_key, aws_secret_access_key=server.secret_key,
                                    region_name=server.region)
    return session.client("healthlake", endpoint_url=server.base_url,
                          config=Config(retries={"mode": "standard", "max_attempts": 1}, parameter_validation=False))


def unique(prefix="cp"):
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def aws_error(call, *args, **kwargs):
    """Runs a boto3 call that must fail; returns (Error.Code, HTTP status, Error.Message)."""
    with pytest.raises(ClientError) as excinfo:
        call(*args, **kwargs)
    response = excinfo.value.response
    message = response["Error"].get("Message", "")
    assert message, f"error without a message: {response}"
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"], message


def create_active(healthlake, **kwargs):
    """Creates a datastore, waits for ACTIVE with the SDK waiter, and returns its properties."""
    kwargs.setdefault("DatastoreName", unique())
    created = healthlake.create_fhir_datastore(DatastoreTypeVersion="R4", **kwargs)
    healthlake.get_waiter("fhir_datastore_active").wait(
        DatastoreId=created["DatastoreId"], WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    return healthlake.describe_fhir_datastore(DatastoreId=created["DatastoreId"])["DatastoreProperties"]


def list_all(healthlake, **kwargs):
    """Every datastore matching the filter, walking NextToken."""
    found, token = [], None
    while True:
        page = healthlake.list_fhir_datastores(**kwargs, **({"NextToken": token} if token else {}))
        found.extend(page["DatastorePropertiesList"])
        token = page.get("NextToken")
        if not token:
            return found


def ids_named(healthlake, name, **filters):
    return [p["DatastoreId"] for p in list_all(healthlake, Filter={"DatastoreName": name, **filters})]


def fhir_client(server, endpoint):
    return SigV4Http(endpoint, server.access_key, server.secret_key, server.region)


def create_patient(fhir):
    resp = fhir.post("Patient", json={"resourceType": "Patient", "name": [{"family": "Controlplane"}]})
    assert resp.status_code == 201, resp.text
    location = resp.headers.get("Location", "")
    match = re.search(r"Patient/([^/]+)", location)
    assert match, f"no Patient id in Location {location!r}"
    return match.group(1)


# --- create, describe, waiters --------------------------------------------------------------------

def test_create_returns_creating_and_the_waiter_sees_active(healthlake, server):
    name = unique("create")
    before = time.time()
    created = healthlake.create_fhir_datastore(DatastoreTypeVersion="R4", DatastoreName=name)
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 200
    datastore_id = created["DatastoreId"]
    assert HEX32.match(datastore_id)
    assert created["DatastoreStatus"] == "CREATING"
    assert created["DatastoreArn"] == f"arn:aws:healthlake:{server.region}:{created['DatastoreArn'].split(':')[4]}:datastore/fhir/{datastore_id}"
    assert re.match(r"^\d{12}$", created["DatastoreArn"].split(":")[4])
    assert created["DatastoreEndpoint"] == f"{server.base_url}/datastore/{datastore_id}/r4/"

    healthlake.get_waiter("fhir_datastore_active").wait(DatastoreId=datastore_id,
                                                        WaiterConfig={"Delay": 1, "MaxAttempts": 10})
    props = healthlake.describe_fhir_datastore(DatastoreId=datastore_id)["DatastoreProperties"]
    assert props["DatastoreId"] == datastore_id
    assert props["DatastoreArn"] == created["DatastoreArn"]
    assert props["DatastoreName"] == name
    assert props["DatastoreStatus"] == "ACTIVE"
    assert props["DatastoreTypeVersion"] == "R4"
    assert props["DatastoreEndpoint"] == created["DatastoreEndpoint"]
    assert props["SseConfiguration"] == {"KmsEncryptionConfig": {"CmkType": "AWS_OWNED_KMS_KEY"}}
    assert isinstance(props["CreatedAt"], datetime.datetime)
    assert before - 5 <= props["CreatedAt"].timestamp() <= time.time() + 5


def test_aws_cli_creates_waits_describes_lists_and_deletes(aws_cli, server):
    name = unique("cli")
    created = aws_cli("create-fhir-datastore", "--datastore-type-version", "R4", "--datastore-name", name,
                      "--tags", "Key=owner,Value=cli")
    assert created.returncode == 0, created.stderr
    datastore_id = created.json["DatastoreId"]
    assert HEX32.match(datastore_id)
    assert created.json["DatastoreStatus"] == "CREATING"
    assert created.json["DatastoreEndpoint"] == f"{server.base_url}/datastore/{datastore_id}/r4/"

    waited = aws_cli("wait", "fhir-datastore-active", "--datastore-id", datastore_id)
    assert waited.returncode == 0, waited.stderr

    described = aws_cli("describe-fhir-datastore", "--datastore-id", datastore_id)
    assert described.returncode == 0, described.stderr
    assert described.json["DatastoreProperties"]["DatastoreStatus"] == "ACTIVE"
    assert described.json["DatastoreProperties"]["DatastoreName"] == name

    listed = aws_cli("list-fhir-datastores", "--filter", f"DatastoreName={name}")
    assert listed.returncode == 0, listed.stderr
    assert [p["DatastoreId"] for p in listed.json["DatastorePropertiesList"]] == [datastore_id]

    tags = aws_cli("list-tags-for-resource", "--resource-arn", created.json["DatastoreArn"])
    assert tags.returncode == 0, tags.stderr
    assert tags.json["Tags"] == [{"Key": "owner", "Value": "cli"}]

    deleted = aws_cli("delete-fhir-datastore", "--datastore-id", datastore_id)
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.json["DatastoreStatus"] == "DELETING"
    gone = aws_cli("wait", "fhir-datastore-deleted", "--datastore-id", datastore_id)
    assert gone.returncode == 0, gone.stderr


def test_aws_cli_reports_service_errors(aws_cli):
    bad = aws_cli("create-fhir-datastore", "--datastore-type-version", "R5")
    assert bad.returncode != 0
    assert "ValidationException" in bad.stderr

    missing = aws_cli("describe-fhir-datastore", "--datastore-id", "0" * 32)
    assert missing.returncode != 0
    assert "ResourceNotFoundException" in missing.stderr


def test_customer_managed_key_is_recorded(healthlake, customer_key):
    props = create_active(healthlake, SseConfiguration={
        "KmsEncryptionConfig": {"CmkType": "CUSTOMER_MANAGED_KMS_KEY", "KmsKeyId": customer_key.arn}})
    assert props["SseConfiguration"] == {
        "KmsEncryptionConfig": {"CmkType": "CUSTOMER_MANAGED_KMS_KEY", "KmsKeyId": customer_key.arn}}


def test_identity_provider_configuration_is_stored_as_given(healthlake):
    idp = {"AuthorizationStrategy": "SMART_ON_FHIR", "FineGrainedAuthorizationEnabled": True,
           "Metadata": SMART_METADATA,
           "IdpLambdaArn": "arn:aws:lambda:us-east-1:123456789012:function:token-introspection"}
    props = create_active(healthlake, IdentityProviderConfiguration=idp)
    assert props["IdentityProviderConfiguration"] == idp

    plain = create_active(healthlake, IdentityProviderConfiguration={"AuthorizationStrategy": "AWS_AUTH"})
    assert plain["IdentityProviderConfiguration"] == {"AuthorizationStrategy": "AWS_AUTH"}


# --- list ---------------------------------------------------------------------------------------

def test_list_filters_by_name_status_and_creation_time(healthlake):
    name = unique("filter")
    first = create_active(healthlake, DatastoreName=name)
    # The SDK sends filter timestamps in whole seconds: keep the two creations apart by more than one.
    time.sleep(1.2)
    second = create_active(healthlake, DatastoreName=name)
    a, b = first["DatastoreId"], second["DatastoreId"]

    assert sorted(ids_named(healthlake, name)) == sorted([a, b])
    assert ids_named(healthlake, unique("nobody")) == []

    boundary = datetime.datetime.fromtimestamp(math.floor(first["CreatedAt"].timestamp()) + 1, datetime.timezone.utc)
    assert ids_named(healthlake, name, CreatedBefore=boundary) == [a]
    assert ids_named(healthlake, name, CreatedAfter=boundary) == [b]
    assert sorted(ids_named(healthlake, name, CreatedAfter=boundary - datetime.timedelta(days=1))) == sorted([a, b])
    assert ids_named(healthlake, name, CreatedBefore=boundary - datetime.timedelta(days=1)) == []

    healthlake.delete_fhir_datastore(DatastoreId=a)
    assert ids_named(healthlake, name, DatastoreStatus="DELETED") == [a]
    assert ids_named(healthlake, name, DatastoreStatus="ACTIVE") == [b]
    assert ids_named(healthlake, name, DatastoreStatus="CREATING") == []

    everything = [p["DatastoreId"] for p in list_all(healthlake)]
    assert a in everything and b in everything, "deleted datastores stay listed"


def test_list_pages_one_at_a_time(healthlake):
    name = unique("paging")
    created = sorted(create_active(healthlake, DatastoreName=name)["DatastoreId"] for _ in range(3))

    seen, token, pages = [], None, 0
    while True:
        kwargs = {"Filter": {"DatastoreName": name}, "MaxResults": 1}
        if token:
            kwargs["NextToken"] = token
        page = healthlake.list_fhir_datastores(**kwargs)
        pages += 1
        assert len(page["DatastorePropertiesList"]) == 1
        seen.append(page["DatastorePropertiesList"][0]["DatastoreId"])
        token = page.get("NextToken")
        if not token:
            break
        assert pages < 10, "paging does not terminate"
    assert pages == 3
    assert sorted(seen) == created and len(set(seen)) == 3

    # Unfiltered, one per page: every datastore exactly once.
    walked, token = [], None
    for _ in range(1000):
        page = healthlake.list_fhir_datastores(MaxResults=1, **({"NextToken": token} if token else {}))
        walked.extend(p["DatastoreId"] for p in page["DatastorePropertiesList"])
        token = page.get("NextToken")
        if not token:
            break
    assert len(walked) == len(set(walked))
    assert set(created) <= set(walked)


@pytest.mark.parametrize("kwargs", [
    {"NextToken": "definitely-not-a-token"},
    {"NextToken": "dGhpcyBpcyBub3Qgb3Vycw"},
    {"MaxResults": 0},
    {"MaxResults": 501},
    {"Filter": {"DatastoreStatus": "SLEEPING"}},
    {"Filter": {"DatastoreName": "bad|name"}},
])
def test_list_rejects_bad_paging_and_filters(unchecked, kwargs):
    code, status, _ = aws_error(unchecked.list_fhir_datastores, **kwargs)
    assert (code, status) == ("ValidationException", 400)


# --- update -------------------------------------------------------------------------------------

def test_update_renames_and_replaces_the_identity_provider(healthlake):
    props = create_active(healthlake)
    datastore_id = props["DatastoreId"]
    new_name = unique("renamed")
    idp = {"AuthorizationStrategy": "SMART_ON_FHIR_V1", "Metadata": SMART_METADATA}

    updated = healthlake.update_fhir_datastore(DatastoreId=datastore_id, DatastoreName=new_name,
                                               IdentityProviderConfiguration=idp)["DatastoreProperties"]
    assert updated["DatastoreName"] == new_name
    assert updated["DatastoreStatus"] == "ACTIVE"
    assert updated["IdentityProviderConfiguration"] == idp
    described = healthlake.describe_fhir_datastore(DatastoreId=datastore_id)["DatastoreProperties"]
    assert described["DatastoreName"] == new_name
    assert described["IdentityProviderConfiguration"] == idp
    assert described["CreatedAt"] == props["CreatedAt"]
    assert ids_named(healthlake, new_name) == [datastore_id]


def test_update_errors(healthlake, unchecked):
    code, status, _ = aws_error(healthlake.update_fhir_datastore, DatastoreId="f" * 32, DatastoreName="x")
    assert (code, status) == ("ResourceNotFoundException", 400)

    props = create_active(healthlake)
    code, status, _ = aws_error(unchecked.update_fhir_datastore, DatastoreId=props["DatastoreId"],
                                DatastoreName="bad|name")
    assert (code, status) == ("ValidationException", 400)
    code, status, _ = aws_error(healthlake.update_fhir_datastore, DatastoreId=props["DatastoreId"],
                                IdentityProviderConfiguration={"AuthorizationStrategy": "SMART_ON_FHIR"})
    assert (code, status) == ("ValidationException", 400)

    healthlake.delete_fhir_datastore(DatastoreId=props["DatastoreId"])
    code, status, _ = aws_error(healthlake.update_fhir_datastore, DatastoreId=props["DatastoreId"],
                                DatastoreName="too-late")
    assert (code, status) == ("ConflictException", 400)


# --- delete -------------------------------------------------------------------------------------

def test_delete_makes_the_data_unreachable_and_ends_deleted(healthlake, server):
    props = create_active(healthlake)
    datastore_id = props["DatastoreId"]
    fhir = fhir_client(server, props["DatastoreEndpoint"])
    patient_id = create_patient(fhir)
    assert fhir.get(f"Patient/{patient_id}").status_code == 200

    deleted = healthlake.delete_fhir_datastore(DatastoreId=datastore_id)
    assert deleted["DatastoreId"] == datastore_id
    assert deleted["DatastoreArn"] == props["DatastoreArn"]
    assert deleted["DatastoreEndpoint"] == props["DatastoreEndpoint"]
    assert deleted["DatastoreStatus"] == "DELETING"

    # Unreachable at once, before anyone observes DELETED.
    assert fhir.get(f"Patient/{patient_id}").status_code == 404
    assert fhir.post("Patient", json={"resourceType": "Patient"}).status_code == 404

    healthlake.get_waiter("fhir_datastore_deleted").wait(DatastoreId=datastore_id,
                                                         WaiterConfig={"Delay": 1, "MaxAttempts": 10})
    described = healthlake.describe_fhir_datastore(DatastoreId=datastore_id)["DatastoreProperties"]
    assert described["DatastoreStatus"] == "DELETED"
    assert fhir.get(f"Patient/{patient_id}").status_code == 404

    code, status, _ = aws_error(healthlake.delete_fhir_datastore, DatastoreId=datastore_id)
    assert (code, status) == ("ConflictException", 400)
    # The waiter for ACTIVE fails on DELETED instead of spinning.
    with pytest.raises(Exception, match="DELETED|failure"):
        healthlake.get_waiter("fhir_datastore_active").wait(DatastoreId=datastore_id,
                                                            WaiterConfig={"Delay": 1, "MaxAttempts": 3})


def test_unknown_and_malformed_ids(healthlake, unchecked):
    for call in (healthlake.describe_fhir_datastore, healthlake.delete_fhir_datastore):
        code, status, message = aws_error(call, DatastoreId="0" * 32)
        assert (code, status) == ("ResourceNotFoundException", 400)
        assert "0" * 32 in message
        code, status, _ = aws_error(unchecked.describe_fhir_datastore, DatastoreId="a" * 33)
        assert (code, status) == ("ValidationException", 400)
    code, status, _ = aws_error(unchecked.describe_fhir_datastore, DatastoreId="")
    assert (code, status) == ("ValidationException", 400)


# --- idempotency --------------------------------------------------------------------------------

def test_client_token_returns_the_same_datastore(healthlake):
    token = str(uuid.uuid4())
    name = unique("idem")
    first = healthlake.create_fhir_datastore(DatastoreTypeVersion="R4", DatastoreName=name, ClientToken=token)
    again = healthlake.create_fhir_datastore(DatastoreTypeVersion="R4", DatastoreName=name, ClientToken=token)
    assert again["DatastoreId"] == first["DatastoreId"]
    assert again["DatastoreArn"] == first["DatastoreArn"]
    assert ids_named(healthlake, name) == [first["DatastoreId"]]

    code, status, message = aws_error(healthlake.create_fhir_datastore, DatastoreTypeVersion="R4",
                                      DatastoreName=unique("other"), ClientToken=token)
    assert (code, status) == ("ValidationException", 400)
    assert "ClientToken" in message
    assert ids_named(healthlake, name) == [first["DatastoreId"]]


def test_concurrent_creates_with_one_token_make_one_datastore(healthlake):
    token = str(uuid.uuid4())
    name = unique("race")

    def create(_):
        return healthlake.create_fhir_datastore(DatastoreTypeVersion="R4", DatastoreName=name,
                                                ClientToken=token)["DatastoreId"]

    with concurrent.futures.ThreadPoolExecutor(max_workers=6) as pool:
        ids = set(pool.map(create, range(6)))
    assert len(ids) == 1
    assert ids_named(healthlake, name) == list(ids)


# --- tags -----------------------------------------------------------------------------------------

def test_tags_are_added_replaced_listed_and_removed(healthlake):
    props = create_active(healthlake, Tags=[{"Key": "env", "Value": "dev"}, {"Key": "team", "Value": "fhir"}])
    arn = props["DatastoreArn"]
    assert healthlake.list_tags_for_resource(ResourceARN=arn)["Tags"] == [
        {"Key": "env", "Value": "dev"}, {"Key": "team", "Value": "fhir"}]

    healthlake.tag_resource(ResourceARN=arn, Tags=[{"Key": "env", "Value": "prod"}, {"Key": "cost", "Value": ""}])
    assert healthlake.list_tags_for_resource(ResourceARN=arn)["Tags"] == [
        {"Key": "env", "Value": "prod"}, {"Key": "team", "Value": "fhir"}, {"Key": "cost", "Value": ""}]

    healthlake.untag_resource(ResourceARN=arn, TagKeys=["team", "never-there"])
    assert healthlake.list_tags_for_resource(ResourceARN=arn)["Tags"] == [
        {"Key": "env", "Value": "prod"}, {"Key": "cost", "Value": ""}]

    healthlake.untag_resource(ResourceARN=arn, TagKeys=["env", "cost"])
    assert healthlake.list_tags_for_resource(ResourceARN=arn).get("Tags", []) == []


def test_tag_limits_and_errors(healthlake, unchecked):
    props = create_active(healthlake)
    arn = props["DatastoreArn"]

    too_many = [{"Key": f"k{i}", "Value": "v"} for i in range(201)]
    code, status, _ = aws_error(unchecked.tag_resource, ResourceARN=arn, Tags=too_many)
    assert (code, status) == ("ValidationException", 400)

    healthlake.tag_resource(ResourceARN=arn, Tags=too_many[:200])
    assert len(healthlake.list_tags_for_resource(ResourceARN=arn)["Tags"]) == 200
    code, status, _ = aws_error(healthlake.tag_resource, ResourceARN=arn, Tags=[{"Key": "one-more", "Value": "v"}])
    assert (code, status) == ("ValidationException", 400)
    # Replacing a value at the limit is fine.
    healthlake.tag_resource(ResourceARN=arn, Tags=[{"Key": "k0", "Value": "changed"}])

    for tags in ([{"Key": "aws:reserved", "Value": "v"}], [{"Key": "a", "Value": "1"}, {"Key": "a", "Value": "2"}],
                 [{"Key": "k" * 129, "Value": "v"}], [{"Key": "k", "Value": "v" * 257}], [{"Key": "bad|key", "Value": "v"}]):
        code, status, _ = aws_error(unchecked.tag_resource, ResourceARN=arn, Tags=tags)
        assert (code, status) == ("ValidationException", 400), tags

    for bad_arn in ("not-an-arn", "arn:aws:healthlake:us-east-1:123456789012:datastore/fhir/short",
                    "arn:aws:s3:::bucket/key"):
        for call, kwargs in ((unchecked.list_tags_for_resource, {}),
                             (unchecked.tag_resource, {"Tags": [{"Key": "k", "Value": "v"}]}),
                             (unchecked.untag_resource, {"TagKeys": ["k"]})):
            code, status, _ = aws_error(call, ResourceARN=bad_arn, **kwargs)
            assert (code, status) == ("ValidationException", 400), (bad_arn, call)

    unknown = arn.rsplit("/", 1)[0] + "/" + "9" * 32
    for call, kwargs in ((healthlake.list_tags_for_resource, {}),
                         (healthlake.tag_resource, {"Tags": [{"Key": "k", "Value": "v"}]}),
                         (healthlake.untag_resource, {"TagKeys": ["k"]})):
        code, status, _ = aws_error(call, ResourceARN=unknown, **kwargs)
        assert (code, status) == ("ResourceNotFoundException", 400)


# --- create validation ----------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, fragment", [
    ({"DatastoreTypeVersion": "R5"}, "R4"),
    ({"DatastoreTypeVersion": "R4", "DatastoreName": "bad|name"}, "DatastoreName"),
    ({"DatastoreTypeVersion": "R4", "DatastoreName": "n" * 257}, "DatastoreName"),
    ({"DatastoreTypeVersion": "R4", "DatastoreName": ""}, "DatastoreName"),
    ({"DatastoreTypeVersion": "R4", "SseConfiguration": {"KmsEncryptionConfig": {"CmkType": "CUSTOMER_MANAGED_KMS_KEY"}}},
     "KmsKeyId"),
    ({"DatastoreTypeVersion": "R4", "SseConfiguration": {"KmsEncryptionConfig": {"CmkType": "AWS_OWNED_KMS_KEY",
                                                                                 "KmsKeyId": KMS_KEY_ARN}}},
     "KmsKeyId"),
    ({"DatastoreTypeVersion": "R4", "SseConfiguration": {"KmsEncryptionConfig": {"CmkType": "CUSTOMER_MANAGED_KMS_KEY",
                                                                                 "KmsKeyId": "not a key!"}}},
     "KmsKeyId"),
    ({"DatastoreTypeVersion": "R4", "SseConfiguration": {"KmsEncryptionConfig": {"CmkType": "SOMEONE_ELSES_KEY"}}},
     "CmkType"),
    ({"DatastoreTypeVersion": "R4", "ClientToken": "bad token"}, "ClientToken"),
    ({"DatastoreTypeVersion": "R4", "ClientToken": "t" * 65}, "ClientToken"),
    ({"DatastoreTypeVersion": "R4", "Tags": [{"Key": "aws:x", "Value": "v"}]}, "aws:"),
    ({"DatastoreTypeVersion": "R4", "Tags": [{"Key": "k"}]}, "Value"),
    ({"DatastoreTypeVersion": "R4", "IdentityProviderConfiguration": {"AuthorizationStrategy": "SMART_ON_FHIR"}},
     "Metadata"),
    ({"DatastoreTypeVersion": "R4", "IdentityProviderConfiguration": {"AuthorizationStrategy": "SMART_ON_FHIR_V1",
                                                                      "Metadata": "{not json"}}, "Metadata"),
    ({"DatastoreTypeVersion": "R4", "IdentityProviderConfiguration": {"AuthorizationStrategy": "AWS_AUTH",
                                                                      "FineGrainedAuthorizationEnabled": True}},
     "FineGrainedAuthorizationEnabled"),
    ({"DatastoreTypeVersion": "R4", "IdentityProviderConfiguration": {"AuthorizationStrategy": "OPEN_DOOR"}},
     "AuthorizationStrategy"),
    ({"DatastoreTypeVersion": "R4", "PreloadDataConfig": {"PreloadDataType": "SYNTHEA"}}, "PreloadDataConfig"),
    ({"DatastoreName": "no-version"}, "DatastoreTypeVersion"),
])
def test_create_validation_errors(unchecked, kwargs, fragment):
    code, status, message = aws_error(unchecked.create_fhir_datastore, **kwargs)
    assert (code, status) == ("ValidationException", 400)
    assert fragment in message, message


def test_failed_creates_leave_nothing_behind(healthlake, unchecked):
    name = unique("invalid")
    aws_error(unchecked.create_fhir_datastore, DatastoreTypeVersion="R4", DatastoreName=name,
              SseConfiguration={"KmsEncryptionConfig": {"CmkType": "CUSTOMER_MANAGED_KMS_KEY"}})
    assert ids_named(healthlake, name) == []


# --- the wire itself ------------------------------------------------------------------------------

def test_wire_errors_for_unknown_targets_and_bad_bodies(control):
    resp = control.control("NoSuchOperation", {})
    assert resp.status_code == 400
    assert resp.headers["Content-Type"].startswith("application/x-amz-json-1.0")
    assert resp.json()["__type"] == "UnknownOperationException"

    resp = control.request("POST", "", data=b"{}", headers={"X-Amz-Target": "DynamoDB_20120810.ListTables"},
                           content_type="application/x-amz-json-1.0")
    assert (resp.status_code, resp.json()["__type"]) == (400, "UnknownOperationException")

    resp = control.request("POST", "", data=b"{\"DatastoreTypeVersion\": ", content_type="application/x-amz-json-1.0",
                           headers={"X-Amz-Target": "HealthLake.CreateFHIRDatastore"})
    assert (resp.status_code, resp.json()["__type"]) == (400, "SerializationException")

    resp = control.control("DescribeFHIRDatastore", {"DatastoreId": 42})
    assert (resp.status_code, resp.json()["__type"]) == (400, "ValidationException")

    # A request missing a required member names it.
    resp = control.control("StartFHIRImportJob", {"DatastoreId": "0" * 32})
    assert (resp.status_code, resp.json()["__type"]) == (400, "ValidationException")
    assert "InputDataConfig" in resp.json()["message"]

    # Operations of the model that fhirlake does not offer yet are refused clearly, never a 500.
    resp = control.control("RestoreFHIRDatastore", {"DatastoreId": "0" * 32})
    assert (resp.status_code, resp.json()["__type"]) == (400, "ValidationException")
    assert "not supported" in resp.json()["message"]


# --- persistence ----------------------------------------------------------------------------------

def test_datastores_tags_and_data_survive_a_restart(healthlake, server, customer_key):
    kept = create_active(healthlake, Tags=[{"Key": "keep", "Value": "me"}],
                         SseConfiguration={"KmsEncryptionConfig": {"CmkType": "CUSTOMER_MANAGED_KMS_KEY",
                                                                   "KmsKeyId": customer_key.alias}})
    dropped = create_active(healthlake)
    healthlake.delete_fhir_datastore(DatastoreId=dropped["DatastoreId"])
    fhir = fhir_client(server, kept["DatastoreEndpoint"])
    patient_id = create_patient(fhir)

    server.restart()

    after = healthlake.describe_fhir_datastore(DatastoreId=kept["DatastoreId"])["DatastoreProperties"]
    assert after["DatastoreStatus"] == "ACTIVE"
    for member in ("DatastoreName", "DatastoreArn", "DatastoreEndpoint", "CreatedAt", "SseConfiguration"):
        assert after[member] == kept[member], member
    assert healthlake.list_tags_for_resource(ResourceARN=kept["DatastoreArn"])["Tags"] == [{"Key": "keep", "Value": "me"}]
    assert fhir.get(f"Patient/{patient_id}").status_code == 200, "the data key must survive a restart"

    gone = healthlake.describe_fhir_datastore(DatastoreId=dropped["DatastoreId"])["DatastoreProperties"]
    assert gone["DatastoreStatus"] == "DELETED"
    fhir_gone = fhir_client(server, dropped["DatastoreEndpoint"])
    assert fhir_gone.get("Patient").status_code == 404

"""SMART on FHIR datastores: the public discovery document and the CapabilityStatement's
security, through `requests` (unauthenticated) and the SigV4-signed client."""

import json
import uuid

import botocore.exceptions
import pytest
import requests

from sigv4_http import SigV4Http

METADATA = {
    "issuer": "https://idp.example.com",
    "authorization_endpoint": "https://idp.example.com/authorize",
    "token_endpoint": "https://idp.example.com/token",
    "jwks_uri": "https://idp.example.com/jwks",
    "grant_types_supported": ["authorization_code", "client_credentials"],
    "capabilities": ["launch-standalone", "client-confidential-symmetric", "permission-v2"],
    "code_challenge_methods_supported": ["S256"],
}


def active(healthlake, **config):
    created = healthlake.create_fhir_datastore(DatastoreTypeVersion="R4", DatastoreName=f"smart-{uuid.uuid4().hex[:10]}", **config)
    datastore_id = created["DatastoreId"]
    healthlake.get_waiter("fhir_datastore_active").wait(DatastoreId=datastore_id, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    return healthlake.describe_fhir_datastore(DatastoreId=datastore_id)["DatastoreProperties"]


def test_smart_discovery_is_public_and_the_capability_statement_names_the_oauth_endpoints(healthlake, server):
    smart = active(healthlake, IdentityProviderConfiguration={"AuthorizationStrategy": "SMART_ON_FHIR",
                                                              "Metadata": json.dumps(METADATA)})
    endpoint = smart["DatastoreEndpoint"]

    discovery = requests.get(endpoint + ".well-known/smart-configuration", timeout=10)   # no credentials at all
    assert discovery.status_code == 200, discovery.text
    assert discovery.headers["Content-Type"].startswith("application/json")
    assert discovery.json() == METADATA

    # Only the discovery document is public: the rest of the datastore still needs credentials.
    # A SMART datastore tells a client without credentials to bring a bearer token (RFC 6750 §3).
    for path in ("Patient", ".well-known/other"):
        refused = requests.get(endpoint + path, timeout=10)
        assert refused.status_code == 401, refused.text
        assert refused.headers["WWW-Authenticate"] == 'Bearer realm="fhirlake"'
        assert refused.json()["resourceType"] == "OperationOutcome"

    fhir = SigV4Http(endpoint, server.access_key, server.secret_key, server.region)
    statement = fhir.get("metadata").json()
    security = statement["rest"][0]["security"]
    assert security["service"][0]["coding"][0] == {"system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                                   "code": "SMART-on-FHIR"}
    (oauth,) = [e for e in security["extension"]
                if e["url"] == "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"]
    assert {e["url"]: e["valueUri"] for e in oauth["extension"]} == {"authorize": METADATA["authorization_endpoint"],
                                                                     "token": METADATA["token_endpoint"]}


def test_datastores_without_smart_have_no_discovery_document(healthlake, server):
    plain = active(healthlake)
    missing = requests.get(plain["DatastoreEndpoint"] + ".well-known/smart-configuration", timeout=10)
    assert missing.status_code == 404 and missing.json()["resourceType"] == "OperationOutcome"
    fhir = SigV4Http(plain["DatastoreEndpoint"], server.access_key, server.secret_key, server.region)
    security = fhir.get("metadata").json()["rest"][0]["security"]
    assert "service" not in security and "Signature Version 4" in security["description"]

    unknown = requests.get(server.base_url + "/datastore/" + "0" * 32 + "/r4/.well-known/smart-configuration", timeout=10)
    assert unknown.status_code == 404 and unknown.json()["resourceType"] == "OperationOutcome"


def test_metadata_must_let_tokens_be_checked(healthlake):
    """Without an introspection Lambda, tokens are checked against the issuer's keys: the
    Metadata must name the issuer and its jwks_uri, as https URLs."""
    for broken, fragment in [({k: v for k, v in METADATA.items() if k != "jwks_uri"}, "jwks_uri"),
                             ({**METADATA, "jwks_uri": "http://idp.example.com/jwks"}, "https URL"),
                             ({**METADATA, "token_endpoint": "/token"}, "https URL")]:
        with pytest.raises(botocore.exceptions.ClientError) as refused:
            healthlake.create_fhir_datastore(DatastoreTypeVersion="R4", IdentityProviderConfiguration={
                "AuthorizationStrategy": "SMART_ON_FHIR", "Metadata": json.dumps(broken)})
        assert refused.value.response["Error"]["Code"] == "ValidationException"
        assert fragment in refused.value.response["Error"]["Message"]

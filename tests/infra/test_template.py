"""The structural promises of infra/template.yaml that cfn-lint cannot check: how the functions are
built, what the table, buckets, key, secret and queue look like, who may do what, how each
AuthMode authorises the routes, and that every function has its log group and alarms.

Most checks run on the CloudFormation that the SAM transform makes of the template (see
template_model), under the parameter sets that change the stack's shape.
"""

import json
import pathlib
import re
import tomllib

import pytest
from cfnlint.api import lint

from template_model import ROOT, TEMPLATE, Stack, as_list, references, source, translated

JOB_STEPS = {f"{kind}-{step}" for kind in ("import", "export") for step in ("plan", "chunk", "finalize")}
BINARIES = {"fhir-api", "control-plane", "authorizer", "stream-projector"} | JOB_STEPS
# The functions that verify requests and so may read the access key pair.
VERIFYING = {"fhir-api", "control-plane", "authorizer"}
API_FUNCTIONS = {"fhir-api", "control-plane"}
# Where the API functions find the state machines that run bulk jobs.
WORKFLOW_ENV = {
    "FHIRLAKE_IMPORT_STATE_MACHINE_ARN": {"Ref": "ImportStateMachine"},
    "FHIRLAKE_EXPORT_STATE_MACHINE_ARN": {"Ref": "ExportStateMachine"},
}
CONTRACT_ENV = {
    "FHIRLAKE_TABLE": {"Ref": "Table"},
    "FHIRLAKE_BUCKET": {"Ref": "DataBucket"},
    "FHIRLAKE_PROJECTION_BUCKET": {"Ref": "ProjectionsBucket"},
    "FHIRLAKE_KMS_KEY": {"Fn::GetAtt": ["DataKey", "Arn"]},
    "FHIRLAKE_ACCOUNT_ID": {"Ref": "AWS::AccountId"},
    "FHIRLAKE_AUTH_MODE": {"Ref": "AuthMode"},
    "RUST_LOG": {"Ref": "LogLevel"},
}
API_TIMEOUT_LIMIT_MS = 29_000

HEALTHLAKE = {}
IAM = {"AuthMode": "iam"}
EVERYTHING_SET = {
    "PublicUrl": "https://fhir.example.org",
    "AccessKeyId": "FHLEXAMPLEKEY0000001",
    "FhirApiReservedConcurrency": "50",
    "CustomerManagedKeyArns": "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    "JobBucketArns": "arn:aws:s3:::hospital-imports,arn:aws:s3:::hospital-exports",
    "JobKmsKeyArns": "arn:aws:kms:us-east-1:111122223333:key/5678abcd-12ab-34cd-56ef-1234567890ab",
    "AlarmTopicArn": "arn:aws:sns:us-east-1:111122223333:fhirlake-alarms",
    "TokenIntrospectionFunctionArns": "arn:aws:lambda:us-east-1:111122223333:function:token-introspection",
}
SHAPES = {"healthlake": HEALTHLAKE, "iam": IAM, "healthlake-all-options": EVERYTHING_SET, "iam-all-options": {**IAM, **EVERYTHING_SET}}


def stack(overrides):
    return Stack(translated(), overrides)


def functions(resources):
    """binary name -> (logical id, translated AWS::Lambda::Function)."""
    out = {}
    for name, resource in resources.items():
        if resource["Type"] == "AWS::Lambda::Function":
            out[resource["Metadata"]["BuildProperties"]["Binary"]] = (name, resource)
    return out


def of_type(resources, kind):
    return {name: r for name, r in resources.items() if r["Type"] == kind}


def role_statements(resources, function):
    """The statements of the function's role: its inline policies and the stack's managed
    policies attached to it."""
    role = resources[function["Properties"]["Role"]["Fn::GetAtt"][0]]
    statements = [s for policy in role["Properties"]["Policies"] for s in policy["PolicyDocument"]["Statement"]]
    for arn in role["Properties"].get("ManagedPolicyArns", []):
        assert set(arn) == {"Ref"} and resources[arn["Ref"]]["Type"] == "AWS::IAM::ManagedPolicy", arn
        statements += resources[arn["Ref"]]["Properties"]["PolicyDocument"]["Statement"]
    return statements


def actions(statements):
    return {a for s in statements for a in as_list(s["Action"])}


def operations(body):
    """(path, method) -> operation of the API's OpenAPI body."""
    return {(path, method): op for path, item in body["paths"].items() for method, op in item.items()}


# --- lint of what CloudFormation really receives ---------------------------------------------


def test_the_translated_template_passes_cfn_lint_with_no_findings():
    matches = lint(json.dumps(translated()), config={"regions": ["us-east-1"], "include_checks": ["I"]})
    assert [str(m) for m in matches] == []


# --- build: what `sam build` runs ------------------------------------------------------------


def test_every_function_is_a_rust_cargolambda_build_of_a_contract_binary():
    template = source()
    defaults = template["Globals"]["Function"]
    built = {}
    for name, resource in template["Resources"].items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        props = {**defaults, **resource["Properties"]}
        assert resource["Metadata"]["BuildMethod"] == "rust-cargolambda", name
        assert props["Runtime"] == "provided.al2023", name
        assert props["Architectures"] == ["x86_64"], name
        assert props["Handler"] == "bootstrap", name
        assert props["Tracing"] == "Active", name
        # SAM runs cargo lambda in CodeUri and copies target/lambda/<Binary>/bootstrap from there.
        assert (TEMPLATE.parent / props["CodeUri"]).resolve() == ROOT, name
        built[resource["Metadata"]["BuildProperties"]["Binary"]] = name
    assert set(built) == BINARIES


def workspace_function_crates():
    """functions/<dir> crates that the workspace's members name -> the binaries each builds."""
    members = tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["members"]
    crates = {}
    for pattern in members:
        for path in sorted(ROOT.glob(pattern)):
            manifest = path / "Cargo.toml"
            if path.parent != ROOT / "functions" or not manifest.is_file():
                continue
            cargo = tomllib.loads(manifest.read_text())
            bins = {b["name"] for b in cargo.get("bin", [])}
            if not bins and (path / "src" / "main.rs").is_file():
                bins = {cargo["package"]["name"]}
            crates[path.name] = bins
    return crates


def test_function_crates_build_the_binaries_the_template_names():
    crates = workspace_function_crates()
    for directory, bins in crates.items():
        assert bins == {directory}, f"functions/{directory} must build exactly the binary {directory}"
        assert directory in BINARIES, f"functions/{directory} is not deployed by infra/template.yaml"
    # Until the function crates are workspace members there is nothing to compare; once any is,
    # every deployed binary must be.
    if crates:
        assert set(crates) == BINARIES


def test_api_functions_finish_before_the_api_gives_up():
    for overrides in SHAPES.values():
        resources = stack(overrides).resources()
        body = resources["HttpApi"]["Properties"]["Body"]
        by_arn = {name: r for name, r in resources.items() if r["Type"] == "AWS::Lambda::Function"}
        for (path, method), op in operations(body).items():
            integration = op["x-amazon-apigateway-integration"]
            target = (references(integration["uri"]) & set(by_arn)).pop()
            timeout_ms = by_arn[target]["Properties"]["Timeout"] * 1000
            assert integration["timeoutInMillis"] <= API_TIMEOUT_LIMIT_MS, (path, method)
            assert timeout_ms < integration["timeoutInMillis"], (path, method)


# --- data ------------------------------------------------------------------------------------


def test_table_keys_billing_recovery_encryption_stream_and_retention():
    template = source()
    table = template["Resources"]["Table"]
    props = table["Properties"]
    assert props["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}]
    assert props["AttributeDefinitions"] == [{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["SSESpecification"] == {"SSEEnabled": True, "SSEType": "KMS", "KMSMasterKeyId": {"Ref": "DataKey"}}
    assert props["StreamSpecification"] == {"StreamViewType": "NEW_AND_OLD_IMAGES"}
    assert props["DeletionProtectionEnabled"] == {"Ref": "TableDeletionProtection"}
    assert template["Parameters"]["TableDeletionProtection"]["Default"] == "true"
    assert (table["DeletionPolicy"], table["UpdateReplacePolicy"]) == ("Retain", "Retain")
    assert "GlobalSecondaryIndexes" not in props and "TimeToLiveSpecification" not in props


def test_every_bucket_is_private_tls_only_versioned_encrypted_and_retained():
    resources = stack(HEALTHLAKE).resources()
    buckets = of_type(resources, "AWS::S3::Bucket")
    assert set(buckets) == {"DataBucket", "ProjectionsBucket", "AccessLogsBucket"}
    policies = {p["Properties"]["Bucket"]["Ref"]: p for p in of_type(resources, "AWS::S3::BucketPolicy").values()}
    log_destinations = set()
    for name, bucket in buckets.items():
        props = bucket["Properties"]
        assert props["PublicAccessBlockConfiguration"] == dict.fromkeys(
            ["BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"], True
        ), name
        assert props["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}, name
        assert props["VersioningConfiguration"] == {"Status": "Enabled"}, name
        assert any("NoncurrentVersionExpiration" in rule for rule in props["LifecycleConfiguration"]["Rules"]), name
        assert (bucket["DeletionPolicy"], bucket["UpdateReplacePolicy"]) == ("Retain", "Retain"), name
        (encryption,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        if name == "AccessLogsBucket":
            # Server access logging cannot write to SSE-KMS buckets; this one holds no bodies.
            assert encryption["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
        else:
            assert encryption == {
                "ServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": {"Fn::GetAtt": ["DataKey", "Arn"]}},
                "BucketKeyEnabled": True,
            }, name
            log_destinations.add(props["LoggingConfiguration"]["DestinationBucketName"]["Ref"])
        deny = [
            s
            for s in policies[name]["Properties"]["PolicyDocument"]["Statement"]
            if s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        ]
        assert len(deny) == 1, name
        assert deny[0]["Principal"] == "*" and deny[0]["Action"] == "s3:*", name
        assert deny[0]["Resource"] == [{"Fn::GetAtt": [name, "Arn"]}, {"Fn::Sub": f"${{{name}.Arn}}/*"}], name
    assert log_destinations == {"AccessLogsBucket"}


def test_the_key_rotates_is_retained_and_admits_only_the_account_and_its_log_groups():
    template = source()
    key = template["Resources"]["DataKey"]
    assert key["Properties"]["EnableKeyRotation"] is True
    assert (key["DeletionPolicy"], key["UpdateReplacePolicy"]) == ("Retain", "Retain")
    assert template["Resources"]["DataKeyAlias"]["Properties"]["TargetKeyId"] == {"Ref": "DataKey"}
    s = Stack(template, {})
    statements = key["Properties"]["KeyPolicy"]["Statement"]
    principals = [s.evaluate(st["Principal"]) for st in statements]
    assert principals == [{"AWS": "arn:aws:iam::111122223333:root"}, {"Service": "logs.us-east-1.amazonaws.com"}]
    logs_condition = s.evaluate(statements[1]["Condition"])["ArnLike"]["kms:EncryptionContext:aws:logs:arn"]
    assert logs_condition == "arn:aws:logs:us-east-1:111122223333:log-group:/fhirlake/fhirlake-test/*"
    # Every log group of the stack is inside that pattern, so the service can encrypt it.
    for name, group in of_type(template["Resources"], "AWS::Logs::LogGroup").items():
        arn = f"arn:aws:logs:us-east-1:111122223333:log-group:{s.evaluate(group['Properties']['LogGroupName'])}"
        assert arn.startswith(logs_condition[:-1]), name


def test_the_access_key_secret_is_generated_encrypted_and_named_to_the_contract():
    template = source()
    secret = template["Resources"]["AccessKeysSecret"]
    assert secret["Condition"] == "UseHealthLakeAuth"
    props = secret["Properties"]
    assert props["KmsKeyId"] == {"Ref": "DataKey"}
    generate = props["GenerateSecretString"]
    assert generate["GenerateStringKey"] == "secret_access_key"
    assert generate["PasswordLength"] == 40
    assert generate["ExcludePunctuation"] is True and generate["IncludeSpace"] is False
    default_id = json.loads(Stack(template, {}).evaluate(generate["SecretStringTemplate"]))
    assert default_id == {"access_key_id": "FHL1234567db123"}
    chosen = json.loads(Stack(template, {"AccessKeyId": "FHLCHOSEN00000000001"}).evaluate(generate["SecretStringTemplate"]))
    assert chosen == {"access_key_id": "FHLCHOSEN00000000001"}


def test_the_projector_consumes_the_table_stream_with_bisection_partial_failures_and_a_dlq():
    resources = stack(HEALTHLAKE).resources()
    (mapping,) = of_type(resources, "AWS::Lambda::EventSourceMapping").values()
    props = mapping["Properties"]
    assert props["FunctionName"] == {"Ref": "StreamProjectorFunction"}
    assert props["EventSourceArn"] == {"Fn::GetAtt": ["Table", "StreamArn"]}
    assert props["StartingPosition"] == "TRIM_HORIZON"
    assert props["BatchSize"] == 100
    assert props["MaximumBatchingWindowInSeconds"] == {"Ref": "ProjectorBatchingWindowSeconds"}
    assert props["MaximumRetryAttempts"] == {"Ref": "ProjectorMaximumRetryAttempts"}
    assert props["BisectBatchOnFunctionError"] is True
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert props["DestinationConfig"] == {"OnFailure": {"Destination": {"Fn::GetAtt": ["StreamFailureQueue", "Arn"]}}}
    (pattern,) = props["FilterCriteria"]["Filters"]
    assert json.loads(pattern["Pattern"]) == {"dynamodb": {"Keys": {"pk": {"S": [{"prefix": "r#"}, "CP#datastores"]}}}}
    queue = resources["StreamFailureQueue"]["Properties"]
    assert queue["KmsMasterKeyId"] == {"Ref": "DataKey"}


# --- functions: environment, logs, alarms ----------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
def test_functions_receive_the_contract_environment(shape):
    overrides = SHAPES[shape]
    s = stack(overrides)
    resources = s.resources()
    deployed = functions(resources)
    healthlake = overrides.get("AuthMode", "healthlake") == "healthlake"
    assert set(deployed) == (BINARIES if healthlake else BINARIES - {"authorizer"})
    for binary, (name, function) in deployed.items():
        env = function["Properties"]["Environment"]["Variables"]
        for variable, value in CONTRACT_ENV.items():
            assert env[variable] == value, (binary, variable)
        if binary in VERIFYING and healthlake:
            assert env["FHIRLAKE_ACCESS_KEYS_SECRET"] == {"Ref": "AccessKeysSecret"}, binary
        else:
            assert "FHIRLAKE_ACCESS_KEYS_SECRET" not in env, binary
        if "PublicUrl" in overrides:
            assert env["FHIRLAKE_PUBLIC_URL"] == {"Ref": "PublicUrl"}, binary
        else:
            assert "FHIRLAKE_PUBLIC_URL" not in env, binary
        # The API's own URL would be a circular dependency: functions derive it per request.
        assert "HttpApi" not in references(env), binary
        if binary == "fhir-api":
            assert env["FHIRLAKE_SEARCH_MAX_COUNT"] == {"Ref": "SearchMaxCount"}
            # GET $export files go to the data bucket, which fhir-api and the job functions reach.
            assert env["FHIRLAKE_EXPORT_S3_URI"] == {"Fn::Sub": "s3://${DataBucket}/exports/"}
            # Storing audit records as AuditEvent resources is the data plane's option.
            assert env["FHIRLAKE_AUDIT_EVENTS"] == {"Ref": "AuditEvents"}
        else:
            assert "FHIRLAKE_SEARCH_MAX_COUNT" not in env, binary
            assert "FHIRLAKE_EXPORT_S3_URI" not in env, binary
            assert "FHIRLAKE_AUDIT_EVENTS" not in env, binary
        for variable, value in WORKFLOW_ENV.items():
            assert env.get(variable) == (value if binary in API_FUNCTIONS else None), (binary, variable)
        allowed = set(CONTRACT_ENV) | set(WORKFLOW_ENV) | {"FHIRLAKE_ACCESS_KEYS_SECRET", "FHIRLAKE_PUBLIC_URL", "FHIRLAKE_SEARCH_MAX_COUNT",
                                                           "FHIRLAKE_EXPORT_S3_URI", "FHIRLAKE_AUDIT_EVENTS"}
        assert set(env) <= allowed, binary
    reserved = deployed["fhir-api"][1]["Properties"].get("ReservedConcurrentExecutions")
    assert reserved == ({"Ref": "FhirApiReservedConcurrency"} if "FhirApiReservedConcurrency" in overrides else None)


@pytest.mark.parametrize("shape", SHAPES)
def test_every_function_logs_to_its_own_encrypted_retained_group_and_has_alarms(shape):
    overrides = SHAPES[shape]
    resources = stack(overrides).resources()
    alarms = of_type(resources, "AWS::CloudWatch::Alarm")
    for binary, (name, function) in functions(resources).items():
        group_name = function["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
        group = resources[group_name]
        assert group["Type"] == "AWS::Logs::LogGroup", binary
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}, binary
        assert group["Properties"]["KmsKeyId"] == {"Fn::GetAtt": ["DataKey", "Arn"]}, binary
        assert group["DeletionPolicy"] == "Retain", binary
        assert group["Properties"]["LogGroupName"]["Fn::Sub"][0].endswith(f"/{binary}"), binary
        # The role may write there and nowhere else.
        writes = [s for s in role_statements(resources, function) if "logs:PutLogEvents" in as_list(s["Action"])]
        assert [s["Resource"] for s in writes] == [{"Fn::GetAtt": [group_name, "Arn"]}], binary
        watched = {
            a["Properties"]["MetricName"]
            for a in alarms.values()
            if a["Properties"].get("Namespace") == "AWS/Lambda"
            and a["Properties"]["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": name}}]
        }
        assert {"Errors", "Throttles"} <= watched, binary
    assert resources["ApiAccessLogGroup"]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    assert resources["ApiAccessLogGroup"]["Properties"]["KmsKeyId"] == {"Fn::GetAtt": ["DataKey", "Arn"]}


@pytest.mark.parametrize("shape", SHAPES)
def test_alarms_watch_the_api_table_projector_lag_and_failure_queue_and_notify_the_topic(shape):
    overrides = SHAPES[shape]
    resources = stack(overrides).resources()
    alarms = of_type(resources, "AWS::CloudWatch::Alarm")

    def metric_names(alarm):
        props = alarm["Properties"]
        if "MetricName" in props:
            return {(props["Namespace"], props["MetricName"])}
        return {
            (m["MetricStat"]["Metric"]["Namespace"], m["MetricStat"]["Metric"]["MetricName"]) for m in props["Metrics"] if "MetricStat" in m
        }

    watched = set().union(*(metric_names(a) for a in alarms.values()))
    assert {
        ("AWS/ApiGateway", "5xx"),
        ("AWS/DynamoDB", "ReadThrottleEvents"),
        ("AWS/DynamoDB", "WriteThrottleEvents"),
        ("AWS/Lambda", "IteratorAge"),
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible"),
    } <= watched
    for name, alarm in alarms.items():
        props = alarm["Properties"]
        if "AlarmTopicArn" in overrides:
            assert props["AlarmActions"] == [{"Ref": "AlarmTopicArn"}] == props["OKActions"], name
        else:
            assert "AlarmActions" not in props and "OKActions" not in props, name


# --- least privilege -------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
def test_roles_are_scoped_to_the_stacks_own_resources(shape):
    overrides = SHAPES[shape]
    resources = stack(overrides).resources()
    allowed_refs = set(resources) | {"CustomerManagedKeyArns", "JobBucketArns", "JobKmsKeyArns", "TokenIntrospectionFunctionArns",
                                     "AWS::Partition", "AWS::Region", "AWS::AccountId"}
    for binary, (name, function) in functions(resources).items():
        for statement in role_statements(resources, function):
            assert statement["Effect"] == "Allow", binary
            for action in as_list(statement["Action"]):
                assert "*" not in action, (binary, action)
            if statement["Resource"] == "*":
                assert set(as_list(statement["Action"])) == {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}, binary
            else:
                assert references(statement["Resource"]) <= allowed_refs, (binary, statement["Sid"])


@pytest.mark.parametrize("shape", SHAPES)
def test_each_function_holds_only_the_actions_it_needs(shape):
    overrides = SHAPES[shape]
    resources = stack(overrides).resources()
    deployed = functions(resources)
    table_writes = {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem"}
    for binary, (name, function) in deployed.items():
        granted = actions(role_statements(resources, function))
        reads_secret = "secretsmanager:GetSecretValue" in granted
        assert reads_secret == (binary in VERIFYING and "AccessKeysSecret" in resources), binary
        assert ("states:StartExecution" in granted) == (binary in API_FUNCTIONS), binary
        if binary in API_FUNCTIONS | JOB_STEPS:
            assert table_writes | {"dynamodb:Query", "dynamodb:ConditionCheckItem"} <= granted, binary
            assert {"s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket"} <= granted, binary
            assert {"kms:GenerateDataKey", "kms:Decrypt", "kms:DescribeKey"} <= granted, binary
        if binary == "authorizer":
            assert granted == {
                "logs:CreateLogStream",
                "logs:PutLogEvents",
                "xray:PutTraceSegments",
                "xray:PutTelemetryRecords",
                "secretsmanager:GetSecretValue",
                "kms:Decrypt",
                "dynamodb:GetItem",
            }
            (read,) = [s for s in role_statements(resources, function) if s["Action"] == "dynamodb:GetItem"]
            assert read["Resource"] == {"Fn::GetAtt": ["Table", "Arn"]}
            (decrypt,) = [s for s in role_statements(resources, function) if s["Action"] == "kms:Decrypt"]
            assert decrypt["Condition"] == {"StringEquals": {"kms:ViaService": {"Fn::Sub": "secretsmanager.${AWS::Region}.amazonaws.com"}}}
        if binary == "stream-projector":
            assert not granted & table_writes
            assert {"dynamodb:GetRecords", "dynamodb:GetShardIterator", "dynamodb:DescribeStream", "sqs:SendMessage"} <= granted
            puts = [s for s in role_statements(resources, function) if "s3:PutObject" in as_list(s["Action"])]
            assert [s["Resource"] for s in puts] == [{"Fn::Sub": "${ProjectionsBucket.Arn}/projections/*"}]
        # Only fhir-api judges SMART tokens, and it may invoke exactly the named introspection functions.
        invoke = [s for s in role_statements(resources, function) if "lambda:InvokeFunction" in as_list(s["Action"])]
        if "TokenIntrospectionFunctionArns" in overrides and binary == "fhir-api":
            assert [(s["Action"], s["Resource"]) for s in invoke] == [("lambda:InvokeFunction", {"Ref": "TokenIntrospectionFunctionArns"})]
        else:
            assert invoke == [], binary
        cmk = [s for s in role_statements(resources, function) if s["Resource"] == {"Ref": "CustomerManagedKeyArns"}]
        if "CustomerManagedKeyArns" not in overrides or binary == "authorizer":
            assert cmk == [], binary
        else:
            cmk_actions = actions(cmk)
            assert ("kms:GenerateDataKey" in cmk_actions) == (binary == "control-plane"), binary
            assert "kms:Decrypt" in cmk_actions, binary
            for s in cmk:
                if "kms:GenerateDataKey" in as_list(s["Action"]):
                    assert s["Condition"] == {"ForAnyValue:StringEquals": {"kms:EncryptionContextKeys": "fhirlake:context"}}


# --- the API and its two auth modes ----------------------------------------------------------


# The one public route: a SMART datastore's discovery document (only GET, only that path).
SMART_DISCOVERY = ("/datastore/{id}/r4/.well-known/smart-configuration", "get")


@pytest.mark.parametrize("shape", SHAPES)
def test_routes_target_the_right_functions_with_payload_2(shape):
    resources = stack(SHAPES[shape]).resources()
    body = resources["HttpApi"]["Properties"]["Body"]
    targets = {
        key: (references(op["x-amazon-apigateway-integration"]["uri"]) & set(resources)).pop() for key, op in operations(body).items()
    }
    assert targets == {
        ("/", "post"): "ControlPlaneFunction",
        ("/datastore/{id}/r4", "x-amazon-apigateway-any-method"): "FhirApiFunction",
        ("/datastore/{id}/r4/.well-known/smart-configuration", "get"): "FhirApiFunction",
        ("/datastore/{id}/r4/{proxy+}", "x-amazon-apigateway-any-method"): "FhirApiFunction",
    }
    for op in operations(body).values():
        integration = op["x-amazon-apigateway-integration"]
        assert (integration["type"], integration["payloadFormatVersion"]) == ("aws_proxy", "2.0")
    stage = resources["HttpApiApiGatewayDefaultStage"]["Properties"]
    assert stage["StageName"] == "$default"
    assert stage["AccessLogSettings"]["DestinationArn"] == {"Fn::GetAtt": ["ApiAccessLogGroup", "Arn"]}
    access_log = stage["AccessLogSettings"]["Format"]
    json.loads(re.sub(r"\$context\.[A-Za-z.]+", "x", access_log))
    assert "$context.path" in access_log and "querystring" not in access_log.lower()
    assert stage["DefaultRouteSettings"]["ThrottlingRateLimit"] == {"Ref": "ApiThrottlingRateLimit"}
    assert stage["DefaultRouteSettings"]["ThrottlingBurstLimit"] == {"Ref": "ApiThrottlingBurstLimit"}
    permissions = {p["Properties"]["FunctionName"]["Ref"] for p in of_type(resources, "AWS::Lambda::Permission").values()}
    assert {"ControlPlaneFunction", "FhirApiFunction"} <= permissions


@pytest.mark.parametrize("shape", ["healthlake", "healthlake-all-options"])
def test_healthlake_mode_puts_the_sigv4_lambda_authorizer_on_every_route(shape):
    resources = stack(SHAPES[shape]).resources()
    body = resources["HttpApi"]["Properties"]["Body"]
    for key, op in operations(body).items():
        assert op["security"] == ([] if key == SMART_DISCOVERY else [{"HealthLakeSigV4": []}]), key
    # Only the scheme in use is declared: FailOnWarnings would reject the deployment otherwise.
    assert set(body["components"]["securitySchemes"]) == {"HealthLakeSigV4"}
    authorizer = body["components"]["securitySchemes"]["HealthLakeSigV4"]["x-amazon-apigateway-authorizer"]
    assert authorizer["type"] == "request"
    assert authorizer["identitySource"] == ["$request.header.Authorization"]
    assert authorizer["authorizerPayloadFormatVersion"] == "2.0"
    assert authorizer["enableSimpleResponses"] is True
    assert authorizer["authorizerResultTtlInSeconds"] == 0
    assert references(authorizer["authorizerUri"]) & set(resources) == {"AuthorizerFunction"}
    invoke = [
        p
        for p in of_type(resources, "AWS::Lambda::Permission").values()
        if p["Properties"]["FunctionName"] == {"Ref": "AuthorizerFunction"}
    ]
    assert len(invoke) == 1 and invoke[0]["Properties"]["SourceArn"]["Fn::Sub"].endswith("${HttpApi}/authorizers/*")
    assert "AccessKeysSecret" in resources and "ApiInvokePolicy" not in resources


@pytest.mark.parametrize("shape", ["iam", "iam-all-options"])
def test_iam_mode_uses_aws_iam_on_every_route_and_drops_the_access_keys(shape):
    s = stack(SHAPES[shape])
    resources = s.resources()
    body = resources["HttpApi"]["Properties"]["Body"]
    for key, op in operations(body).items():
        assert op["security"] == ([] if key == SMART_DISCOVERY else [{"AWS_IAM": []}]), key
    assert body["components"]["securitySchemes"] == {
        "AWS_IAM": {"type": "apiKey", "name": "Authorization", "in": "header", "x-amazon-apigateway-authtype": "awsSigv4"}
    }
    for absent in ["AuthorizerFunction", "AuthorizerRole", "AuthorizerLogGroup", "AccessKeysSecret", "AuthorizerInvokePermission"]:
        assert absent not in resources
    policy = resources["ApiInvokePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert [(p["Action"], s.evaluate(p["Resource"])) for p in policy] == [
        ("execute-api:Invoke", "arn:aws:execute-api:us-east-1:111122223333:<HttpApi>/*")
    ]


# --- outputs ---------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
def test_outputs_name_the_endpoint_and_every_resource_a_client_or_operator_needs(shape):
    overrides = SHAPES[shape]
    s = stack(overrides)
    outputs = s.outputs()
    healthlake = overrides.get("AuthMode", "healthlake") == "healthlake"
    expected = {
        "ApiUrl",
        "ControlPlaneEndpoint",
        "TableName",
        "DataBucketName",
        "ProjectionsBucketName",
        "AccessLogsBucketName",
        "KmsKeyArn",
        "StreamFailureQueueUrl",
        "ImportStateMachineArn",
        "ExportStateMachineArn",
    }
    expected |= {"AccessKeysSecretArn"} if healthlake else {"ApiInvokePolicyArn"}
    assert set(outputs) == expected
    api_url = "https://<HttpApi>.execute-api.us-east-1.amazonaws.com"
    assert s.evaluate(outputs["ApiUrl"]["Value"]) == api_url
    assert s.evaluate(outputs["ControlPlaneEndpoint"]["Value"]) == overrides.get("PublicUrl", api_url)
    for output in outputs.values():
        assert "get-secret-value" not in json.dumps(output)


# --- the deploy guide ------------------------------------------------------------------------


def readme_table(heading):
    """First-column names (in backticks) of the table under `### heading` in README.md."""
    text = (ROOT / "README.md").read_text()
    section = text.split(f"### {heading}\n", 1)[1].split("\n#", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return {name for row in rows for name in re.findall(r"`([^`]+)`", row.split("|")[1])}


def test_the_readme_documents_every_parameter_and_variable():
    assert readme_table("Template parameters") == set(source()["Parameters"])
    variables = set(CONTRACT_ENV) | set(WORKFLOW_ENV)
    variables |= {"FHIRLAKE_ACCESS_KEYS_SECRET", "FHIRLAKE_PUBLIC_URL", "FHIRLAKE_OBJECT_PREFIX", "FHIRLAKE_SEARCH_MAX_COUNT",
                  "FHIRLAKE_AUDIT_EVENTS"}
    assert readme_table("Lambda function environment") == variables

"""statemachines/*.asl.json, the bulk import and export workflows, and how infra/template.yaml wires
them: valid Amazon States Language (asl-validator, pinned in tests/tools/asl-validator and installed
by tests/setup), every ${...} substitution bound to the task function of the matching functions/
crate, a Distributed Map reading the plan step's chunk list from S3, every task retried with full
jitter and caught into RecordFailure, and IAM that lets each machine run exactly its own functions
and child executions.
"""

import json
import re
import subprocess
import tomllib

import pytest

from template_model import ROOT, TEMPLATE, Stack, as_list, references, source, translated

VALIDATOR_DIR = ROOT / "tests" / "tools" / "asl-validator"
VALIDATOR = VALIDATOR_DIR / "node_modules" / ".bin" / "asl-validator"
KINDS = ["import", "export"]
STEPS = ["plan", "chunk", "finalize"]
LAMBDA_SERVICE_ERRORS = {"Lambda.ServiceException", "Lambda.AWSLambdaException", "Lambda.SdkClientException", "Lambda.TooManyRequestsException"}


def machines():
    """kind -> (logical id, SAM resource) of the template's state machines."""
    found = {}
    for name, resource in source()["Resources"].items():
        if resource["Type"] == "AWS::Serverless::StateMachine":
            kind = pathlib_name(resource["Properties"]["DefinitionUri"]).removesuffix(".asl.json")
            found[kind] = (name, resource)
    return found


def pathlib_name(uri):
    return uri.rsplit("/", 1)[-1]


def definition_path(resource):
    return (TEMPLATE.parent / resource["Properties"]["DefinitionUri"]).resolve()


def definition(kind):
    return json.loads((ROOT / "statemachines" / f"{kind}.asl.json").read_text())


def all_states(states, inside_map=False):
    """(name, state, inside an ItemProcessor) of every state, nested ones too."""
    for name, state in states.items():
        yield name, state, inside_map
        if state["Type"] == "Map":
            yield from all_states(state["ItemProcessor"]["States"], True)


def tasks(kind):
    return [(name, state, inner) for name, state, inner in all_states(definition(kind)["States"]) if state["Type"] == "Task"]


def placeholder_binary(placeholder):
    """ImportPlanFunctionArn -> import-plan."""
    match = re.fullmatch(r"([A-Z][a-z]+)([A-Z][a-z]+)FunctionArn", placeholder)
    assert match, placeholder
    return f"{match.group(1).lower()}-{match.group(2).lower()}"


# --- the definitions ---------------------------------------------------------------------------


def test_the_validator_is_pinned_exactly():
    package = json.loads((VALIDATOR_DIR / "package.json").read_text())
    assert re.fullmatch(r"\d+\.\d+\.\d+", package["dependencies"]["asl-validator"]), package
    lock = json.loads((VALIDATOR_DIR / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/asl-validator"]["version"] == package["dependencies"]["asl-validator"]


@pytest.mark.parametrize("kind", KINDS)
def test_asl_validator_accepts_the_definition(kind):
    assert VALIDATOR.is_file(), f"{VALIDATOR} is missing: run tests/setup"
    path = ROOT / "statemachines" / f"{kind}.asl.json"
    result = subprocess.run([str(VALIDATOR), "--json-path", str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is valid" in result.stdout


@pytest.mark.parametrize("kind", KINDS)
def test_plan_then_a_distributed_map_over_the_chunk_list_then_finalize(kind):
    asl = definition(kind)
    states = asl["States"]
    assert asl["StartAt"] == "Plan"
    plan = states["Plan"]
    assert plan["Next"] == "AnyChunks"
    # A plan with no chunks writes no chunk list when the job had already ended: skip the Map.
    assert states["AnyChunks"] == {
        "Type": "Choice",
        "Comment": states["AnyChunks"]["Comment"],
        "Choices": [{"Variable": "$.plan.chunks", "NumericGreaterThan": 0, "Next": "Chunks"}],
        "Default": "Finalize",
    }
    # The plan step answers {"chunkList": {"Bucket", "Key"}, "chunks"} (fhirlake_lambda::PlanResult);
    # only its payload is kept, beside the job task.
    assert plan["ResultSelector"] == {"chunkList.$": "$.Payload.chunkList", "chunks.$": "$.Payload.chunks"}
    assert plan["ResultPath"] == "$.plan"

    chunks = states["Chunks"]
    assert chunks["Type"] == "Map"
    assert chunks["ItemProcessor"]["ProcessorConfig"] == {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}
    assert chunks["ItemReader"] == {
        "Resource": "arn:aws:states:::s3:getObject",
        "ReaderConfig": {"InputType": "JSON"},
        "Parameters": {"Bucket.$": "$.plan.chunkList.Bucket", "Key.$": "$.plan.chunkList.Key"},
    }
    # One chunk per child execution: a chunk task is the chunk function's whole event.
    assert "ItemBatcher" not in chunks and "ItemSelector" not in chunks
    assert 1 <= chunks["MaxConcurrency"] <= 100
    assert chunks.get("ToleratedFailurePercentage", 0) == 0
    # The job task stays the state; child outputs are discarded (no 256 KiB result array).
    assert chunks["ResultPath"] is None
    assert [s for s in chunks["ItemProcessor"]["States"].values() if s["Type"] == "Task"][0]["OutputPath"] is None
    assert chunks["Next"] == "Finalize"

    finalize = states["Finalize"]
    assert finalize["End"] is True
    job = {"datastoreId.$": "$.datastoreId", "jobId.$": "$.jobId", "kind.$": "$.kind"}
    assert plan["Parameters"]["Payload"] == job == finalize["Parameters"]["Payload"]


@pytest.mark.parametrize("kind", KINDS)
def test_every_task_invokes_lambda_with_retries_full_jitter_and_a_catch(kind):
    found = tasks(kind)
    assert len(found) == 4  # plan, chunk, finalize, record failure
    for name, task, inside_map in found:
        assert task["Resource"] == "arn:aws:states:::lambda:invoke", name
        assert set(task["Parameters"]) == {"FunctionName", "Payload"} or set(task["Parameters"]) == {"FunctionName", "Payload.$"}, name
        assert task["TimeoutSeconds"] > 900, name  # the functions' own timeout is 900 s
        retriers = task["Retry"]
        for retrier in retriers:
            assert retrier["BackoffRate"] == 2, name
            assert retrier["MaxAttempts"] == 5, name
            assert retrier["IntervalSeconds"] >= 1, name
            assert retrier["MaxDelaySeconds"] >= retrier["IntervalSeconds"], name
            assert retrier["JitterStrategy"] == "FULL", name
        errors = [set(r["ErrorEquals"]) for r in retriers]
        assert LAMBDA_SERVICE_ERRORS <= errors[0], name
        assert errors[-1] == {"States.ALL"}, name  # every step is idempotent: retry whatever failed
        (catch,) = task["Catch"]
        assert catch["ErrorEquals"] == ["States.ALL"], name
        if inside_map:
            # A chunk out of retries fails its child execution, and so the Map, whose Catch records it.
            assert definition(kind)["States"]["Chunks"]["ItemProcessor"]["States"][catch["Next"]]["Type"] == "Fail"
        elif name == "RecordFailure":
            assert catch["Next"] == "JobFailed", name
            assert catch["ResultPath"] != "$.error", name
        else:
            assert (catch["Next"], catch["ResultPath"]) == ("RecordFailure", "$.error"), name
    states = definition(kind)["States"]
    (map_catch,) = states["Chunks"]["Catch"]
    assert (map_catch["ErrorEquals"], map_catch["ResultPath"], map_catch["Next"]) == (["States.ALL"], "$.error", "RecordFailure")
    assert all(r["JitterStrategy"] == "FULL" for r in states["Chunks"]["Retry"])


@pytest.mark.parametrize("kind", KINDS)
def test_a_caught_error_is_recorded_by_the_finalize_function_then_the_execution_fails(kind):
    states = definition(kind)["States"]
    record = states["RecordFailure"]
    finalize_fn = states["Finalize"]["Parameters"]["FunctionName"]
    assert record["Parameters"]["FunctionName"] == finalize_fn
    assert record["Parameters"]["Payload"] == {
        "datastoreId.$": "$.datastoreId",
        "jobId.$": "$.jobId",
        "kind.$": "$.kind",
        "error.$": "$.error",
    }
    assert record["Next"] == "JobFailed"
    failed = states["JobFailed"]
    assert failed["Type"] == "Fail" and failed["Error"] and failed["Cause"]
    # The Fail state names no path: the step's Cause stays in the execution history only.
    assert "CausePath" not in failed and "ErrorPath" not in failed


# --- the template's wiring ---------------------------------------------------------------------


def test_the_template_declares_one_machine_per_definition():
    found = machines()
    assert set(found) == set(KINDS)
    for kind, (name, resource) in found.items():
        assert definition_path(resource) == ROOT / "statemachines" / f"{kind}.asl.json", name
        assert resource["Properties"]["Name"] == {"Fn::Sub": f"${{AWS::StackName}}-{kind}"}, name
        assert resource["Properties"]["Type"] == "STANDARD", name


@pytest.mark.parametrize("kind", KINDS)
def test_every_substitution_is_the_arn_of_the_matching_function_crate(kind):
    template = source()
    name, machine = machines()[kind]
    text = definition_path(machine).read_text()
    used = set(re.findall(r"\$\{([^}]+)\}", text))
    substitutions = machine["Properties"]["DefinitionSubstitutions"]
    assert used == set(substitutions), name
    # Every Task's FunctionName is one of them.
    for task_name, task, _ in tasks(kind):
        (placeholder,) = re.fullmatch(r"\$\{([^}]+)\}", task["Parameters"]["FunctionName"]).groups()
        assert placeholder in substitutions, task_name
    binaries = set()
    for placeholder, value in substitutions.items():
        assert set(value) == {"Fn::GetAtt"}, placeholder
        function_name, attribute = value["Fn::GetAtt"]
        assert attribute == "Arn", placeholder
        function = template["Resources"][function_name]
        assert function["Type"] == "AWS::Serverless::Function", placeholder
        binary = function["Metadata"]["BuildProperties"]["Binary"]
        assert binary == placeholder_binary(placeholder), placeholder
        assert binary.startswith(f"{kind}-"), placeholder
        # The binary is a crate of the workspace, functions/<binary>, building exactly that binary.
        manifest = tomllib.loads((ROOT / "functions" / binary / "Cargo.toml").read_text())
        assert [b["name"] for b in manifest["bin"]] == [binary], binary
        assert f"functions/{binary}" in tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["members"], binary
        binaries.add(binary)
    assert binaries == {f"{kind}-{step}" for step in STEPS}
    # The chunk task invokes the chunk function, plan and finalize theirs.
    states = json.loads(text)["States"]
    chunk_task = next(s for s in states["Chunks"]["ItemProcessor"]["States"].values() if s["Type"] == "Task")
    assert chunk_task["Parameters"]["FunctionName"] == f"${{{kind.capitalize()}ChunkFunctionArn}}"
    assert chunk_task["Parameters"]["Payload.$"] == "$"
    assert states["Plan"]["Parameters"]["FunctionName"] == f"${{{kind.capitalize()}PlanFunctionArn}}"
    assert states["Finalize"]["Parameters"]["FunctionName"] == f"${{{kind.capitalize()}FinalizeFunctionArn}}"


@pytest.mark.parametrize("kind", KINDS)
def test_each_machine_may_invoke_its_functions_read_chunk_lists_and_run_its_child_executions(kind):
    s = Stack(translated(), {})
    resources = s.resources()
    name, _ = machines()[kind]
    machine = resources[name]
    role = resources[machine["Properties"]["RoleArn"]["Fn::GetAtt"][0]]
    statements = [st for policy in role["Properties"]["Policies"] for st in policy["PolicyDocument"]["Statement"]]
    granted = {}
    for statement in statements:
        assert statement["Effect"] == "Allow"
        for action in as_list(statement["Action"]):
            granted.setdefault(action, []).extend(s.evaluate(r) for r in as_list(statement["Resource"]))
    functions = {f"{kind.capitalize()}{step.capitalize()}Function" for step in STEPS}
    assert sorted(granted["lambda:InvokeFunction"]) == sorted(
        f"arn:aws:lambda:us-east-1:111122223333:function:<{f}>*" for f in functions
    )
    assert granted["s3:GetObject"] == ["<DataBucket.Arn>/jobs/*"]
    assert granted["kms:Decrypt"] == ["<DataKey.Arn>"]
    own = f"arn:aws:states:us-east-1:111122223333:stateMachine:fhirlake-test-{kind}"
    assert s.evaluate(machine["Properties"]["StateMachineName"]) == f"fhirlake-test-{kind}"
    assert granted["states:StartExecution"] == [own]
    assert granted["states:DescribeExecution"] == granted["states:StopExecution"] == [
        f"arn:aws:states:us-east-1:111122223333:execution:fhirlake-test-{kind}/*"
    ]
    assert set(granted) == {"lambda:InvokeFunction", "s3:GetObject", "kms:Decrypt", "states:StartExecution", "states:DescribeExecution", "states:StopExecution"}


def test_the_plan_steps_chunk_lists_are_where_the_machines_may_read():
    # JobSteps writes the chunk list at jobs/{datastore}/{job}/chunks.json of the data bucket
    # (FHIRLAKE_OBJECT_PREFIX is not set by the template).
    core = (ROOT / "shared" / "fhirlake-core" / "src" / "jobs" / "mod.rs").read_text()
    assert re.search(r'format!\("jobs/\{\w+\}/\{\w+\}/chunks\.json"\)', core), "the chunk list moved: update the state machines' ReadChunkLists"
    for resource in source()["Resources"].values():
        if resource["Type"] == "AWS::Lambda::Function" or resource["Type"] == "AWS::Serverless::Function":
            assert "FHIRLAKE_OBJECT_PREFIX" not in json.dumps(resource)


@pytest.mark.parametrize("overrides", [{}, {"AuthMode": "iam"}])
def test_the_api_functions_start_both_machines_and_nothing_else_may(overrides):
    s = Stack(translated(), overrides)
    resources = s.resources()
    starters = set()
    for name, role in resources.items():
        if role["Type"] != "AWS::IAM::Role" or name.endswith("StateMachineRole"):
            continue
        for policy in role["Properties"].get("Policies", []):
            for statement in policy["PolicyDocument"]["Statement"]:
                if "states:StartExecution" in as_list(statement["Action"]):
                    starters.add(name)
                    assert statement["Resource"] == [{"Ref": "ImportStateMachine"}, {"Ref": "ExportStateMachine"}], name
    assert starters == {"FhirApiRole", "ControlPlaneRole"}
    for policy in resources.values():
        if policy["Type"] == "AWS::IAM::ManagedPolicy":
            assert "states:" not in json.dumps(policy["Properties"]["PolicyDocument"])


def job_steps_policy(overrides):
    s = Stack(translated(), overrides)
    policy = s.resources()["JobStepsPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    return s, {st["Sid"]: st for st in policy}


def test_job_steps_reach_no_customer_bucket_or_key_unless_listed():
    _, statements = job_steps_policy({})
    assert not {"ListJobBuckets", "ReadWriteJobObjects", "UseJobKeys"} & set(statements)
    for statement in statements.values():
        assert "*" not in json.dumps(statement["Resource"]).replace("/*", "")


def test_listed_job_buckets_and_keys_are_granted_exactly():
    buckets = "arn:aws:s3:::hospital-imports,arn:aws:s3:::hospital-exports"
    key = "arn:aws:kms:us-east-1:111122223333:key/5678abcd-12ab-34cd-56ef-1234567890ab"
    s, statements = job_steps_policy({"JobBucketArns": buckets, "JobKmsKeyArns": key})
    assert s.evaluate(statements["ListJobBuckets"]["Resource"]) == buckets.split(",")
    assert set(as_list(statements["ListJobBuckets"]["Action"])) == {"s3:ListBucket", "s3:GetBucketLocation"}
    assert s.evaluate(statements["ReadWriteJobObjects"]["Resource"]) == [f"{b}/*" for b in buckets.split(",")]
    assert {"s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"} <= set(statements["ReadWriteJobObjects"]["Action"])
    assert s.evaluate(statements["UseJobKeys"]["Resource"]) == [key]
    assert references(statements["UseJobKeys"]["Resource"]) == {"JobKmsKeyArns"}


def test_every_job_step_function_has_its_own_role_with_the_shared_policy():
    resources = Stack(translated(), {}).resources()
    roles = {}
    for name, function in resources.items():
        if function["Type"] != "AWS::Lambda::Function":
            continue
        binary = function["Metadata"]["BuildProperties"]["Binary"]
        if binary.split("-")[0] in KINDS:
            role = function["Properties"]["Role"]["Fn::GetAtt"][0]
            roles[binary] = role
            assert resources[role]["Properties"]["ManagedPolicyArns"] == [{"Ref": "JobStepsPolicy"}], binary
            assert function["Properties"]["Timeout"] == 900, binary
    assert set(roles) == {f"{kind}-{step}" for kind in KINDS for step in STEPS}
    assert len(set(roles.values())) == len(roles)


def test_failed_executions_raise_alarms():
    resources = Stack(translated(), {}).resources()
    watched = {
        a["Properties"]["Dimensions"][0]["Value"]["Ref"]
        for a in resources.values()
        if a["Type"] == "AWS::CloudWatch::Alarm" and a["Properties"].get("MetricName") == "ExecutionsFailed"
    }
    assert watched == {name for name, _ in machines().values()}

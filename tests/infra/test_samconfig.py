"""samconfig.toml: every config env builds infra/template.yaml, deploys the built template, and
overrides only parameters the template declares, with values the template accepts."""

import re
import shlex
import tomllib

import pytest

from template_model import ROOT, TEMPLATE, Stack, source, translated

SAMCONFIG = ROOT / "samconfig.toml"
ENVS = ["default", "dev", "prod"]


def config():
    return tomllib.loads(SAMCONFIG.read_text())


def overrides(env):
    text = config()[env]["deploy"]["parameters"].get("parameter_overrides", "")
    pairs = [token.split("=", 1) for token in shlex.split(text)]
    assert all(len(pair) == 2 for pair in pairs), text
    return dict(pairs)


def violations(name, spec, value):
    """Why CloudFormation would reject `value` for the parameter `spec` (empty: it accepts it)."""
    problems = []
    values = value.split(",") if spec["Type"] == "CommaDelimitedList" else [value]
    for item in values:
        if "AllowedValues" in spec and item not in [str(v) for v in spec["AllowedValues"]]:
            problems.append(f"{name}={item!r} is not one of {spec['AllowedValues']}")
        if "AllowedPattern" in spec and not re.fullmatch(spec["AllowedPattern"], item):
            problems.append(f"{name}={item!r} does not match {spec['AllowedPattern']}")
        if spec["Type"] == "Number":
            try:
                number = float(item)
            except ValueError:
                problems.append(f"{name}={item!r} is not a number")
                continue
            if "MinValue" in spec and number < spec["MinValue"]:
                problems.append(f"{name}={item} is below {spec['MinValue']}")
            if "MaxValue" in spec and number > spec["MaxValue"]:
                problems.append(f"{name}={item} is above {spec['MaxValue']}")
    return problems


def test_parameter_defaults_satisfy_their_own_constraints():
    for name, spec in source()["Parameters"].items():
        assert violations(name, spec, str(spec["Default"])) == [], name


@pytest.mark.parametrize("env", ENVS)
def test_build_reads_the_template_from_the_repository_root(env):
    build = config()[env]["build"]["parameters"]
    assert (ROOT / build["template_file"]).resolve() == TEMPLATE
    assert build["cached"] is True and build["parallel"] is True
    validate = config()[env]["validate"]["parameters"]
    assert (ROOT / validate["template_file"]).resolve() == TEMPLATE


@pytest.mark.parametrize("env", ENVS)
def test_deploy_uses_the_built_template_and_acknowledges_the_iam_roles(env):
    deploy = config()[env]["deploy"]["parameters"]
    # Naming infra/template.yaml here would deploy the unbuilt template (CodeUri ../ = the whole
    # workspace as code); without it sam deploy takes .aws-sam/build/template.yaml.
    assert "template_file" not in deploy and "template" not in deploy
    assert "CAPABILITY_IAM" in deploy["capabilities"].split()
    assert deploy["resolve_s3"] is True
    assert isinstance(deploy["confirm_changeset"], bool)
    assert deploy["stack_name"]


def test_each_env_deploys_its_own_stack_and_prod_asks_before_changing_it():
    names = [config()[env]["deploy"]["parameters"]["stack_name"] for env in ENVS]
    assert len(set(names)) == len(names)
    assert config()["prod"]["deploy"]["parameters"]["confirm_changeset"] is True


@pytest.mark.parametrize("env", ENVS)
def test_parameter_overrides_are_declared_and_accepted_by_the_template(env):
    parameters = source()["Parameters"]
    values = overrides(env)
    assert values, env
    for name, value in values.items():
        assert name in parameters, f"{env}: the template has no parameter {name}"
        assert violations(name, parameters[name], value) == [], env
    # The stack those values describe resolves (every condition evaluates).
    assert "Table" in Stack(translated(), values).resources()


def test_prod_keeps_deletion_protection_and_a_longer_log_retention_than_dev():
    prod, dev = overrides("prod"), overrides("dev")
    assert prod["TableDeletionProtection"] == "true"
    assert int(prod["LogRetentionDays"]) > int(dev["LogRetentionDays"])


def test_no_secret_material_in_samconfig():
    text = SAMCONFIG.read_text()
    assert not re.search(r"(?i)secret_access_key|aws_secret|password", text)
    assert not re.search(r"\b[A-Za-z0-9/+]{40}\b", text)

"""infra/template.yaml as data: the SAM source, its CloudFormation translation, and a small evaluator
of the intrinsic functions and conditions the template uses, so tests can look at the stack that a
given set of parameters would really create.

The translation uses aws-sam-translator, the library behind CloudFormation's
AWS::Serverless-2016-10-31 transform, exactly as `sam deploy` would have it run (after `sam build`
and `sam package` replace each CodeUri and state machine DefinitionUri with an S3 location). It needs no AWS credentials.
"""

from __future__ import annotations

import copy
import functools
import json
import pathlib
import re
from typing import Any

import boto3
from cfnlint.decode import decode
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator
from samtranslator.utils.py27hash_fix import to_py27_compatible_template, undo_mark_unicode_str_in_template

ROOT = pathlib.Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "infra" / "template.yaml"
REGION = "us-east-1"

# The pseudo parameters the evaluator substitutes (a plausible stack in REGION).
PSEUDO = {
    "AWS::AccountId": "111122223333",
    "AWS::Region": REGION,
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::StackName": "fhirlake-test",
    "AWS::StackId": f"arn:aws:cloudformation:{REGION}:111122223333:stack/fhirlake-test/51af3dc0-da77-11e4-872e-1234567db123",
}


class NoValue:
    """Marker for AWS::NoValue while resolving; removed from the containing map or list."""


NO_VALUE = NoValue()


def plain(value: Any) -> Any:
    """cfn-lint's decoded nodes as plain dicts, lists and scalars."""
    return json.loads(json.dumps(value))


@functools.lru_cache(maxsize=None)
def _source() -> dict:
    template, matches = decode(str(TEMPLATE))
    if matches:
        raise AssertionError(f"infra/template.yaml does not parse: {matches}")
    return plain(template)


def source() -> dict:
    """The SAM template as written (a fresh copy)."""
    return copy.deepcopy(_source())


@functools.lru_cache(maxsize=None)
def _translated() -> dict:
    template = source()
    template.get("Globals", {}).get("Function", {}).pop("CodeUri", None)
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = "s3://fhirlake-packages/function.zip"
        if resource["Type"] == "AWS::Serverless::StateMachine":
            name = pathlib.Path(resource["Properties"]["DefinitionUri"]).name
            resource["Properties"]["DefinitionUri"] = f"s3://fhirlake-packages/{name}"
    parameters = {name: spec.get("Default") for name, spec in template.get("Parameters", {}).items()}
    to_py27_compatible_template(template, parameters)
    translator = Translator(None, Parser(), boto_session=boto3.session.Session(region_name=REGION))
    translated = translator.translate(template, parameter_values=parameters, get_managed_policy_map=lambda: {})
    return plain(undo_mark_unicode_str_in_template(translated))


def translated() -> dict:
    """The CloudFormation template the SAM transform makes of it (a fresh copy). Conditions are
    kept: the transform resolves none of them."""
    return copy.deepcopy(_translated())


def parameter_values(template: dict, overrides: dict[str, str] | None = None) -> dict[str, Any]:
    """Every parameter's value: its default unless overridden; CommaDelimitedLists as lists."""
    values: dict[str, Any] = {}
    for name, spec in template.get("Parameters", {}).items():
        raw = (overrides or {}).get(name, spec.get("Default"))
        if raw is None:
            raise AssertionError(f"parameter {name} has no default and no value")
        values[name] = str(raw).split(",") if spec["Type"] == "CommaDelimitedList" else str(raw)
    unknown = set(overrides or {}) - set(values)
    if unknown:
        raise AssertionError(f"no such parameters: {sorted(unknown)}")
    return values


class Stack:
    """A template with parameter values: conditions evaluated, intrinsics resolvable."""

    def __init__(self, template: dict, overrides: dict[str, str] | None = None):
        self.template = template
        self.parameters = parameter_values(template, overrides)
        self.conditions: dict[str, bool] = {}
        for name in template.get("Conditions", {}):
            self.condition(name)

    def condition(self, name: str) -> bool:
        if name not in self.conditions:
            self.conditions[name] = bool(self.evaluate(self.template["Conditions"][name]))
        return self.conditions[name]

    def resources(self) -> dict[str, dict]:
        """The resources this stack creates (those whose condition holds), with every Fn::If
        resolved and AWS::NoValue removed. Refs and GetAtts stay as written."""
        return {
            name: self.resolve(resource)
            for name, resource in self.template["Resources"].items()
            if "Condition" not in resource or self.condition(resource["Condition"])
        }

    def outputs(self) -> dict[str, dict]:
        return {
            name: self.resolve(output)
            for name, output in self.template.get("Outputs", {}).items()
            if "Condition" not in output or self.condition(output["Condition"])
        }

    def resolve(self, node: Any) -> Any:
        """`node` with Fn::If chosen by the conditions and AWS::NoValue dropped."""
        resolved = self._resolve(node)
        return None if resolved is NO_VALUE else resolved

    def _resolve(self, node: Any) -> Any:
        if isinstance(node, dict):
            if set(node) == {"Fn::If"}:
                name, then, otherwise = node["Fn::If"]
                return self._resolve(then if self.condition(name) else otherwise)
            if node == {"Ref": "AWS::NoValue"}:
                return NO_VALUE
            out = {}
            for key, value in node.items():
                value = self._resolve(value)
                if value is not NO_VALUE:
                    out[key] = value
            return out
        if isinstance(node, list):
            return [v for v in (self._resolve(item) for item in node) if v is not NO_VALUE]
        return node

    def evaluate(self, node: Any) -> Any:
        """The value of an expression: parameters and pseudo parameters substituted, a resource
        Ref as `<Name>`, a GetAtt as `<Name.Attribute>`."""
        if isinstance(node, list):
            return [self.evaluate(item) for item in node]
        if not isinstance(node, dict):
            return node
        if len(node) != 1:
            return {key: self.evaluate(value) for key, value in node.items()}
        ((function, args),) = node.items()
        if function == "Ref":
            return self._ref(args)
        if function == "Condition":
            return self.condition(args)
        if function == "Fn::GetAtt":
            return f"<{args[0]}.{args[1]}>" if isinstance(args, list) else f"<{args}>"
        if function == "Fn::Equals":
            left, right = (self.evaluate(a) for a in args)
            return str(left) == str(right)
        if function == "Fn::Not":
            return not self.evaluate(args[0])
        if function == "Fn::And":
            return all(self.evaluate(a) for a in args)
        if function == "Fn::Or":
            return any(self.evaluate(a) for a in args)
        if function == "Fn::If":
            name, then, otherwise = args
            return self.evaluate(then if self.condition(name) else otherwise)
        if function == "Fn::Join":
            separator, items = args
            return separator.join(str(i) for i in self.evaluate(items))
        if function == "Fn::Split":
            separator, text = args
            return str(self.evaluate(text)).split(separator)
        if function == "Fn::Select":
            index, items = args
            return self.evaluate(items)[int(self.evaluate(index))]
        if function == "Fn::Sub":
            text, variables = (args, {}) if isinstance(args, str) else args
            values = {name: self.evaluate(value) for name, value in variables.items()}
            return re.sub(r"\$\{([^}!]+)\}", lambda m: self._sub_variable(m.group(1), values), text)
        return {function: self.evaluate(args)}

    def _ref(self, name: str) -> Any:
        if name in PSEUDO:
            return PSEUDO[name]
        if name in self.parameters:
            return self.parameters[name]
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.template["Resources"]:
            return f"<{name}>"
        raise AssertionError(f"Ref to unknown {name}")

    def _sub_variable(self, name: str, values: dict[str, Any]) -> str:
        if name in values:
            return str(values[name])
        if "." in name and name.split(".", 1)[0] in self.template["Resources"]:
            return f"<{name}>"
        return str(self._ref(name))


def references(node: Any) -> set[str]:
    """Names of every resource or parameter `node` refers to (Ref, GetAtt, ${...} in Sub)."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                found.add(value)
            elif key == "Fn::GetAtt":
                found.add(value[0] if isinstance(value, list) else value.split(".", 1)[0])
            elif key == "Fn::Sub":
                text = value if isinstance(value, str) else value[0]
                local = set() if isinstance(value, str) else set(value[1])
                found.update(m.split(".", 1)[0] for m in re.findall(r"\$\{([^}!]+)\}", text) if m not in local)
                if not isinstance(value, str):
                    found.update(references(value[1]))
            else:
                found.update(references(value))
    elif isinstance(node, list):
        for item in node:
            found.update(references(item))
    return found


def as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]

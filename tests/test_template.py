"""template.yaml and the state machine's definition: linted, checked for security, and
consistent with the functions and their event models."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from pydantic import BaseModel

from catalogue_purge.detect.policy import load_policy
from catalogue_purge.job.events import FUNCTIONS, ApplyReviews, StartRun
from catalogue_purge.job.local import _function_module
from catalogue_purge.job.stack import Stack, load_template, schedule_parameters

from .conftest import ROOT, SHIPPED_POLICY

CHECKOV = "checkov==3.3.30"
# Where the state machine keeps each step's result, and the model of that result.
RESULTS = {"plan": "PlanRunFunction", "closed": "CloseSweepFunction"}


@pytest.fixture(scope="module")
def stack() -> Stack:
    return Stack("catalogue-purge", load_template())


def tasks(definition: dict) -> dict[str, tuple[dict, dict | None]]:
    """Every Task state, with the Map state that runs it (if any)."""
    found: dict[str, tuple[dict, dict | None]] = {}
    for name, state in definition["States"].items():
        if state["Type"] == "Task":
            found[name] = (state, None)
        if state["Type"] == "Map":
            for inner_name, inner in state["ItemProcessor"]["States"].items():
                found[inner_name] = (inner, state)
    return found


def test_cfn_lint_passes():
    result = subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), str(ROOT / "template.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_checkov_passes_and_every_exception_says_why(tmp_path):
    uv = os.environ.get("UV")
    command = [uv] if uv else [sys.executable, "-m", "uv"]
    result = subprocess.run(
        [
            *command,
            "tool",
            "run",
            "--from",
            CHECKOV,
            "checkov",
            "--skip-download",
            "--framework",
            "cloudformation",
            "--output",
            "json",
            "-f",
            str(ROOT / "template.yaml"),
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    report = json.loads(result.stdout)
    summary = report["summary"]
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert summary["failed"] == 0, failed
    assert summary["passed"] > 50  # it did look at the template
    for skipped in report["results"]["skipped_checks"]:
        assert len(skipped["check_result"].get("suppress_comment", "")) > 20, skipped["check_id"]


def test_no_policy_allows_every_action_on_every_resource(stack):
    """No Allow of a wildcard action on every resource, in any role, function or state machine
    policy. (A key policy's Resource "*" means the key itself, so key policies are apart.)"""

    def statements(node):
        if isinstance(node, dict):
            if "Effect" in node and "Action" in node:
                yield node
            for key, value in node.items():
                if key != "KeyPolicy":
                    yield from statements(value)
        elif isinstance(node, list):
            for value in node:
                yield from statements(value)

    def listed(value):
        return value if isinstance(value, list) else [value]

    found = list(statements(stack.resources))
    assert len(found) > 20
    for statement in found:
        if statement["Effect"] != "Allow" or "*" not in listed(statement.get("Resource", [])):
            continue
        assert not any("*" in action for action in listed(statement["Action"])), statement


def test_every_function_has_its_handler_and_sample_event(stack):
    functions = stack.of_type("AWS::Serverless::Function")
    assert set(functions) == set(FUNCTIONS)
    for function in functions:
        module, _, attribute = stack.handler(function).rpartition(".")
        assert callable(getattr(_function_module(module), attribute)), function
        model, _, sample = FUNCTIONS[function]
        event = json.loads((ROOT / "events" / f"{sample}.json").read_text())
        if function == "ManifestAccessFunction":
            event = event["queryStringParameters"]
        model.model_validate(event)


def test_every_state_names_a_function_of_the_template(stack):
    definition = stack.definition()
    functions = set(stack.of_type("AWS::Serverless::Function"))
    named = {state["Resource"] for state, _ in tasks(definition).values()}
    assert named <= functions
    # Every function but the auditors' and the reviews' applier (on its own schedule) is a
    # step of the run.
    assert named == functions - {"ManifestAccessFunction", "ApplyReviewsFunction"}
    for name, state in definition["States"].items():
        for target in [state.get("Next"), state.get("Default")] + [
            c["Next"] for c in state.get("Choices", [])
        ]:
            assert target is None or target in definition["States"], (name, target)


def _fields(model: type[BaseModel], path: list[str]) -> None:
    """The JSONPath's steps exist in the model (and its nested models)."""
    for step in path:
        assert step in model.model_fields, f"{model.__name__} has no field {step}"
        annotation = model.model_fields[step].annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
        else:
            return


def _check_payload(template: dict, model: type[BaseModel]) -> None:
    keys = {k.removesuffix(".$") for k in template}
    assert keys <= set(model.model_fields), (model.__name__, keys - set(model.model_fields))
    required = {n for n, f in model.model_fields.items() if f.is_required()}
    assert required <= keys, (model.__name__, required - keys)
    for key, value in template.items():
        if not key.endswith(".$") or not value.startswith("$."):
            continue
        root, *rest = value.removeprefix("$.").split(".")
        if root in RESULTS:
            result_model = FUNCTIONS[RESULTS[root]][1]
            assert result_model is not None
            _fields(result_model, rest)


def test_payloads_and_results_match_the_event_models(stack):
    definition = stack.definition()
    for name, (state, in_map) in tasks(definition).items():
        event_model = FUNCTIONS[state["Resource"]][0]
        if in_map is not None:
            _check_payload(in_map["ItemSelector"], event_model)
        elif "Parameters" in state:
            _check_payload(state["Parameters"], event_model)
        else:
            assert name == definition["StartAt"] and event_model is StartRun
    # Every path into a step's result names a field of that step's result model.
    text = json.dumps(definition)
    for root, function in RESULTS.items():
        result_model = FUNCTIONS[function][1]
        assert result_model is not None
        for path in re.findall(rf'"\$\.{root}\.([\w.]+)"', text):
            _fields(result_model, path.split("."))


def test_schedules_start_runs_at_the_policys_milestones(stack):
    policy = load_policy(SHIPPED_POLICY)
    milestones = policy.document.milestones
    params = stack.parameters
    # The template's defaults are the shipped policy's, as `policy parameters` prints them.
    derived = schedule_parameters(policy)
    assert {k: params[k] for k in derived} == derived
    assert derived["ResweepStart"] == "2021-10-14T16:00:00Z"  # midnight in Shanghai
    zone = ZoneInfo(milestones.time_zone)

    stack.physical["DataBucket"] = "catalogue-purge-data-123456789012"
    at = {
        "DelistingCutoffSchedule": datetime.fromisoformat(params["DelistingFrom"]),
        "PenaltiesCutoffSchedule": datetime.fromisoformat(params["PenaltiesFrom"]),
        "ResweepSchedule": datetime(2021, 10, 15, 3, 0),  # its first: 03:00 on the penalty date
    }
    samples = {
        "DelistingCutoffSchedule": "schedule-delisting-cutoff",
        "PenaltiesCutoffSchedule": "schedule-penalties-cutoff",
        "ResweepSchedule": "schedule-resweep",
    }
    assert set(stack.of_type("AWS::Scheduler::Schedule")) == {*samples, "ReviewApplySchedule"}
    for schedule, sample in samples.items():
        props = stack.properties(schedule)
        assert stack.resolve(props["ScheduleExpressionTimezone"]) == milestones.time_zone
        fired = at[schedule].replace(tzinfo=zone).astimezone(ZoneInfo("UTC"))
        rendered = stack.resolve(props["Target"]["Input"]).replace(
            "<aws.scheduler.scheduled-time>", fired.strftime("%Y-%m-%dT%H:%M:%SZ")
        )
        event = json.loads(rendered)
        assert event == json.loads((ROOT / "events" / f"{sample}.json").read_text()), schedule
        start = StartRun.model_validate(event)
        assert policy.delisting_active(start.as_of)
    # The reviews' applier: its schedule sends an ApplyReviews event of the policy (a sample).
    props = stack.properties("ReviewApplySchedule")
    assert props["Target"]["Arn"] == {"Fn::GetAtt": ["ApplyReviewsFunction", "Arn"]}
    rendered = stack.resolve(props["Target"]["Input"]).replace(
        "<aws.scheduler.scheduled-time>", "2021-10-20T02:00:00Z"
    )
    applier = json.loads(rendered)
    assert applier == json.loads((ROOT / "events" / "apply-reviews.json").read_text())
    assert ApplyReviews.model_validate(applier).policy_id == policy.id
    # A schedule delivered twice names the same run.
    first = StartRun.model_validate_json((ROOT / "events" / "plan-run.json").read_text())
    assert first.resolved_run_id() == "purge-20211007T160000Z"


def test_a_deployed_stacks_names_come_from_cloudformation(aws):
    """`run --stack` and `reinstate --stack` find the resources through CloudFormation
    (here moto's, with the buckets and tables of the template, less what refers to its keys)."""
    import boto3

    def strip(properties: dict) -> dict:
        refers = ("BucketEncryption", "SSESpecification", "LoggingConfiguration")
        return {k: v for k, v in properties.items() if k not in refers}

    from catalogue_purge.job.local import deployed_stack

    template = load_template()
    plain = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Parameters": template["Parameters"],
        "Resources": {
            k: v | {"Properties": strip(v["Properties"])}
            for k, v in template["Resources"].items()
            if v["Type"] in ("AWS::S3::Bucket", "AWS::DynamoDB::Table")
        },
    }
    boto3.client("cloudformation").create_stack(
        StackName="deployed", TemplateBody=json.dumps(plain)
    )
    stack = deployed_stack("deployed")
    assert stack.physical["DataBucket"] == "deployed-data-123456789012"
    assert stack.physical["SellerLedgerTable"] == "deployed-seller-ledger"
    stack.physical["SigningKey"] = "a-key-id"  # keys are not in this stack
    environment = stack.environment()
    assert environment["SIGNING_KEY_ID"] == "a-key-id"
    assert environment["LEDGER_TABLE"] == "deployed-seller-ledger"
    assert environment["MANIFESTS_BUCKET"] == "deployed-manifests-123456789012"
    assert environment["AUDITOR_ROLE_NAME"] == "deployed-auditor"


def test_manifests_are_written_once(stack):
    """The manifests bucket denies an unconditional PutObject: only If-None-Match: * writes."""
    statements = stack.properties("ManifestsBucketPolicy")["PolicyDocument"]["Statement"]
    (write_once,) = [s for s in statements if s.get("Sid") == "WriteOnce"]
    assert write_once["Effect"] == "Deny" and write_once["Action"] == "s3:PutObject"
    assert write_once["Condition"] == {"Null": {"s3:if-none-match": "true"}}


def test_services_use_the_keys_for_this_account_only(stack):
    """A key policy statement for a service principal is bound to this account's resources
    (aws:SourceAccount and aws:SourceArn, or the log groups' encryption context), so that another account's
    alarm, topic or log group cannot have the service use the key for it."""
    checked = 0
    for key in stack.of_type("AWS::KMS::Key"):
        for statement in stack.properties(key)["KeyPolicy"]["Statement"]:
            if "Service" not in statement["Principal"]:
                continue
            checked += 1
            condition = json.dumps(statement.get("Condition", {}))
            bound_to_source = "aws:SourceAccount" in condition and "aws:SourceArn" in condition
            bound_to_log_groups = (
                "kms:EncryptionContext:aws:logs:arn" in condition and "AWS::AccountId" in condition
            )
            assert bound_to_source or bound_to_log_groups, statement["Sid"]
    assert checked >= 3

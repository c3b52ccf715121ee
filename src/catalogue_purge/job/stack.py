"""template.yaml as the one source of truth for the stack's resources, read by the local run.

The local runner creates, on moto's server, the keys, buckets, tables and event buses the template
declares, with the template's names and settings, and gives each function the environment
the template gives it. What it leaves out, and why:
- bucket policies: they deny requests without TLS, and moto's server speaks plain HTTP;
- access logging, alarms, schedules, queues and roles: nothing in a local run reads them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from catalogue_purge import aws
from catalogue_purge.detect.policy import Policy
from catalogue_purge.errors import PurgeError

ACCOUNT = "123456789012"  # moto's account
_SUB = re.compile(r"\$\{([^}!]+)\}")


def _source_root() -> Path:
    return Path(__file__).resolve().parents[3]


def deployment_file(name: str) -> Path:
    """template.yaml, statemachine/ or functions/: inside the installed package (as _name) or
    at the top of the source tree."""
    packaged = Path(__file__).resolve().parents[1] / f"_{name}"
    return packaged if packaged.exists() else _source_root() / name


class _Loader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags, read into their long forms."""


def _tag(name: str) -> Any:
    def construct(loader: _Loader, node: yaml.Node) -> dict:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
            if name == "Fn::GetAtt":
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
        return {name: value}

    return construct


for _short in (
    "Base64",
    "Cidr",
    "Equals",
    "FindInMap",
    "GetAtt",
    "GetAZs",
    "If",
    "ImportValue",
    "Join",
    "Not",
    "Or",
    "And",
    "Select",
    "Split",
    "Sub",
    "Condition",
):
    _Loader.add_constructor(
        f"!{_short}", _tag("Condition" if _short == "Condition" else f"Fn::{_short}")
    )
_Loader.add_constructor("!Ref", _tag("Ref"))


def load_template(path: Path | None = None) -> dict:
    path = path or deployment_file("template.yaml")
    with path.open(encoding="utf-8") as handle:
        return dict(yaml.load(handle, Loader=_Loader))  # noqa: S506 (a SafeLoader subclass)


@dataclass
class Stack:
    """The stack's names and identifiers, resolved the way CloudFormation would."""

    name: str
    template: dict
    region: str = "us-east-1"
    parameters: dict[str, str] = field(default_factory=dict)
    physical: dict[str, str] = field(default_factory=dict)  # logical id -> Ref value
    arns: dict[str, str] = field(default_factory=dict)  # logical id -> Arn attribute

    def __post_init__(self) -> None:
        declared = self.template.get("Parameters", {})
        unknown = sorted(set(self.parameters) - set(declared))
        if unknown:
            raise PurgeError(f"template.yaml declares no parameter {', '.join(unknown)}")
        self.parameters = {
            k: str(v.get("Default", "")) for k, v in declared.items()
        } | self.parameters

    @property
    def resources(self) -> dict[str, dict]:
        return dict(self.template["Resources"])

    def of_type(self, kind: str) -> list[str]:
        return [k for k, v in self.resources.items() if v["Type"] == kind]

    def properties(self, logical_id: str) -> dict:
        return dict(self.resources[logical_id].get("Properties", {}))

    def _pseudo(self, name: str) -> str:
        pseudo = {
            "AWS::StackName": self.name,
            "AWS::AccountId": ACCOUNT,
            "AWS::Region": self.region,
            "AWS::Partition": "aws",
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        if name in self.physical:
            return self.physical[name]
        named = self._declared_name(name)
        if named is not None:
            return named
        if name.endswith(".Arn") and name.removesuffix(".Arn") in self.arns:
            return self.arns[name.removesuffix(".Arn")]
        raise PurgeError(f"template.yaml: {name} cannot be resolved locally")

    def _declared_name(self, logical_id: str) -> str | None:
        """A resource's name as the template sets it (before it exists)."""
        props = self.resources.get(logical_id, {}).get("Properties", {})
        for key in ("BucketName", "TableName", "RoleName", "Name"):
            if key in props:
                return str(self.resolve(props[key]))
        return None

    def resolve(self, value: Any) -> Any:
        """Ref, Fn::GetAtt (Arn) and Fn::Sub, over what has been created so far."""
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if set(value) == {"Ref"}:
            return self._pseudo(value["Ref"])
        if set(value) == {"Fn::GetAtt"}:
            return self._pseudo(".".join(value["Fn::GetAtt"]))
        if set(value) == {"Fn::Sub"}:
            return _SUB.sub(lambda m: self._pseudo(m.group(1)), value["Fn::Sub"])
        return {k: self.resolve(v) for k, v in value.items()}

    def environment(self) -> dict[str, str]:
        """Every function's environment variables (Globals and its own), resolved."""
        variables = dict(
            self.template.get("Globals", {})
            .get("Function", {})
            .get("Environment", {})
            .get("Variables", {})
        )
        for logical_id in self.of_type("AWS::Serverless::Function"):
            variables |= self.properties(logical_id).get("Environment", {}).get("Variables", {})
        return {k: str(self.resolve(v)) for k, v in variables.items()}

    def handler(self, logical_id: str) -> str:
        """functions.x.handler of a function (the image's command)."""
        return str(self.properties(logical_id)["ImageConfig"]["Command"][0])

    def definition(self, logical_id: str = "PurgeRunStateMachine") -> dict:
        """The state machine's definition with its substitutions made. A function's ARN is
        replaced by its logical id, which the local runner maps to its handler."""
        props = self.properties(logical_id)
        folder, _, name = str(props["DefinitionUri"]).partition("/")
        text = (deployment_file(folder) / name).read_text(encoding="utf-8")
        for key, value in props.get("DefinitionSubstitutions", {}).items():
            if isinstance(value, dict) and "Fn::GetAtt" in value:
                replacement = value["Fn::GetAtt"][0]
            else:
                replacement = str(self.resolve(value))
            text = text.replace("${" + key + "}", replacement)
        left = sorted(set(re.findall(r"\$\{(\w+)\}", text)))
        if left:
            raise PurgeError(f"state machine definition: no substitution for {', '.join(left)}")
        return dict(json.loads(text))


def schedule_parameters(policy: Policy) -> dict[str, str]:
    """The template's parameters that come from a policy: its id and its milestones, as the
    schedules need them (sam deploy --parameter-overrides)."""
    milestones = policy.document.milestones
    zone = ZoneInfo(milestones.time_zone)
    penalties = datetime.combine(milestones.penalties_from, time(0), tzinfo=zone)
    return {
        "PolicyId": policy.id,
        "PolicyTimeZone": milestones.time_zone,
        "DelistingFrom": f"{milestones.delisting_from.isoformat()}T00:00:00",
        "PenaltiesFrom": f"{milestones.penalties_from.isoformat()}T00:00:00",
        "ResweepStart": penalties.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def create_local(stack: Stack) -> None:
    """Create the stack's keys, buckets, tables and event buses (see the module's docstring)
    at the configured endpoint."""
    kms, s3, dynamodb = aws.client("kms"), aws.client("s3"), aws.client("dynamodb")
    for key in stack.of_type("AWS::KMS::Key"):
        props = stack.properties(key)
        options = {k: props[k] for k in ("KeySpec", "KeyUsage", "Description") if k in props}
        meta = kms.create_key(**options)["KeyMetadata"]
        stack.physical[key], stack.arns[key] = meta["KeyId"], meta["Arn"]
    for bucket in stack.of_type("AWS::S3::Bucket"):
        create_bucket(s3, stack, bucket)
    for table in stack.of_type("AWS::DynamoDB::Table"):
        create_table(dynamodb, stack, table)
    for bus in stack.of_type("AWS::Events::EventBus"):
        name = stack.resolve(stack.properties(bus)["Name"])
        arn = aws.client("events").create_event_bus(Name=name)["EventBusArn"]
        stack.physical[bus], stack.arns[bus] = name, arn


def create_bucket(s3: Any, stack: Stack, logical_id: str, name: str | None = None) -> str:
    """One bucket of the template, with its settings (under another name if given)."""
    props = stack.resolve(stack.properties(logical_id))
    name = name or props["BucketName"]
    s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=bool(props.get("ObjectLockEnabled")))
    stack.physical[logical_id], stack.arns[logical_id] = name, f"arn:aws:s3:::{name}"
    if "VersioningConfiguration" in props:
        s3.put_bucket_versioning(
            Bucket=name, VersioningConfiguration=props["VersioningConfiguration"]
        )
    if "ObjectLockConfiguration" in props:
        lock = props["ObjectLockConfiguration"]
        retention = dict(lock["Rule"]["DefaultRetention"])
        retention["Days"] = int(retention["Days"])
        s3.put_object_lock_configuration(
            Bucket=name,
            ObjectLockConfiguration={
                "ObjectLockEnabled": lock["ObjectLockEnabled"],
                "Rule": {"DefaultRetention": retention},
            },
        )
    if "BucketEncryption" in props:
        rules = []
        for rule in props["BucketEncryption"]["ServerSideEncryptionConfiguration"]:
            default = rule["ServerSideEncryptionByDefault"]
            by_default = {"SSEAlgorithm": default["SSEAlgorithm"]}
            if "KMSMasterKeyID" in default:
                by_default["KMSMasterKeyID"] = default["KMSMasterKeyID"]
            rules.append(
                {
                    "ApplyServerSideEncryptionByDefault": by_default,
                    "BucketKeyEnabled": bool(rule.get("BucketKeyEnabled", False)),
                }
            )
        s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": rules})
    if "PublicAccessBlockConfiguration" in props:
        s3.put_public_access_block(
            Bucket=name, PublicAccessBlockConfiguration=props["PublicAccessBlockConfiguration"]
        )
    return str(name)


def create_table(dynamodb: Any, stack: Stack, logical_id: str, name: str | None = None) -> str:
    """One table of the template, with its keys and settings (under another name if given).
    Its encryption is left to moto's default (its key may not exist locally)."""
    declared = stack.properties(logical_id)
    declared.pop("SSESpecification", None)
    props = stack.resolve(declared)
    name = name or props["TableName"]
    indexes = props.get("GlobalSecondaryIndexes")
    dynamodb.create_table(
        TableName=name,
        KeySchema=props["KeySchema"],
        AttributeDefinitions=props["AttributeDefinitions"],
        BillingMode=props["BillingMode"],
        **({"GlobalSecondaryIndexes": indexes} if indexes else {}),
    )
    dynamodb.get_waiter("table_exists").wait(TableName=name)
    ttl = props.get("TimeToLiveSpecification")
    if ttl:
        dynamodb.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
        )
    described = dynamodb.describe_table(TableName=name)["Table"]
    stack.physical[logical_id], stack.arns[logical_id] = name, described["TableArn"]
    return str(name)


def create_listings_table(client: Any, table: str) -> None:
    """The listings table as template.yaml declares it, under another name (tests, tools)."""
    create_table(client, Stack("local", load_template()), "ListingsTable", name=table)


def create_manifests_bucket(
    s3: Any, bucket: str, kms_key_id: str, retention_days: int, tls_only: bool = True
) -> None:
    """The manifests bucket as template.yaml declares it (versioned, Object Lock in compliance
    mode, encrypted with KMS, public access blocked), under another name: for the tests and
    tools. moto's server speaks plain HTTP and enforces bucket policies, so they pass
    tls_only=False; deployments get the bucket and its TLS-only policy from the template."""
    stack = Stack(
        "local", load_template(), parameters={"ManifestRetentionDays": str(retention_days)}
    )
    stack.physical["DataKey"] = stack.arns["DataKey"] = kms_key_id
    create_bucket(s3, stack, "ManifestsBucket", name=bucket)
    if tls_only:
        s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(tls_only_policy(bucket)))


def tls_only_policy(bucket: str) -> dict:
    """Deny every request to the bucket that does not come over TLS."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "TlsOnly",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ],
    }

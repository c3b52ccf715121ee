"""ManifestAccess Lambda, behind a Function URL with IAM auth: lists runs and hands out
download links that expire within 15 minutes, only to the auditor role.

IAM on the Function URL already admits only the auditor role (template.yaml); the handler checks
the caller's role again, so that a mistake in one place does not open the manifests.
"""

from __future__ import annotations

import json
import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from catalogue_purge import aws
from catalogue_purge.job.events import ManifestAccessRequest
from catalogue_purge.record.audit import list_runs, presigned_links

logger = Logger()
tracer = Tracer()
metrics = Metrics(namespace="CataloguePurge")


def _response(status: int, body: Any) -> dict:
    return {
        "statusCode": status,
        "headers": {"content-type": "application/json"},
        "body": json.dumps(body),
    }


def _caller_is_auditor(event: dict) -> bool:
    caller = event.get("requestContext", {}).get("authorizer", {}).get("iam", {}).get("userArn", "")
    role = os.environ["AUDITOR_ROLE_NAME"]
    # An assumed role's caller ARN: arn:aws:sts::<account>:assumed-role/<role name>/<session>
    return caller.split(":")[-1].startswith(f"assumed-role/{role}/")


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict:
    if not _caller_is_auditor(event):
        metrics.add_metric(name="AccessRefused", unit=MetricUnit.Count, value=1)
        logger.warning("refused a caller that is not the auditor role")
        return _response(403, {"error": "only the auditor role may read manifests"})
    request = ManifestAccessRequest.model_validate(event.get("queryStringParameters") or {})
    bucket = os.environ["MANIFESTS_BUCKET"]
    runs = list_runs(f"s3://{bucket}", request.policy_id)
    if request.run_id is None:
        return _response(200, {"runs": runs})
    run = next((r for r in runs if r["run_id"] == request.run_id), None)
    if run is None:
        return _response(404, {"error": f"no complete run {request.run_id}"})
    links = presigned_links(aws.client("s3"), bucket, run)
    metrics.add_metric(name="LinksIssued", unit=MetricUnit.Count, value=len(links))
    logger.info("download links issued", extra={"run_id": request.run_id, "links": len(links)})
    return _response(200, {"run": run, "links": links})

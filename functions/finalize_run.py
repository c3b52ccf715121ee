"""FinalizeRun Lambda: the run's findings and outcomes into its signed, chained manifest."""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from catalogue_purge import aws
from catalogue_purge.events import FinalizeRun
from catalogue_purge.manifest import KmsSigner, finalize_run
from catalogue_purge.policy import shipped_policies

logger = Logger()
tracer = Tracer()
metrics = Metrics(namespace="CataloguePurge")


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict:
    request = FinalizeRun.model_validate(event)
    manifest = finalize_run(
        request.sweep_uri,
        runs_uri=request.runs_uri,
        run_id=request.run_id,
        manifests_root=f"s3://{os.environ['MANIFESTS_BUCKET']}",
        signer=KmsSigner(aws.client("kms"), os.environ["SIGNING_KEY_ID"]),
        policies_dir=shipped_policies(),
        kind=request.kind,
    )
    metrics.add_metric(name="ManifestParts", unit=MetricUnit.Count, value=len(manifest["parts"]))
    logger.info("manifest written", extra={"run_id": request.run_id, "counts": manifest["counts"]})
    return {"run_id": request.run_id, "counts": manifest["counts"], "parts": len(manifest["parts"])}

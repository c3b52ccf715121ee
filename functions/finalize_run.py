"""FinalizeRun Lambda: the run's findings and outcomes into its signed, chained manifest."""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from catalogue_purge import aws
from catalogue_purge.detect.policy import shipped_policies
from catalogue_purge.job.events import FinalizeRun
from catalogue_purge.job.pipeline import finalize
from catalogue_purge.record.manifest import KmsSigner

logger = Logger()
tracer = Tracer()
metrics = Metrics(namespace="CataloguePurge")


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=FinalizeRun)
def handler(event: FinalizeRun, context: LambdaContext) -> dict:
    done = finalize(
        event,
        f"s3://{os.environ['MANIFESTS_BUCKET']}",
        KmsSigner(aws.client("kms"), os.environ["SIGNING_KEY_ID"]),
        shipped_policies(),
    )
    metrics.add_metric(name="ManifestParts", unit=MetricUnit.Count, value=done.parts)
    logger.info("manifest written", extra=done.model_dump())
    return done.model_dump()

"""PlanRun Lambda: the state machine's first step. Opens the run, checks the snapshot and the
policy, decides what to sweep (all, or what changed since the last complete run), lists the
shards for Map(sweep)."""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from catalogue_purge.detect.policy import shipped_policies
from catalogue_purge.job.events import StartRun
from catalogue_purge.job.pipeline import plan_run

logger = Logger()
tracer = Tracer()
metrics = Metrics(namespace="CataloguePurge")


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=StartRun)
def handler(event: StartRun, context: LambdaContext) -> dict:
    manifests = os.environ.get("MANIFESTS_BUCKET")
    plan = plan_run(
        event,
        shipped_policies(),
        os.environ["DATA_BUCKET"],
        f"s3://{manifests}" if manifests else None,
    )
    metrics.add_metric(name="SnapshotRows", unit=MetricUnit.Count, value=plan.rows)
    metrics.add_metric(name="Shards", unit=MetricUnit.Count, value=plan.shards.count)
    logger.info("run planned", extra=plan.model_dump(mode="json"))
    return plan.model_dump(mode="json")

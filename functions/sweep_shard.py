"""SweepShard Lambda: one Map(sweep) iteration, the findings of one shard of the snapshot."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from catalogue_purge.detect.policy import shipped_policies
from catalogue_purge.job.events import SweepShard
from catalogue_purge.job.pipeline import sweep_shard

logger = Logger()
tracer = Tracer()
metrics = Metrics(namespace="CataloguePurge")


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=SweepShard)
def handler(event: SweepShard, context: LambdaContext) -> dict:
    swept = sweep_shard(event, shipped_policies())
    metrics.add_metric(name="RowsSwept", unit=MetricUnit.Count, value=swept.rows)
    metrics.add_metric(name="Findings", unit=MetricUnit.Count, value=swept.findings)
    logger.info("shard swept", extra=swept.model_dump())
    return swept.model_dump()

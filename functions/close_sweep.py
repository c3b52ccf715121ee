"""CloseSweep Lambda: after Map(sweep), the shards' findings become the run's sweep; the plan
is recorded (or held back by the policy's safety limits) and cut into Map(delist)'s batches."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from catalogue_purge.detect.policy import shipped_policies
from catalogue_purge.job.events import CloseSweep
from catalogue_purge.job.pipeline import close_sweep

logger = Logger()
tracer = Tracer()
metrics = Metrics(namespace="CataloguePurge")


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=CloseSweep)
def handler(event: CloseSweep, context: LambdaContext) -> dict:
    closed = close_sweep(event, shipped_policies())
    metrics.add_metric(name="Planned", unit=MetricUnit.Count, value=closed.planned)
    metrics.add_metric(name="HeldBySafetyLimits", unit=MetricUnit.Count, value=int(closed.held))
    if closed.held:
        logger.warning("run held by the policy's safety limits", extra=closed.model_dump())
    else:
        logger.info("sweep closed", extra=closed.model_dump())
    return closed.model_dump()

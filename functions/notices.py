"""Notices Lambda: one event per seller to the notices bus, with the statement of reasons for
every delisting and penalty of the run; each sent once per run."""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from catalogue_purge import aws
from catalogue_purge.detect.policy import shipped_policies
from catalogue_purge.job.events import SendNotices
from catalogue_purge.job.pipeline import send_notices

logger = Logger()
tracer = Tracer()
metrics = Metrics(namespace="CataloguePurge")


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=SendNotices)
def handler(event: SendNotices, context: LambdaContext) -> dict:
    sent = send_notices(event, shipped_policies(), aws.client("events"), os.environ["NOTICES_BUS"])
    metrics.add_metric(name="NoticesSent", unit=MetricUnit.Count, value=sent.sent)
    logger.info("notices sent", extra=sent.model_dump())
    return sent.model_dump()

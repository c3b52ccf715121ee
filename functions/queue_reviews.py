"""QueueReviews Lambda: a run's review findings into the review queue, for people to decide."""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from catalogue_purge import aws
from catalogue_purge.detect.policy import shipped_policies
from catalogue_purge.enforce.catalogue import DynamoCatalogue
from catalogue_purge.enforce.penalties import Ledger
from catalogue_purge.job.events import QueueReviews
from catalogue_purge.job.reviews import queue_reviews

logger = Logger()
tracer = Tracer()
metrics = Metrics(namespace="CataloguePurge")


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=QueueReviews)
def handler(event: QueueReviews, context: LambdaContext) -> dict:
    dynamodb = aws.client("dynamodb")
    queued = queue_reviews(
        event,
        shipped_policies(),
        queue_table=os.environ["REVIEW_QUEUE_TABLE"],
        client=dynamodb,
        catalogue=DynamoCatalogue(os.environ["LISTINGS_TABLE"], dynamodb),
        ledger=Ledger(os.environ["LEDGER_TABLE"], dynamodb),
    )
    metrics.add_metric(name="ReviewsQueued", unit=MetricUnit.Count, value=queued.queued)
    metrics.add_metric(name="ReviewsWaiting", unit=MetricUnit.Count, value=queued.waiting)
    logger.info("reviews queued", extra=queued.model_dump())
    return queued.model_dump()

"""ApplyReviews Lambda, on a schedule: the decided items of the review queue applied as one
review run, with its own signed manifest. A delivery repeated finds nothing new to apply, or
resumes the batch that stopped."""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from catalogue_purge import aws
from catalogue_purge.detect.policy import shipped_policies
from catalogue_purge.enforce.catalogue import DynamoCatalogue
from catalogue_purge.enforce.penalties import DynamoAccounts, Ledger
from catalogue_purge.job.events import ApplyReviews
from catalogue_purge.job.reviews import apply_reviews
from catalogue_purge.record.manifest import KmsSigner

logger = Logger()
tracer = Tracer()
metrics = Metrics(namespace="CataloguePurge")


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=ApplyReviews)
def handler(event: ApplyReviews, context: LambdaContext) -> dict:
    dynamodb = aws.client("dynamodb")
    applied = apply_reviews(
        event,
        shipped_policies(),
        queue_table=os.environ["REVIEW_QUEUE_TABLE"],
        client=dynamodb,
        catalogue=DynamoCatalogue(os.environ["LISTINGS_TABLE"], dynamodb),
        data_bucket=os.environ["DATA_BUCKET"],
        manifests_bucket=os.environ["MANIFESTS_BUCKET"],
        signer=KmsSigner(aws.client("kms"), os.environ["SIGNING_KEY_ID"]),
        ledger=Ledger(os.environ["LEDGER_TABLE"], dynamodb),
        accounts=DynamoAccounts(os.environ["ACCOUNTS_TABLE"], dynamodb),
        events=aws.client("events"),
        bus=os.environ["NOTICES_BUS"],
    )
    for outcome, count in applied.outcomes.items():
        metrics.add_metric(
            name=f"Review{outcome.title().replace('_', '')}", unit=MetricUnit.Count, value=count
        )
    logger.info("decisions applied", extra=applied.model_dump())
    return applied.model_dump()

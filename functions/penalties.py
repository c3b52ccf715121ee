"""Penalties Lambda: from the policy's penalty date, the run's offences into the seller ledger
and each seller up the penalty ladder, at most once per run."""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from catalogue_purge import aws
from catalogue_purge.detect.policy import shipped_policies
from catalogue_purge.enforce.penalties import DynamoAccounts, Ledger
from catalogue_purge.job.events import ApplyPenalties
from catalogue_purge.job.pipeline import apply_penalties

logger = Logger()
tracer = Tracer()
metrics = Metrics(namespace="CataloguePurge")


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=ApplyPenalties)
def handler(event: ApplyPenalties, context: LambdaContext) -> dict:
    dynamodb = aws.client("dynamodb")
    applied = apply_penalties(
        event,
        shipped_policies(),
        Ledger(os.environ["LEDGER_TABLE"], dynamodb),
        DynamoAccounts(os.environ["ACCOUNTS_TABLE"], dynamodb),
    )
    for status, count in applied.by_status.items():
        metrics.add_metric(name=f"Penalties{status.title()}", unit=MetricUnit.Count, value=count)
    logger.info("penalties", extra=applied.model_dump())
    return applied.model_dump()

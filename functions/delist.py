"""Delist Lambda: one batch of a run's plan applied to the live catalogue.

Parse, call, return. Powertools idempotency, keyed on the run and the batch, answers a batch
event delivered twice with the first result instead of acting again.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from catalogue_purge import aws
from catalogue_purge.detect.policy import shipped_policies
from catalogue_purge.enforce.catalogue import DynamoCatalogue
from catalogue_purge.job.events import DelistBatch, DelistBatchResult
from catalogue_purge.job.pipeline import delist_batch

logger = Logger()
tracer = Tracer()
metrics = Metrics(namespace="CataloguePurge")

IDEMPOTENCY = IdempotencyConfig(event_key_jmespath="[run_id, batch_index, dry_run]")


@cache
def _persistence() -> DynamoDBPersistenceLayer:
    # Built on first use, not at import: the table comes from the environment of the invocation.
    return DynamoDBPersistenceLayer(table_name=os.environ["IDEMPOTENCY_TABLE"])


def _apply(batch: DelistBatch) -> dict:
    catalogue = DynamoCatalogue(batch.table, aws.client("dynamodb"))
    result: DelistBatchResult = delist_batch(batch, catalogue, shipped_policies())
    for outcome, count in result.outcomes.items():
        metrics.add_metric(
            name=f"Outcome{outcome.title().replace('_', '')}", unit=MetricUnit.Count, value=count
        )
    logger.info("delisted a batch", extra=result.model_dump())
    return result.model_dump()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict:
    batch = DelistBatch.model_validate(event)
    # Counted on every delivery; the outcome metrics only when the batch is actually applied,
    # so the two differ by the duplicate deliveries idempotency absorbed.
    metrics.add_metric(name="BatchesReceived", unit=MetricUnit.Count, value=1)
    IDEMPOTENCY.register_lambda_context(context)
    guarded = idempotent_function(
        data_keyword_argument="batch",
        persistence_store=_persistence(),
        config=IDEMPOTENCY,
        output_serializer=None,
    )(_apply_event)
    return guarded(batch=batch.model_dump())


def _apply_event(batch: dict) -> dict:
    return _apply(DelistBatch.model_validate(batch))

"""The one place boto3 clients are made: retry configuration, endpoints from the environment.

Endpoints come from the standard AWS_ENDPOINT_URL settings, so a local run against moto's
server and a deployed run share one code path.
"""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

# botocore retries a little on its own; throttling beyond that is retried by the caller with
# backoff and jitter, where it can be counted and end in a FAILED outcome.
_CONFIG = Config(retries={"mode": "standard", "max_attempts": 2}, max_pool_connections=64)


def client(service: str, **overrides: Any) -> Any:
    session: Any = boto3.session.Session()  # Any: the stubs type client() per service name
    return session.client(service, config=_CONFIG, **overrides)

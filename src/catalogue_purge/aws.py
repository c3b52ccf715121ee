"""The one place boto3 clients are made: retry configuration, endpoints from the environment.

Endpoints come from the standard AWS_ENDPOINT_URL settings, so a local run against moto's
server and a deployed run share one code path.
"""

from __future__ import annotations

import threading
from functools import cache
from typing import Any

import boto3
from botocore.config import Config

from catalogue_purge.errors import PurgeError

# botocore retries a little on its own; throttling beyond that is retried by the caller with
# backoff and jitter, where it can be counted and end in a FAILED outcome.
_CONFIG = Config(retries={"mode": "standard", "max_attempts": 2}, max_pool_connections=64)


# A session costs tens of milliseconds to make and is not safe to share while it makes a
# client: one per process, made on first use (not at import), clients made one at a time.
_making = threading.Lock()


@cache
def _session() -> Any:  # Any: the stubs type client() per service name
    return boto3.session.Session()


def client(service: str, **overrides: Any) -> Any:
    with _making:
        session = _session()
        if not (overrides.get("region_name") or session.region_name):
            raise PurgeError(
                f"no AWS region for {service}: set AWS_REGION (or AWS_DEFAULT_REGION), or use "
                "a profile (AWS_PROFILE) that names one"
            )
        return session.client(service, config=_CONFIG, **overrides)

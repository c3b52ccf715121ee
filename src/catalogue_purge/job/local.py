"""The whole job on one machine, the way the deployed stack runs it.

`run_job` interprets the purge-run state machine's own definition (statemachine.py) and calls
the functions' own handlers (functions/), in-process: shards in a pool of processes (DuckDB
runs a Python matcher one call at a time, so processes are what give parallelism), delist
batches in threads. It works against whatever AWS endpoint boto3 is configured for.

`run_local` first starts nothing but creates, on moto's server on loopback, the resources
template.yaml declares (stack.py), uploads the snapshot and loads the live catalogue, then runs
the job and downloads and verifies the manifest like an auditor would.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.util
import json
import logging
import os
import signal
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from multiprocessing import get_context
from pathlib import Path
from types import ModuleType
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
from rich.progress import Progress

from catalogue_purge import aws
from catalogue_purge.detect.policy import POLICIES_ENV, Policy
from catalogue_purge.detect.snapshot import Snapshot, open_snapshot
from catalogue_purge.detect.sweep import findings_dataset, read_sweep
from catalogue_purge.enforce.catalogue import LiveListing, merge_listings, put_listings
from catalogue_purge.enforce.delist import OUTCOME_SCHEMA
from catalogue_purge.enforce.runstore import RunStore
from catalogue_purge.errors import PurgeError
from catalogue_purge.job.events import StartRun
from catalogue_purge.job.stack import Stack, create_local, deployment_file, load_template
from catalogue_purge.job.statemachine import Runtime, execute
from catalogue_purge.record.audit import download_run, verify_runs
from catalogue_purge.record.manifest import KmsSigner, run_folder
from catalogue_purge.storage import exists

Say = Callable[[str], None]

# Handlers log and emit metrics as they do in Lambda; on a terminal only warnings are shown.
QUIET = {
    "POWERTOOLS_LOG_LEVEL": "WARNING",
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_TRACE_DISABLED": "true",
}
# Functions run in processes rather than threads (CPU-bound, holding the GIL).
IN_PROCESSES = {"SweepShardFunction"}


@dataclass(frozen=True)
class FakeContext:
    """What a handler reads of Lambda's context object."""

    function_name: str
    aws_request_id: str
    memory_limit_in_mb: int = 2048
    invoked_function_arn: str = ""

    def get_remaining_time_in_millis(self) -> int:
        return 900_000


@dataclass(frozen=True)
class LocalRun:
    run_id: str
    output: dict
    findings: pa.Table
    summary: dict
    outcomes: dict[str, int]
    planned: int
    manifest_folder: Path | None
    verified: bool
    seconds: float
    resources: dict[str, str]  # logical id -> name or key id
    dry_run: bool = False
    complete_before: bool = False  # the run was complete before this command: nothing changed

    @property
    def balanced(self) -> bool:
        return sum(self.outcomes.values()) == self.planned


class _OneDynamoDBRequestAtATime:
    """WSGI middleware: moto's server handles DynamoDB's requests one at a time.

    DynamoDB applies each request atomically; moto's server, which answers requests in
    threads, does not. Its TransactWriteItems deep-copies every table it touches, checks the
    conditions and writes without a lock, and on a cancelled transaction restores the copies:
    two concurrent transactions can both pass a condition that only one may pass, a rollback
    undoes another request's write, and a copy taken while another thread writes fails with
    "dictionary changed size during iteration" (a 500). One lock over DynamoDB's requests gives
    the local endpoint the atomicity the deployed one has; S3 and KMS stay concurrent."""

    def __init__(self, app: Callable[..., Any]):
        self.app, self.lock = app, threading.Lock()

    def __call__(self, environ: dict, start_response: Callable[..., Any]) -> Any:
        if not environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
            return self.app(environ, start_response)
        with self.lock:
            return list(self.app(environ, start_response))  # the whole answer, under the lock


def serve_moto() -> tuple[Any, str]:
    """moto's server on 127.0.0.1 (a free port), DynamoDB's requests one at a time: the server
    (stop() it) and its endpoint."""
    # Imported here: moto is a development dependency, never part of a deployed package.
    from moto.server import ThreadedMotoServer  # noqa: PLC0415

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    # werkzeug's server calls its `app` per request; no request has arrived yet.
    wsgi = server._server
    assert wsgi is not None  # start() made it
    wsgi.app = _OneDynamoDBRequestAtATime(wsgi.app)
    host, port = server.get_host_and_port()
    return server, f"http://{host}:{port}"


def start_moto() -> tuple[Any, str]:
    """moto's server (serve_moto), with the environment boto3 and pyarrow read."""
    server, endpoint = serve_moto()
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", "local"),
            "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", "local"),
            "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        }
    )
    return server, endpoint


@cache
def _function_module(module: str) -> ModuleType:
    """functions.x of the source tree (or the installed package), loaded by its file."""
    package, _, name = module.partition(".")
    path = deployment_file(package) / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_catalogue_purge_{package}_{name}", path)
    if spec is None or spec.loader is None:
        raise PurgeError(f"no function module {module} at {path}")
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = loaded
    spec.loader.exec_module(loaded)
    return loaded


@contextmanager
def function_environment(environment: dict[str, str]) -> Iterator[None]:
    """The functions' environment variables, for as long as the block runs."""
    saved = {k: os.environ.get(k) for k in environment}
    os.environ.update(environment)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def die_with_parent(parent: int) -> None:
    """A pool process ends with the run (process `parent`) that started it: killed, the run
    leaves no worker sweeping on (Linux's parent-death signal; elsewhere a thread that watches
    the parent)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        if libc.prctl(1, signal.SIGKILL, 0, 0, 0) == 0:  # PR_SET_PDEATHSIG
            if os.getppid() != parent:  # it died while this process was starting
                os._exit(1)
            return
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def invoke_handler(handler: str, event: dict, environment: dict[str, str] | None = None) -> dict:
    """Call a function's handler as Lambda would. `environment` is for pool processes, which
    belong to one run; in this process, use function_environment around the calls."""
    if environment:
        os.environ.update(environment)
    module, _, attribute = handler.rpartition(".")
    function = getattr(_function_module(module), attribute)
    context = FakeContext(function_name=module.rsplit(".", 1)[-1], aws_request_id=str(uuid.uuid4()))
    return dict(function(event, context))


class Functions:
    """The stack's functions, invoked in-process: the Runtime of the state machine."""

    def __init__(
        self,
        stack: Stack,
        progress: Progress | None,
        workers: int | None = None,
        environment: dict[str, str] | None = None,
    ):
        self.stack = stack
        self.environment = stack.environment() | QUIET | (environment or {})
        self.progress = progress
        self.workers = workers or os.cpu_count() or 1
        self._processes: ProcessPoolExecutor | None = None
        self._scope = ExitStack()

    def __enter__(self) -> Functions:
        self._scope.enter_context(function_environment(self.environment))
        return self

    def __exit__(self, *exc: object) -> None:
        if self._processes is not None:
            self._processes.shutdown(cancel_futures=True)
        self._scope.close()

    def invoke(self, function: str, payload: dict) -> dict:
        return invoke_handler(self.stack.handler(function), payload)

    def _pool(self, function: str, width: int) -> Any:
        if function in IN_PROCESSES:
            if self._processes is None:
                # spawn, not fork: this process runs threads (moto's server among them).
                self._processes = ProcessPoolExecutor(
                    self.workers,
                    mp_context=get_context("spawn"),
                    initializer=die_with_parent,
                    initargs=(os.getpid(),),
                )
            return self._processes
        return ThreadPoolExecutor(max(1, min(width, 8)), thread_name_prefix=function)

    def invoke_many(
        self, function: str, payloads: Sequence[dict], concurrency: int
    ) -> list[dict | BaseException]:
        label, total, weigh = self._measure(function, payloads)
        task = self.progress.add_task(label, total=total) if self.progress else None
        pool = self._pool(function, concurrency)
        handler = self.stack.handler(function)
        processes = isinstance(pool, ProcessPoolExecutor)
        futures: list[Future] = [
            pool.submit(invoke_handler, handler, p, self.environment if processes else None)
            for p in payloads
        ]
        results: list[dict | BaseException] = []
        for future in futures:
            error = future.exception()
            results.append(error if error is not None else future.result())
            if self.progress is not None and task is not None:
                self.progress.advance(task, weigh(payloads[len(results) - 1], results[-1]))
        if isinstance(pool, ThreadPoolExecutor):
            pool.shutdown()
        return results

    @staticmethod
    def _measure(
        function: str, payloads: Sequence[dict]
    ) -> tuple[str, int, Callable[[dict, dict | BaseException], int]]:
        """What a map's bar counts: listings swept, listings delisted (not shards or batches,
        which are few and long), or items."""
        if function == "SweepShardFunction":
            total = sum(p["shard"]["rows"] for p in payloads)
            return "listings swept", total, lambda payload, _: int(payload["shard"]["rows"])
        if function == "DelistFunction" and payloads:
            first = payloads[0]
            store = RunStore(f"{first['runs_uri'].rstrip('/')}/{first['run_id']}", OUTCOME_SCHEMA)
            planned = (store.dry() if first.get("dry_run") else store).read_plan()["intents"]

            def delisted(payload: dict, result: dict | BaseException) -> int:
                start = payload["batch_index"] * payload["batch_size"]
                return max(0, min(payload["batch_size"], planned - start))

            return "listings delisted", planned, delisted
        return function.removesuffix("Function"), len(payloads), lambda *_: 1

    def read_items(self, bucket: str, key: str) -> list:
        body = aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
        return list(json.loads(body))


def run_job(
    stack: Stack,
    start: StartRun,
    progress: Progress | None = None,
    *,
    before_state: Callable[[str, dict], None] | None = None,
    workers: int | None = None,
    environment: dict[str, str] | None = None,
) -> dict:
    """One execution of the purge-run state machine, locally: its final output. `environment`
    adds to the functions' own (the local run points them at its policies folder)."""
    with Functions(stack, progress, workers, environment) as functions:
        runtime = Runtime(
            invoke=functions.invoke,
            invoke_many=functions.invoke_many,
            read_items=functions.read_items,
            before_state=before_state,
        )
        return execute(stack.definition(), start.model_dump(mode="json"), runtime)


def deployed_stack(name: str) -> Stack:
    """A deployed stack's resource names, from CloudFormation."""
    cloudformation = aws.client("cloudformation")
    stack = Stack(name, load_template(), region=cloudformation.meta.region_name)
    paginator = cloudformation.get_paginator("list_stack_resources")
    for page in paginator.paginate(StackName=name):
        for resource in page["StackResourceSummaries"]:
            if resource.get("PhysicalResourceId"):
                stack.physical[resource["LogicalResourceId"]] = resource["PhysicalResourceId"]
    return stack


def snapshot_keys(location: str, snapshot: Snapshot) -> list[str]:
    """Each file's key under the snapshot's prefix: its path relative to the snapshot's folder
    (country=DE/part-0.parquet and part-0.parquet are two files), its name for a file or a
    glob."""
    root = Path(location)
    if root.is_dir():
        return [
            Path(f.path).resolve().relative_to(root.resolve()).as_posix() for f in snapshot.files
        ]
    return [Path(f.path).name for f in snapshot.files]


def _live_listings(snapshot_path: str, listing_ids: list[str]) -> list[LiveListing]:
    table = ds.dataset(snapshot_path, format="parquet").to_table(
        # typed: an empty list (no finding) would be a null array, which Arrow cannot compare
        filter=ds.field("listing_id").isin(pa.array(listing_ids, pa.string()))
    )
    return [LiveListing.from_row(r) for r in table.to_pylist()]


def run_local(
    policy: Policy,
    snapshot_path: str,
    as_of: datetime,
    work: Path,
    say: Say = print,
    *,
    progress: Progress | None = None,
    rows_per_shard: int = 250_000,
    kind: str = "purge",
    scope: str = "auto",
    run_id: str | None = None,
    dry_run: bool = False,
    approve: str | None = None,
    stack: Stack | None = None,
) -> LocalRun:
    """Run the job on the configured endpoint (moto's server) and download and verify the
    manifest into `work`. kind, scope, run_id, dry_run and approve are the run's own
    (StartRun's); a dry run ends after predicting the outcomes, with no manifest.

    Without `stack`, the run creates a stack of its own, used once. With one (the local
    sandbox's, which lasts across commands), the run acts on what earlier runs left: the live
    catalogue keeps their delistings, the ledger their offences, the manifests their chain, and
    the run id is the schedule's (kind and as-of), so the same run given twice acts once."""
    policies = Path(policy.path).resolve().parent
    if policies / f"{policy.id}.yaml" != Path(policy.path).resolve():
        raise PurgeError(
            f"{policy.path}: the functions find a policy by its id, as {policy.id}.yaml"
        )
    lasting = stack is not None
    suffix = uuid.uuid4().hex[:6]  # several local stacks can share one moto server
    if stack is None:
        stack = Stack(
            f"catalogue-purge-{suffix}", load_template(), region=aws.client("s3").meta.region_name
        )
        create_local(stack)
    s3, dynamodb = aws.client("s3"), aws.client("dynamodb")
    data_bucket = stack.physical["DataBucket"]
    table = stack.physical["ListingsTable"]

    local = open_snapshot(snapshot_path)
    prefix = stack.parameters["SnapshotPrefix"]
    if lasting:  # each snapshot under its own prefix: the same one again is the same run
        prefix = f"snapshots/{local.fingerprint()['sha256'][:16]}/"
    for file, key in zip(local.files, snapshot_keys(snapshot_path, local), strict=True):
        s3.upload_file(file.path, data_bucket, f"{prefix}{key}")
    say(
        f"stack {stack.name}: snapshot of {local.rows:,} listings in {len(local.files)} file(s) "
        f"-> s3://{data_bucket}/{prefix}"
    )

    start = StartRun(
        policy_id=policy.id,
        snapshot_uri=f"s3://{data_bucket}/{prefix}",
        as_of=as_of,
        kind=kind,
        scope=scope,
        run_id=run_id
        or (None if lasting else f"local-{as_of:%Y%m%d}-{suffix}{'-dry-run' if dry_run else ''}"),
        dry_run=dry_run,
        approve=approve,
        rows_per_shard=rows_per_shard,
    )

    def before_state(name: str, document: dict) -> None:
        # The local stand-in for the platform's live catalogue holds the listings the run can
        # touch, as they stand in the snapshot: loading all of them into moto would take minutes.
        if name == "DelistBatches":
            findings = findings_dataset(document["plan"]["sweep_uri"])
            caught = findings.to_table(columns=["listing_id"]).column("listing_id").to_pylist()
            listings = _live_listings(snapshot_path, caught)
            if lasting:
                written = merge_listings(dynamodb, table, listings)
                say(
                    f"live catalogue: {written:,} of {len(caught):,} caught listings new or "
                    f"changed in table {table}"
                )
            else:
                put_listings(dynamodb, table, listings)
                say(f"live catalogue: {len(caught):,} listings loaded into table {table}")

    # A lasting stack may hold this very run, complete: the job then answers as it did.
    complete_before = (
        lasting
        and not dry_run
        and exists(
            f"s3://{stack.physical['ManifestsBucket']}/"
            f"{run_folder(policy.id, start.resolved_run_id())}/digest.json"
        )
    )
    started = time.perf_counter()
    output = run_job(
        stack, start, progress, before_state=before_state, environment={POLICIES_ENV: str(policies)}
    )
    seconds = time.perf_counter() - started
    plan = output["plan"]
    findings, record = read_sweep(plan["sweep_uri"])
    store = RunStore(f"{plan['runs_uri']}/{plan['run_id']}", OUTCOME_SCHEMA)
    outcomes_table = (store.dry() if dry_run else store).read_outcomes()
    outcomes = dict(Counter(outcomes_table.column("outcome").to_pylist()))
    folder, verified = None, False
    if "manifest" in output:  # a dry run ends before FinalizeRun
        # FinalizeRun's answer names the run's manifest folder.
        folder = download_run(output["manifest"]["manifest"], work / "manifests")
        # Verified with the stack's own signing key from KMS, never the folder's copy of it.
        trusted = KmsSigner(aws.client("kms"), stack.physical["SigningKey"]).public_key_pem()
        verification = verify_runs([folder], trusted, from_first=False)[0]
        verified = verification.ok
        for problem in verification.problems:
            say(f"  - {problem}")
    return LocalRun(
        run_id=plan["run_id"],
        output=output,
        findings=findings,
        summary=record["summary"],
        outcomes=outcomes,
        planned=output["closed"]["planned"],
        manifest_folder=folder,
        verified=verified,
        dry_run=dry_run,
        complete_before=complete_before,
        seconds=seconds,
        resources=dict(stack.physical),
    )

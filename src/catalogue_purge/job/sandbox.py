"""A local sandbox that lasts across commands: moto's server in a background process, with the
resources template.yaml declares, so that a season of runs can be rehearsed in sequence (the
purge, re-sweeps, an appeal, the auditors' list and download) against one live catalogue,
ledger and chain of manifests.

    catalogue-purge local up      start it (or find it up)
    catalogue-purge local status  is it up, and its resources
    catalogue-purge local down    stop it: its state, held in the server's memory, is gone

Its folder (build/local by default, CATALOGUE_PURGE_SANDBOX or --dir to change) holds
sandbox.json (the endpoint, the server's process id, the stack's names) and the server's log.
Every command given `--stack local` works against it.

One command at a time acts on the sandbox: it holds run.lock while it runs. A command that
finds the lock free knows that no earlier command is still running, so the in-progress
idempotency records it finds were left by one that was killed and can be cleared: a resumed
run goes on at once, rather than waiting out the records' expiry (Lambda's would be the
function's timeout).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from catalogue_purge import aws
from catalogue_purge.errors import PurgeError
from catalogue_purge.job.stack import Stack, create_local, load_template

SANDBOX_ENV = "CATALOGUE_PURGE_SANDBOX"
STACK_NAME = "catalogue-purge-local"
STATE_FILE = "sandbox.json"
LOCAL = "local"  # the --stack name of the sandbox
_STARTUP_SECONDS = 60


def sandbox_dir(folder: Path | None = None) -> Path:
    return folder or Path(os.environ.get(SANDBOX_ENV) or "build/local")


@dataclass(frozen=True)
class Sandbox:
    folder: Path
    endpoint: str
    pid: int
    stack: Stack


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _point_at(endpoint: str) -> None:
    """The environment boto3 and pyarrow read, pointed at the sandbox's server."""
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", "local"),
            "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", "local"),
            "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        }
    )


def _read(folder: Path) -> dict | None:
    try:
        return dict(json.loads((folder / STATE_FILE).read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise PurgeError(
            f"{folder / STATE_FILE} is not the sandbox's record ({exc}): "
            "`catalogue-purge local down` removes it"
        ) from None


def attach(folder: Path | None = None) -> Sandbox:
    """The running sandbox, with boto3 pointed at it; an error naming the fix when it is down."""
    folder = sandbox_dir(folder)
    state = _read(folder)
    if state is None or not _alive(state["pid"]):
        raise PurgeError(
            f"the local sandbox in {folder} is not up: start it with `catalogue-purge local up`"
            + (f" --dir {folder}" if folder != sandbox_dir() else "")
        )
    _point_at(state["endpoint"])
    stack = Stack(
        state["stack"]["name"],
        load_template(),
        region=state["stack"]["region"],
        parameters=state["stack"]["parameters"],
        physical=state["stack"]["physical"],
        arns=state["stack"]["arns"],
    )
    return Sandbox(folder, state["endpoint"], state["pid"], stack)


def up(folder: Path | None = None) -> tuple[Sandbox, bool]:
    """Start the sandbox (its server, then the stack's resources); (sandbox, started): a
    sandbox already up is returned as it is."""
    folder = sandbox_dir(folder)
    state = _read(folder)
    if state is not None and _alive(state["pid"]):
        return attach(folder), False
    folder.mkdir(parents=True, exist_ok=True)
    endpoint_file = folder / "endpoint"
    endpoint_file.unlink(missing_ok=True)
    with (folder / "server.log").open("ab") as log:
        server = subprocess.Popen(  # noqa: S603 - this interpreter, this module
            [sys.executable, "-m", "catalogue_purge.job.sandbox", str(endpoint_file)],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # outlives the command that started it
        )
    deadline = time.monotonic() + _STARTUP_SECONDS
    while not endpoint_file.exists():
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            raise PurgeError(f"moto's server did not start: see {folder / 'server.log'}")
        time.sleep(0.1)
    endpoint = endpoint_file.read_text(encoding="utf-8").strip()
    _point_at(endpoint)
    stack = Stack(STACK_NAME, load_template(), region=aws.client("s3").meta.region_name)
    create_local(stack)
    record = {
        "endpoint": endpoint,
        "pid": server.pid,
        "stack": {
            "name": stack.name,
            "region": stack.region,
            "parameters": stack.parameters,
            "physical": stack.physical,
            "arns": stack.arns,
        },
    }
    (folder / STATE_FILE).write_text(json.dumps(record, indent=2), encoding="utf-8")
    return attach(folder), True


def down(folder: Path | None = None) -> bool:
    """Stop the sandbox's server and forget it; False when it was not up."""
    folder = sandbox_dir(folder)
    state = _read(folder)
    if state is None:
        return False
    pid = state["pid"]
    if _alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while _alive(pid) and time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.05)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    (folder / STATE_FILE).unlink(missing_ok=True)
    (folder / "endpoint").unlink(missing_ok=True)
    return True


@contextlib.contextmanager
def one_command_at_a_time(sandbox: Sandbox) -> Iterator[None]:
    """Hold the sandbox's run.lock, then clear what a killed command left in progress (see
    the module's docstring)."""
    with (sandbox.folder / "run.lock").open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PurgeError(
                f"another command is running against the local sandbox in {sandbox.folder}; "
                "wait for it (one command acts on the sandbox at a time)"
            ) from None
        clear_in_progress(sandbox.stack.physical["IdempotencyTable"])
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def clear_in_progress(table: str) -> int:
    """Delete the idempotency records still INPROGRESS (their command is gone); how many."""
    dynamodb = aws.client("dynamodb")
    cleared = 0
    for page in dynamodb.get_paginator("scan").paginate(
        TableName=table,
        FilterExpression="#s = :p",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":p": {"S": "INPROGRESS"}},
        ConsistentRead=True,
    ):
        for item in page["Items"]:
            dynamodb.delete_item(
                TableName=table,
                Key={"id": item["id"]},
                ConditionExpression="#s = :p",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":p": {"S": "INPROGRESS"}},
            )
            cleared += 1
    return cleared


def _serve(endpoint_file: Path) -> None:
    """The sandbox's server process: moto's server until SIGTERM."""
    from catalogue_purge.job.local import serve_moto  # noqa: PLC0415 - moto, a dev dependency

    server, endpoint = serve_moto()
    stop = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    written = endpoint_file.with_suffix(".tmp")
    written.write_text(endpoint, encoding="utf-8")
    written.replace(endpoint_file)  # whole, or not there
    while not stop:
        time.sleep(0.2)
    server.stop()


if __name__ == "__main__":
    _serve(Path(sys.argv[1]))

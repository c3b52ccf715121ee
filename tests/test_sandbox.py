"""The local sandbox that lasts across commands: a season rehearsed in sequence, a killed run
resumed, and what the sandbox does to stay honest (one command at a time, nothing left in
progress by a dead command, no pool process outliving its run)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from catalogue_purge.errors import PurgeError
from catalogue_purge.job import sandbox as sandboxes

from .conftest import SHIPPED_POLICY, cli

pytestmark = pytest.mark.slow


@pytest.fixture
def sandbox(tmp_path):
    """A sandbox folder for the commands (CATALOGUE_PURGE_SANDBOX), stopped afterwards."""
    env = {sandboxes.SANDBOX_ENV: str(tmp_path / "sandbox")}
    yield env
    cli("local", "down", cwd=tmp_path, env=env)


def season_run(tmp_path, env, snapshot: Path, as_of: str, *extra: str, expect: int = 0):
    return cli(
        "run",
        "--stack",
        "local",
        "--snapshot",
        str(snapshot),
        "--policy",
        str(SHIPPED_POLICY),
        "--as-of",
        as_of,
        "--out",
        str(tmp_path / "out"),
        *extra,
        cwd=tmp_path,
        env=env,
        expect=expect,
    )


def with_a_new_miner(snapshot: Path, to: Path) -> tuple[Path, str]:
    """The snapshot a week later: the same listings and one new, disguised miner."""
    (part,) = sorted(snapshot.glob("*.parquet"))
    table = pq.read_table(part)
    row = table.slice(0, 1).to_pylist()[0] | {
        "listing_id": "L-NEW-1",
        "title": "Antminer S19j Pro 100TH brand new",
        "category_path": "Computer & Office > Servers",
        "updated_at": datetime(2021, 10, 18, tzinfo=UTC),
    }
    to.mkdir()
    pq.write_table(
        pa.concat_tables([table, pa.Table.from_pylist([row], schema=table.schema)]),
        to / "part-0.parquet",
    )
    return to, row["seller_id"]


def test_a_season_rehearsed_in_one_sandbox(tmp_path, sandbox):
    cli("generate", "--out", str(tmp_path / "snap"), "--rows", "2000", cwd=tmp_path)
    done = cli("local", "up", cwd=tmp_path, env=sandbox)
    assert "local sandbox started" in done.stdout
    assert "already up" in cli("local", "up", cwd=tmp_path, env=sandbox).stdout

    purge = season_run(tmp_path, sandbox, tmp_path / "snap", "2021-10-08")
    purge_id = "purge-20211007T160000Z"  # the schedule's id: kind and as-of
    assert f"manifest of run {purge_id}: verified" in purge.stdout
    again = season_run(tmp_path, sandbox, tmp_path / "snap", "2021-10-08")
    assert f"run {purge_id} was complete already: nothing changed" in again.stdout

    later, seller = with_a_new_miner(tmp_path / "snap", tmp_path / "snap-later")
    resweep = season_run(tmp_path, sandbox, later, "2021-10-20", "--kind", "re-sweep")
    resweep_id = "re-sweep-20211019T160000Z"
    # Only what changed since the purge is swept; the purge's delistings stand in the table.
    assert "scope: re-sweep run, changed sweep" in resweep.stdout
    assert "1 of 1 caught listings new or changed" in resweep.stdout
    manifest = json.loads(
        (tmp_path / "out" / "manifests" / resweep_id / "manifest.json").read_text()
    )
    assert manifest["counts"]["by_outcome"] == {"DELISTED": 1}
    assert sum(manifest["counts"]["by_penalty"].values()) == 1

    appeal = cli(
        "reinstate",
        "--stack",
        "local",
        "--run",
        resweep_id,
        "--policy",
        str(SHIPPED_POLICY),
        "--listing",
        "L-NEW-1",
        "--reason",
        "appeal upheld: a heater",
        cwd=tmp_path,
        env=sandbox,
    )
    assert "REINSTATED 1" in appeal.stdout
    assert f"seller {seller}:" in appeal.stdout

    # The purge's sweep, delisted by hand against the sandbox's table: it was complete.
    state = json.loads((Path(sandbox[sandboxes.SANDBOX_ENV]) / "sandbox.json").read_text())
    data = f"s3://{state['stack']['physical']['DataBucket']}"
    by_hand = cli(
        "delist",
        "--findings",
        f"{data}/sweeps/{purge_id}",
        "--runs",
        f"{data}/runs",
        "--stack",
        "local",
        "--run-id",
        purge_id,
        "--policy",
        str(SHIPPED_POLICY),
        cwd=tmp_path,
        env=sandbox,
    )
    assert f"run {purge_id} was complete already: nothing changed" in by_hand.stdout

    # Appeals by seller and by rule, of the purge's delistings.
    delisted = pq.read_table(
        tmp_path / "out" / "manifests" / purge_id / "delisted-00000.parquet"
    ).to_pylist()
    one_seller = delisted[0]["seller_id"]
    of_seller = {d["listing_id"] for d in delisted if d["seller_id"] == one_seller}
    rule = next(r for d in delisted if d["seller_id"] != one_seller for r in d["rule_ids"])
    of_rule = {d["listing_id"] for d in delisted if rule in d["rule_ids"]} - of_seller
    for option, value, expected in (("--seller", one_seller, of_seller), ("--rule", rule, of_rule)):
        appealed = cli(
            "reinstate",
            "--stack",
            "local",
            "--run",
            purge_id,
            "--policy",
            str(SHIPPED_POLICY),
            option,
            value,
            "--reason",
            f"appeal by {option}",
            cwd=tmp_path,
            env=sandbox,
        )
        # Each listing the option selects has one outcome: reinstated, or kept on other
        # grounds (another rule, or a prohibited category, still holds it).
        said = appealed.stdout.split(f"of run {purge_id}: ", 1)[1].splitlines()[0]
        outcomes = {o.rsplit(" ", 1)[0]: int(o.rsplit(" ", 1)[1]) for o in said.split(", ")}
        assert sum(outcomes.values()) == len(expected) > 0, appealed.stdout
        assert set(outcomes) <= {"REINSTATED", "KEPT_OTHER_GROUNDS"}

    listed = cli("audit", "list", "--stack", "local", cwd=tmp_path, env=sandbox).stdout
    assert listed.index(purge_id) < listed.index(resweep_id) < listed.index("reinstate-")
    cli(
        "audit",
        "download",
        resweep_id,
        "--stack",
        "local",
        "--to",
        str(tmp_path / "audit"),
        cwd=tmp_path,
        env=sandbox,
    )
    assert (tmp_path / "audit" / resweep_id / "digest.json").exists()
    # Verified against the sandbox's signing key, read from KMS rather than from the folder.
    checked = cli(
        "audit",
        "verify",
        str(tmp_path / "audit" / resweep_id),
        "--stack",
        "local",
        cwd=tmp_path,
        env=sandbox,
    )
    assert f"verified {resweep_id}" in checked.stdout
    # The key and fingerprint to publish; an auditor without access pins the fingerprint.
    key = cli(
        "audit",
        "key",
        "--stack",
        "local",
        "--out",
        str(tmp_path / "k.pem"),
        cwd=tmp_path,
        env=sandbox,
    )
    fingerprint = key.stdout.split("sha256 ", 1)[1].split()[0]
    assert key.stdout.startswith("-----BEGIN PUBLIC KEY-----") and len(fingerprint) == 64
    assert (tmp_path / "k.pem").read_text().strip() in key.stdout
    pinned = cli(
        "audit",
        "verify",
        str(tmp_path / "audit" / resweep_id),
        "--key-sha256",
        fingerprint,
        cwd=tmp_path,
        env=sandbox,
    )
    assert f"key sha256 {fingerprint[:16]}" in pinned.stdout

    assert "local sandbox up" in cli("local", "status", cwd=tmp_path, env=sandbox).stdout
    assert "stopped" in cli("local", "down", cwd=tmp_path, env=sandbox).stdout
    gone = season_run(tmp_path, sandbox, tmp_path / "snap", "2021-10-08", expect=1)
    assert "is not up: start it with `catalogue-purge local up`" in gone.stderr


def test_a_killed_run_is_resumed_at_once_and_acts_once(tmp_path, sandbox):
    cli(
        "generate", "--out", str(tmp_path / "snap"), "--rows", "20000", "--files", "2", cwd=tmp_path
    )
    cli("local", "up", cwd=tmp_path, env=sandbox)
    command = [
        sys.executable,
        "-m",
        "catalogue_purge.cli",
        "run",
        "--stack",
        "local",
        "--snapshot",
        str(tmp_path / "snap"),
        "--policy",
        str(SHIPPED_POLICY),
        "--as-of",
        "2021-10-08",
        "--out",
        str(tmp_path / "out"),
    ]
    log = tmp_path / "killed.log"
    with log.open("w") as handle:
        killed = subprocess.Popen(
            command, stdout=handle, stderr=subprocess.STDOUT, env={**os.environ, **sandbox}
        )
        # Killed once delisting is about to start (wherever it has got to by then: the
        # resumed run must end the same way from any point).
        deadline = time.monotonic() + 300
        while "live catalogue:" not in log.read_text() and killed.poll() is None:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        killed.send_signal(signal.SIGKILL)
        killed.wait()

    resumed = cli(*command[3:], cwd=tmp_path, env=sandbox)
    assert "verified" in resumed.stdout
    assert "(balanced)" in resumed.stdout
    run_id = "purge-20211007T160000Z"
    manifest = json.loads((tmp_path / "out" / "manifests" / run_id / "manifest.json").read_text())
    delisted = pq.read_table(tmp_path / "out" / "manifests" / run_id / "delisted-00000.parquet")
    ids = delisted.column("listing_id").to_pylist()
    assert len(ids) == len(set(ids)) == manifest["counts"]["by_decision"]["delist"]
    assert set(manifest["counts"]["by_outcome"]) <= {"DELISTED", "ALREADY_INACTIVE"}


def test_one_command_at_a_time_and_nothing_left_in_progress(tmp_path, sandbox):
    folder = Path(sandbox[sandboxes.SANDBOX_ENV])
    cli("local", "up", cwd=tmp_path, env=sandbox)
    current = sandboxes.attach(folder)
    table = current.stack.physical["IdempotencyTable"]
    dynamodb = boto3.client("dynamodb")
    for key, status in (("dead", "INPROGRESS"), ("done", "COMPLETED")):
        dynamodb.put_item(
            TableName=table,
            Item={"id": {"S": key}, "status": {"S": status}, "expiration": {"N": "9999999999"}},
        )
    with sandboxes.one_command_at_a_time(current):
        left = {i["id"]["S"] for i in dynamodb.scan(TableName=table)["Items"]}
        assert left == {"done"}  # the dead command's record is gone, the finished one stays
        with (
            pytest.raises(PurgeError, match="another command is running"),
            sandboxes.one_command_at_a_time(current),
        ):
            pass


def test_pool_processes_end_with_a_killed_run(tmp_path):
    """The run's shard pool, its parent killed mid-shard: no worker goes on."""
    pids = tmp_path / "workers"
    script = f"""
import os, sys, time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from catalogue_purge.job.local import die_with_parent
from tests.test_sandbox import _busy

pool = ProcessPoolExecutor(2, mp_context=get_context("spawn"), initializer=die_with_parent,
                           initargs=(os.getpid(),))
futures = [pool.submit(_busy, {str(pids)!r}) for _ in range(2)]
time.sleep(3600)
"""
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=Path(__file__).parents[1])
    deadline = time.monotonic() + 120
    while len(_worker_pids(pids)) < 2:
        assert time.monotonic() < deadline and parent.poll() is None, "workers never started"
        time.sleep(0.1)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    while any(_alive(pid) for pid in _worker_pids(pids)):
        assert time.monotonic() < deadline, "a worker outlived its run"
        time.sleep(0.1)


def _busy(folder: str) -> None:
    """A shard that never ends, once it has said which process it is."""
    Path(folder).mkdir(exist_ok=True)
    (Path(folder) / str(os.getpid())).write_text("")
    time.sleep(3600)


def _worker_pids(folder: Path) -> set[int]:
    return {int(p.name) for p in folder.iterdir()} if folder.exists() else set()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (dead, not yet reaped by init) counts as gone
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")

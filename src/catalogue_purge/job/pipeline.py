"""The steps of a run, as the state machine runs them (statemachine/purge-run.asl.json):

    PlanRun     open the run: check the snapshot, record run.json, list the shards
    SweepShard  one shard (row groups of one file): its findings under shards/
    CloseSweep  merge the shards' findings into the sweep, record the plan, list the batches
    Delist      one batch of the plan
    FinalizeRun the signed, chained manifest (manifest.finalize_run)

The Lambda functions call these, and so does the local runner, in the same order. Every step
can be delivered twice: it recognises the work it already did and answers as it did then.

A run's working records live in the data bucket:

    sweeps/<run>/run.json          what the run is: policy, as_of, snapshot fingerprint
    sweeps/<run>/shards.json       Map(sweep)'s items
    sweeps/<run>/shards/NNNNN.*    each shard's findings (.parquet), rows set aside
                                   (.quarantined.parquet) and counts (.json)
    sweeps/<run>/findings.parquet  the merged findings, quarantined.parquet (the rows set
                                   aside), then sweep.json (the sweep's record)
    sweeps/<run>/batches.json      Map(delist)'s items
    runs/<run>/...                 the plan and the outcomes (enforce/runstore.py)
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from catalogue_purge.detect.history import (
    hold_reinstated,
    mark_relists,
    past_delisted,
    read_reinstated,
    record_delisted,
    reinstated_listings,
)
from catalogue_purge.detect.matcher import compiled_matcher
from catalogue_purge.detect.policy import Policy, load_policy, load_recorded
from catalogue_purge.detect.snapshot import Snapshot, open_snapshot
from catalogue_purge.detect.sweep import (
    FINDINGS_SCHEMA,
    NO_ID,
    QUARANTINE_FILE,
    QUARANTINE_SCHEMA,
    SWEEP_FILE,
    SweepResult,
    findings_dataset,
    live_recheck,
    merge_quarantine,
    publish_sweep,
    quarantine_counts,
    read_sweep,
    read_sweep_record,
    set_aside_duplicates,
    sweep,
)
from catalogue_purge.enforce.catalogue import Catalogue
from catalogue_purge.enforce.delist import (
    OUTCOME_SCHEMA,
    Plan,
    apply_plan,
    held_back,
    plan_delistings,
)
from catalogue_purge.enforce.notices import NOTICE_SCHEMA, build_notices, publish
from catalogue_purge.enforce.penalties import (
    PENALTY_SCHEMA,
    AccountService,
    Ledger,
    offences_of,
    penalise_recorded,
)
from catalogue_purge.enforce.runstore import RunStore
from catalogue_purge.errors import PlanMismatch, PurgeError
from catalogue_purge.job.events import (
    ApplyPenalties,
    CloseSweep,
    DelistBatch,
    DelistBatchResult,
    FinalizeRun,
    Items,
    NoticesSent,
    PenaltiesApplied,
    RunFinalized,
    RunPlan,
    SendNotices,
    Shard,
    ShardSwept,
    StartRun,
    SweepClosed,
    SweepShard,
)
from catalogue_purge.record.manifest import (
    ManifestExists,
    Signer,
    finalize_run,
    latest_manifest,
    run_folder,
    stream_tables,
)
from catalogue_purge.storage import exists, locate, parquet_bytes, read_bytes, write_bytes

RUN_FILE = "run.json"
SHARDS_FILE = "shards.json"
BATCHES_FILE = "batches.json"

# What makes a run the run it is: a second PlanRun for the same run id must agree on these.
_IDENTITY = ("kind", "as_of", "policy", "snapshot", "columns", "scope_asked", "dry_run")


def sweep_location(bucket: str, run_id: str) -> str:
    return f"s3://{bucket}/sweeps/{run_id}"


def _split(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def _write_json(uri: str, document: object) -> None:
    write_bytes(uri, json.dumps(document, indent=2, ensure_ascii=False, default=str).encode())


def _read_json(uri: str) -> dict:
    return dict(json.loads(read_bytes(uri)))


def plan_shards(
    snapshot: Snapshot, rows_per_shard: int, since: datetime | None = None
) -> list[Shard]:
    """Consecutive row groups of each file, about rows_per_shard rows each (a row group is
    never split; a shard never spans files). With `since`, the row groups whose statistics show
    nothing updated after it are left out."""
    shards: list[Shard] = []

    def close(path: str, first: int, last: int, rows: int) -> None:
        if last > first:
            shards.append(
                Shard(
                    index=len(shards),
                    path=f"s3://{path}",
                    first_row_group=first,
                    last_row_group=last,
                    rows=rows,
                )
            )

    for file in snapshot.files:
        groups = file.row_group_rows
        first, rows = 0, 0
        for index, count in enumerate(groups):
            latest = file.row_group_updated[index]
            unchanged = since is not None and latest is not None and latest <= since
            if unchanged or (rows and rows + count > rows_per_shard):
                close(file.path, first, index, rows)
                first, rows = index, 0
            if unchanged:
                first = index + 1
                continue
            rows += count
        close(file.path, first, len(groups), rows)
    return shards


def watermark(snapshot: Snapshot) -> datetime | None:
    """The snapshot's latest updated_at, from its statistics (None if any file lacks them)."""
    latest = [f.updated_max for f in snapshot.files]
    return None if any(u is None for u in latest) else max(u for u in latest if u is not None)


def _exemptions_in_force(policy: Policy, moment: datetime) -> list[str]:
    return sorted(ex.id for ex in policy.exemptions_on(policy.local_day(moment)))


def sweep_scope(
    request: StartRun,
    policy: Policy,
    snapshot: Snapshot,
    manifests_root: str | None,
    run_id: str,
) -> dict:
    """What the run sweeps: everything, or (a re-sweep) what changed since the watermark of
    the policy's last complete run. An unchanged listing can only be judged differently when
    the rules did: a new policy version, other exemptions, or an exemption that expired (or
    began) in between, so any of these makes the sweep full."""
    mark = watermark(snapshot)
    scope: dict = {"kind": "full", "watermark": mark.isoformat() if mark else None}
    wanted = (
        request.scope
        if request.scope != "auto"
        else ("changed" if request.kind == "re-sweep" else "full")
    )
    if wanted == "full":
        return scope
    previous = (
        latest_manifest(manifests_root, policy.id, excluding=run_id) if manifests_root else None
    )
    if previous is None:
        return scope | {"reason": "changed asked, full swept: no earlier complete run"}
    since = previous.get("sweep", {}).get("watermark")
    why = None
    if since is None:
        why = "the last run recorded no watermark"
    elif (previous["policy"]["sha256"], previous["policy"].get("exemptions_sha256")) != (
        policy.sha256,
        policy.exemptions_sha256,
    ):
        why = f"the policy or its exemptions changed since run {previous['run_id']}"
    elif _exemptions_in_force(policy, datetime.fromisoformat(previous["as_of"])) != (
        _exemptions_in_force(policy, request.as_of)
    ):
        why = f"exemptions began or expired since run {previous['run_id']}"
    if why:
        return scope | {"reason": f"changed asked, full swept: {why}"}
    return scope | {"kind": "changed", "since": since, "previous_run": previous["run_id"]}


def plan_run(
    request: StartRun, policies_dir: Path, bucket: str, manifests_root: str | None = None
) -> RunPlan:
    """PlanRun: check the snapshot and the policy, record the run, list its shards. Asked again
    for the same run, it answers with the plan it recorded, or refuses if the request differs."""
    policy = load_policy(policies_dir / f"{request.policy_id}.yaml")
    run_id = request.resolved_run_id()
    sweep_uri = sweep_location(bucket, run_id)
    snapshot = open_snapshot(request.snapshot_uri, request.columns)
    acting = policy.delisting_active(request.as_of)
    record: dict = {
        "run_id": run_id,
        "kind": request.kind,
        "as_of": request.as_of.isoformat(),
        "policy": {
            "id": policy.id,
            "version": policy.version,
            "sha256": policy.sha256,
            "exemptions_sha256": policy.exemptions_sha256,
        },
        "snapshot": snapshot.fingerprint(),
        "columns": request.columns,
        "scope_asked": request.scope,
        "dry_run": request.dry_run,
        "acting": acting,
    }
    if exists(f"{sweep_uri}/{RUN_FILE}"):
        # Asked again: the recorded run stands (its scope was decided when it was opened).
        recorded = _read_json(f"{sweep_uri}/{RUN_FILE}")
        differ = [k for k in _IDENTITY if recorded.get(k) != record[k]]
        if differ:
            raise PlanMismatch(
                f"run {run_id} was opened with another {', '.join(differ)}; "
                "give this request its own run_id"
            )
        record = recorded
    else:
        scope = sweep_scope(request, policy, snapshot, manifests_root, run_id)
        since = datetime.fromisoformat(scope["since"]) if scope["kind"] == "changed" else None
        shards = plan_shards(snapshot, request.rows_per_shard, since) if acting else []
        scope["row_groups"] = sum(f.row_groups for f in snapshot.files)
        scope["row_groups_swept"] = sum(s.last_row_group - s.first_row_group for s in shards)
        record |= {"scope": scope, "shards": len(shards)}
        _write_json(f"{sweep_uri}/{SHARDS_FILE}", [s.model_dump() for s in shards])
        _write_json(f"{sweep_uri}/{RUN_FILE}", record)  # last: the run is open once it exists
    _, key = _split(f"{sweep_uri}/{SHARDS_FILE}")
    return RunPlan(
        run_id=run_id,
        policy_id=policy.id,
        policy_sha256=policy.sha256,
        kind=request.kind,
        as_of=request.as_of,
        acting=record["acting"],
        rows=snapshot.rows,
        scope=record["scope"],
        sweep_uri=sweep_uri,
        runs_uri=f"s3://{bucket}/runs",
        shards=Items(bucket=bucket, key=key, count=record["shards"]),
        dry_run=request.dry_run,
        approve=request.approve,
        batch_size=request.batch_size,
    )


def sweep_shard(event: SweepShard, policies_dir: Path) -> ShardSwept:
    """SweepShard: one shard's findings, written whole under shards/. A repeated delivery
    sweeps again and writes the same findings."""
    started = time.perf_counter()
    run = _read_json(f"{event.sweep_uri}/{RUN_FILE}")
    policy = load_recorded(policies_dir, run["policy"], exemptions=True)
    shard = event.shard
    whole = open_snapshot(shard.path, run["columns"])
    file = replace(
        whole.files[0], subset=(shard.first_row_group, shard.last_row_group), rows=shard.rows
    )
    since = run["scope"].get("since") if run["scope"]["kind"] == "changed" else None
    result = sweep(
        replace(whole, files=(file,)),
        policy,
        datetime.fromisoformat(run["as_of"]),
        matcher=compiled_matcher(policy),
        threads=1,
        since=datetime.fromisoformat(since) if since else None,
        whole=False,  # duplicate ids are found when the shards are merged
    )
    base = f"{event.sweep_uri}/shards/{shard.index:05d}"
    write_bytes(f"{base}.parquet", parquet_bytes(result.findings))
    write_bytes(f"{base}.{QUARANTINE_FILE}", parquet_bytes(result.quarantine))
    swept = ShardSwept(
        run_id=event.run_id,
        index=shard.index,
        rows=result.rows_scanned,
        candidates=result.candidates,
        findings=result.findings.num_rows,
        seconds=round(time.perf_counter() - started, 3),
        quarantined=result.quarantined,
    )
    _write_json(f"{base}.json", swept.model_dump())  # last: the shard is done once it exists
    return swept


def _merged_quarantine(sweep_uri: str, done: list[ShardSwept]) -> pa.Table:
    """The rows the shards set aside (a shard swept before they were kept has none)."""
    parts = []
    for shard in done:
        uri = f"{sweep_uri}/shards/{shard.index:05d}.{QUARANTINE_FILE}"
        if exists(uri):
            parts.append(pq.read_table(pa.BufferReader(read_bytes(uri)), schema=QUARANTINE_SCHEMA))
    return merge_quarantine(*parts)


def _merged_findings(sweep_uri: str, run: dict) -> tuple[pa.Table, list[ShardSwept]]:
    done = []
    for index in range(run["shards"]):
        uri = f"{sweep_uri}/shards/{index:05d}.json"
        if not exists(uri):
            raise PurgeError(
                f"shard {index} of run {run['run_id']} has not been swept "
                f"({run['shards']} shards): the sweep is incomplete, nothing was planned"
            )
        done.append(ShardSwept.model_validate(_read_json(uri)))
    if not done:
        return FINDINGS_SCHEMA.empty_table(), done
    fs, base = locate(sweep_uri)
    parts = [f"{base}/shards/{s.index:05d}.parquet" for s in done]
    findings = ds.dataset(parts, schema=FINDINGS_SCHEMA, format="parquet", filesystem=fs)
    return findings.to_table().sort_by("listing_id"), done


def close_sweep(event: CloseSweep, policies_dir: Path) -> SweepClosed:
    """CloseSweep: the shards' findings become the sweep; the plan is recorded (unless the
    policy's safety limits hold it back) and cut into batches for Map(delist)."""
    run = _read_json(f"{event.sweep_uri}/{RUN_FILE}")
    policy = load_recorded(policies_dir, run["policy"], exemptions=True)
    if exists(f"{event.sweep_uri}/{SWEEP_FILE}"):
        findings, record = read_sweep(event.sweep_uri)
        rows = record["summary"]["rows_scanned"]
    else:
        findings, shards = _merged_findings(event.sweep_uri, run)
        findings, duplicates, aside = set_aside_duplicates(findings)
        no_id = sum(s.quarantined.get(NO_ID, 0) for s in shards)
        root = _data_root(event.sweep_uri)
        reinstated = read_reinstated(root, policy.id)
        past = past_delisted(root, policy.id, reinstated, excluding_run=event.run_id)
        findings = mark_relists(findings, past)
        findings = hold_reinstated(findings, reinstated_listings(reinstated))
        rows = sum(s.rows for s in shards)
        publish_sweep(
            SweepResult(
                findings=findings,
                policy_id=policy.id,
                policy_version=policy.version,
                policy_sha256=policy.sha256,
                exemptions_sha256=policy.exemptions_sha256,
                as_of=datetime.fromisoformat(run["as_of"]),
                acting=run["acting"],
                snapshot=run["snapshot"],
                rows_scanned=rows,
                candidates=sum(s.candidates for s in shards),
                seconds=sum(s.seconds for s in shards),
                scope=run["scope"],
                quarantined=quarantine_counts(no_id, aside.num_rows),
                duplicate_ids=duplicates,
                quarantine=merge_quarantine(_merged_quarantine(event.sweep_uri, shards), aside),
            ),
            event.sweep_uri,
        )
    plan = plan_delistings(findings, event.run_id, policy.id, policy.sha256)
    bucket, key = _split(f"{event.sweep_uri}/{BATCHES_FILE}")
    closed = {
        "run_id": event.run_id,
        "findings": findings.num_rows,
        "planned": len(plan.intents),
        "plan_sha256": plan.sha256,
    }
    reason = held_back(
        plan,
        approve=event.approve,
        limits=policy.document.safety_limits,
        swept=rows,
        dry_run=event.dry_run,
        then="start the run again with approve={sha}",
    )
    store = RunStore(f"{event.runs_uri.rstrip('/')}/{event.run_id}", OUTCOME_SCHEMA)
    if reason:
        where = store.record_held(plan.sha256, plan.table(), reason, event.dry_run)
        return SweepClosed(
            **closed,
            held=True,
            reason=f"{reason}. The plan is kept for review under {where}",
            batches=Items(bucket=bucket, key=key, count=0),
        )
    (store.dry() if event.dry_run else store).record_plan(
        plan.sha256, plan.table(), dry_run=event.dry_run, row_group_size=event.batch_size
    )
    count = math.ceil(len(plan.intents) / event.batch_size)
    _write_json(f"{event.sweep_uri}/{BATCHES_FILE}", [{"batch_index": i} for i in range(count)])
    return SweepClosed(**closed, held=False, batches=Items(bucket=bucket, key=key, count=count))


def delist_batch(batch: DelistBatch, catalogue: Catalogue, policies_dir: Path) -> DelistBatchResult:
    """The Delist Lambda's work: one batch of a sweep's plan, against the live catalogue.

    When the run's plan is recorded (CloseSweep did, or an earlier batch), the batch reads only
    its own intents and its own outcome parts, so a run of many batches reads its records once
    rather than once per batch. Otherwise it plans from the findings, within the safety limits,
    and records the plan first."""
    record = read_sweep_record(batch.sweep_uri)
    policy = load_recorded(policies_dir, record["policy"])
    run = RunStore(f"{batch.runs_uri.rstrip('/')}/{batch.run_id}", OUTCOME_SCHEMA)
    recorded_in = run.dry() if batch.dry_run else run
    start = batch.batch_index * batch.batch_size
    recheck = live_recheck(policy, compiled_matcher(policy))
    if recorded_in.has_plan():
        whole = recorded_in.read_plan()["sha256"]
        plan = Plan.recorded(
            batch.run_id,
            policy.id,
            policy.sha256,
            recorded_in.read_intents(start, start + batch.batch_size),
            whole,
        )
        result = apply_plan(
            plan,
            catalogue,
            run.for_batch(batch.batch_index),
            recheck,
            dry_run=batch.dry_run,
            approve=batch.approve,
        )
    else:
        findings = findings_dataset(batch.sweep_uri).to_table()
        result = apply_plan(
            plan_delistings(findings, batch.run_id, policy.id, policy.sha256),
            catalogue,
            run.for_batch(batch.batch_index),
            recheck,
            dry_run=batch.dry_run,
            approve=batch.approve,
            limits=policy.document.safety_limits,
            swept=record["summary"]["rows_scanned"],
            batch=(start, start + batch.batch_size),
        )
    return DelistBatchResult(
        run_id=batch.run_id,
        batch_index=batch.batch_index,
        plan_sha256=result.plan_sha256,
        planned=result.planned,
        outcomes=result.outcomes,
        failed=len(result.failed),
        dry_run=result.dry_run,
    )


def finalize(
    event: FinalizeRun, manifests_root: str, signer: Signer, policies_dir: Path
) -> RunFinalized:
    """FinalizeRun: the manifest. Delivered again after it was written, it answers with the
    manifest already there (the same plan), never a second one."""
    record = read_sweep_record(event.sweep_uri)
    folder = f"{manifests_root.rstrip('/')}/{run_folder(record['policy']['id'], event.run_id)}"
    run = RunStore(f"{event.runs_uri.rstrip('/')}/{event.run_id}", OUTCOME_SCHEMA)
    try:
        manifest = finalize_run(
            event.sweep_uri,
            runs_uri=event.runs_uri,
            run_id=event.run_id,
            manifests_root=manifests_root,
            signer=signer,
            policies_dir=policies_dir,
            kind=event.kind,
        )
    except ManifestExists:
        manifest = _read_json(f"{folder}/manifest.json")
        if manifest["plan_sha256"] != run.read_plan()["sha256"] or not exists(
            f"{folder}/digest.json"
        ):
            raise
    # What this run delisted joins the policy's history, for the relists of later runs.
    record_delisted(
        _data_root(event.sweep_uri),
        record["policy"]["id"],
        event.run_id,
        findings_dataset(event.sweep_uri).to_table(columns=["listing_id", "seller_id", "title"]),
        run.read_outcomes(),
    )
    return RunFinalized(
        run_id=event.run_id,
        manifest=folder,
        counts=manifest["counts"],
        parts=len(manifest["parts"]),
    )


def _data_root(sweep_uri: str) -> str:
    """The data bucket a run's sweep lies in (sweep_location)."""
    return f"s3://{_split(sweep_uri)[0]}"


def apply_penalties(
    event: ApplyPenalties,
    policies_dir: Path,
    ledger: Ledger,
    accounts: AccountService,
    concurrency: int = 8,
) -> PenaltiesApplied:
    """Penalties: from the penalty date on, each seller with listings delisted by the run is
    moved up the ladder, at most once per run. Before it, nothing is penalised (and the
    manifest says so). A repeated or resumed step penalises no one twice."""
    run = _read_json(f"{event.sweep_uri}/{RUN_FILE}")
    policy = load_recorded(policies_dir, run["policy"], exemptions=True)
    store = RunStore(f"{event.runs_uri.rstrip('/')}/{event.run_id}/penalties", PENALTY_SCHEMA)
    as_of = datetime.fromisoformat(run["as_of"])
    milestones = policy.document.milestones
    if not policy.penalties_active(as_of):
        why = (
            f"as of {as_of.isoformat()}, before the penalty date {milestones.penalties_from} "
            f"({milestones.time_zone}): delisting only"
        )
        store.write_marker({"applied": False, "reason": why})
        return PenaltiesApplied(
            run_id=event.run_id, applied=False, reason=why, sellers=0, by_status={}
        )
    findings = findings_dataset(event.sweep_uri).to_table(
        columns=["listing_id", "seller_id", "rule_ids", "evasion", "relist"]
    )
    outcomes = RunStore(f"{event.runs_uri.rstrip('/')}/{event.run_id}", OUTCOME_SCHEMA)
    offences = offences_of(
        event.run_id, policy.id, findings.to_pylist(), outcomes.read_outcomes().to_pylist()
    )
    penalised = penalise_recorded(
        offences, policy.document.penalties, ledger, accounts, store=store, concurrency=concurrency
    )
    statuses = penalised.column("status").to_pylist()
    by_status = dict(Counter(statuses))
    why = f"{len(offences)} seller(s) with listings delisted by the run"
    store.write_marker({"applied": True, "reason": why, "sellers": len(offences)})
    return PenaltiesApplied(
        run_id=event.run_id, applied=True, reason=why, sellers=len(offences), by_status=by_status
    )


def send_notices(event: SendNotices, policies_dir: Path, events: Any, bus: str) -> NoticesSent:
    """Notices: each seller's statement of reasons (delistings and penalty), one event per
    seller, each sent once per run (see enforce/notices.py)."""
    run = _read_json(f"{event.sweep_uri}/{RUN_FILE}")
    policy = load_recorded(policies_dir, run["policy"], exemptions=True)
    runs = f"{event.runs_uri.rstrip('/')}/{event.run_id}"
    findings = findings_dataset(event.sweep_uri).to_table()
    outcomes = RunStore(runs, OUTCOME_SCHEMA).read_outcomes()
    # Only the delisted table: the review findings get no notice.
    delisted = stream_tables(findings, outcomes, policy, datetime.fromisoformat(run["as_of"]))
    rows = [row for part in delisted["delisted"] for row in part.to_pylist()]
    penalties = RunStore(f"{runs}/penalties", PENALTY_SCHEMA).read_outcomes()
    notices = build_notices(run, rows, penalties.to_pylist(), event.manifest)
    sent, before = publish(notices, events, bus, RunStore(f"{runs}/notices", NOTICE_SCHEMA))
    return NoticesSent(run_id=event.run_id, sellers=len(notices), sent=sent, already_sent=before)

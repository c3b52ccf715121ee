"""The `catalogue-purge` command line. Domain errors become exit codes here, and only here."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.compute as pc
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from catalogue_purge.detect.policy import Policy, load_policy
from catalogue_purge.errors import PurgeError


def _console(stderr: bool = False) -> Console:
    """rich's layout on a terminal; in a log or a pipe no line is wrapped, so that links, ids
    and hashes stay whole for whoever reads or greps them."""
    terminal = Console(stderr=stderr).is_terminal
    return Console(stderr=stderr, soft_wrap=not terminal, width=None if terminal else 1_000)


console = _console(stderr=True)
out = _console()


def parse_as_of(value: str, policy: Policy) -> datetime:
    """A date means the start of that day in the policy's time zone; a time without a zone is
    read in the policy's time zone too."""
    zone = ZoneInfo(policy.document.milestones.time_zone)
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), time(0), tzinfo=zone)
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise PurgeError(f"--as-of {value!r} is not a date (2021-10-08) or an ISO time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=zone)


def counts(mapping: dict | None) -> str:
    """Counts as people read them: `DELISTED 946, NOT_FOUND 2` (none: `none`)."""
    return ", ".join(f"{k} {v:,}" for k, v in (mapping or {}).items()) or "none"


def emit_json(document: object) -> None:
    """One JSON document on standard output (with --json, nothing else goes there)."""
    sys.stdout.write(json.dumps(document, indent=2, default=str) + "\n")
    sys.stdout.flush()


def positive(value: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number of at least 1")
    return number


def non_negative(value: str) -> int:
    """An argparse type: a whole number of at least 0."""
    try:
        number = int(value)
    except ValueError:
        number = -1
    if number < 0:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number of at least 0")
    return number


def parse_mapping(pairs: Sequence[str]) -> dict[str, str]:
    mapping = {}
    for pair in pairs:
        contract, sep, source = pair.partition("=")
        if not sep or not contract or not source:
            raise PurgeError(
                f"--map {pair!r} must read CONTRACT_COLUMN=EXPORT_COLUMN, e.g. title=item_name"
            )
        mapping[contract.strip()] = source.strip()
    return mapping


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rows"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
        disable=not console.is_terminal,
    )


def cmd_sweep(args: argparse.Namespace) -> int:
    from catalogue_purge.detect.snapshot import open_snapshot
    from catalogue_purge.detect.sweep import sweep, write_findings

    policy = load_policy(args.policy, exemptions=args.exemptions)
    as_of = parse_as_of(args.as_of, policy)
    snapshot = open_snapshot(args.snapshot, columns=parse_mapping(args.map))
    with _progress() as progress:
        task = progress.add_task("sweeping", total=snapshot.rows)
        done_rows = 0

        def file_done(index: int) -> None:
            nonlocal done_rows
            done_rows += snapshot.files[index].rows
            progress.update(task, completed=done_rows)

        result = sweep(
            snapshot,
            policy,
            as_of,
            threads=args.threads,
            progress=lambda n: progress.advance(task, n),
            on_file_done=file_done,
        )
    target = write_findings(result, args.out)
    if args.json:
        emit_json(
            {
                "policy": policy_identity(policy),
                "as_of": as_of.isoformat(),
                "summary": result.summary,
                "seconds": round(result.seconds, 3),
                "findings": str(target),
                "evasions": evasion_rows(result.findings, args.examples),
            }
        )
        return 0
    print_summary(result.summary, policy, as_of)
    out.print(f"the whole job took {result.seconds:.1f}s")
    print_evasions(result.findings, args.examples)
    out.print(f"findings: {target}")
    return 0


def policy_identity(policy: Policy) -> dict:
    return {"id": policy.id, "version": policy.version, "sha256": policy.sha256}


def evasion_rows(findings: pa.Table, limit: int) -> list[dict]:
    """The first evasions with their evidence: what compliance looks at first."""
    columns = ["listing_id", "title", "category_path", "decision", "rule_ids", "matched_terms"]
    return findings.filter(pc.field("evasion")).slice(0, limit).select(columns).to_pylist()


def print_evasions(findings: pa.Table, limit: int) -> None:
    evasions = evasion_rows(findings, limit)
    if not evasions:
        return
    table = Table(title=f"evasions (first {len(evasions)})")
    for column in ("listing", "title", "category", "decision", "rules", "matched"):
        table.add_column(column, overflow="fold")
    for f in evasions:
        table.add_row(
            f["listing_id"],
            f["title"],
            f["category_path"],
            f["decision"],
            ", ".join(f["rule_ids"]),
            ", ".join(f["matched_terms"]),
        )
    out.print(table)


def print_summary(summary: dict, policy: Policy, as_of: datetime) -> None:
    out.print(
        f"policy {policy.id} v{policy.version} (sha256 {policy.sha256[:12]}), "
        f"as of {as_of.isoformat()}"
    )
    if not summary["acting"]:
        ms = policy.document.milestones
        out.print(
            f"[yellow]nothing to act on: the policy delists from {ms.delisting_from} "
            f"({ms.time_zone}); {as_of.date()} is before it.[/yellow]"
        )
        return
    out.print(
        f"swept {summary['rows_scanned']:,} listings; "
        f"{summary['candidates']:,} screened in, {summary['findings']:,} findings, "
        f"{summary['evasions']:,} evasions"
    )
    if summary.get("quarantined"):
        named = summary.get("duplicate_ids") or []
        out.print(
            f"[yellow]set aside, never acted on: {counts(summary['quarantined'])}"
            + (
                f" (duplicate ids: {', '.join(named[:10])}{' ...' if len(named) > 10 else ''})"
                if named
                else ""
            )
            + "[/yellow]"
        )
    table = Table(title="by decision")
    table.add_column("decision")
    table.add_column("findings", justify="right")
    for name, count in summary["by_decision"].items():
        table.add_row(name, f"{count:,}")
    out.print(table)
    for title, key, first in (
        ("by rule", "by_rule", "rule"),
        ("by country of sale", "by_country", "country"),
    ):
        table = Table(title=title)
        table.add_column(first)
        for col in ("delist", "review", "exempted"):
            table.add_column(col, justify="right")
        for name, per in summary[key].items():
            table.add_row(name, *(f"{per[c]:,}" for c in ("delist", "review", "exempted")))
        out.print(table)


def print_failures(failed: Sequence[dict], shown: int = 20) -> None:
    for failure in failed[:shown]:
        out.print(f"[red]FAILED[/red] {failure['listing_id']}: {failure['error']}")
    if len(failed) > shown:
        out.print(f"... and {len(failed) - shown:,} more FAILED (all in the run's outcomes)")


def cmd_delist(args: argparse.Namespace) -> int:
    from catalogue_purge import aws
    from catalogue_purge.detect.matcher import Matcher
    from catalogue_purge.detect.sweep import live_recheck, read_sweep
    from catalogue_purge.enforce.catalogue import DynamoCatalogue
    from catalogue_purge.enforce.delist import OUTCOME_SCHEMA, apply_plan, plan_delistings
    from catalogue_purge.enforce.runstore import RunStore

    # First: a stack (the sandbox's) points AWS at its endpoint before anything is read.
    listings_table = from_stack(args, "table", "ListingsTable")
    try:
        findings, sweep_record = read_sweep(str(args.findings))
    except (OSError, ValueError) as exc:
        raise PurgeError(f"cannot read the sweep in {args.findings}: {exc}") from None
    policy = load_policy(args.policy)
    if policy.sha256 != sweep_record["policy"]["sha256"]:
        raise PurgeError(
            f"{args.policy} (sha256 {policy.sha256[:12]}) is not the policy the findings were "
            f"made with (sha256 {sweep_record['policy']['sha256'][:12]}); sweep again or pass "
            "the same policy file"
        )
    plan = plan_delistings(findings, args.run_id, policy.id, policy.sha256)
    runs = args.runs or f"{args.findings.rstrip('/')}/runs"
    store = RunStore(f"{runs.rstrip('/')}/{args.run_id}", OUTCOME_SCHEMA)
    catalogue = DynamoCatalogue(listings_table, aws.client("dynamodb"))
    catalogue.check()
    (console.print if args.json else out.print)(
        f"plan {plan.sha256}: {len(plan.intents):,} listings to delist, run {args.run_id}"
    )
    report = apply_plan(
        plan,
        catalogue,
        store,
        live_recheck(policy, Matcher(policy)),
        dry_run=args.dry_run,
        concurrency=args.concurrency,
        approve=args.approve,
        limits=policy.document.safety_limits,
        swept=sweep_record["summary"]["rows_scanned"],
    )
    code = 0 if report.balanced and not report.failed else 6
    if args.json:
        emit_json(
            {
                "run_id": report.run_id,
                "plan_sha256": report.plan_sha256,
                "dry_run": report.dry_run,
                "planned": report.planned,
                "outcomes": report.outcomes,
                "balanced": report.balanced,
                "applied": report.applied,
                "concurrency": args.concurrency,
                "failed": report.failed,
                "records": store.location,
            }
        )
        return code
    table = Table(title="outcomes (dry run: nothing was written)" if report.dry_run else "outcomes")
    table.add_column("outcome")
    table.add_column("listings", justify="right")
    for outcome, count in sorted(report.outcomes.items()):
        table.add_row(outcome, f"{count:,}")
    out.print(table)
    print_failures(report.failed)
    balance = "balanced" if report.balanced else "[red]NOT balanced[/red]"
    out.print(
        f"{report.planned:,} planned, {sum(report.outcomes.values()):,} outcomes ({balance}); "
        f"{report.applied:,} applied by {args.concurrency} concurrent writers; records under "
        f"{store.location}"
    )
    if report.failed:
        out.print(
            f"{len(report.failed):,} FAILED: run the same command again (same --run-id) to retry "
            "them; nothing else is done twice"
        )
    elif report.applied == 0 and report.planned:
        out.print(f"run {args.run_id} was complete already: nothing changed")
    return code


UNPINNED = (
    "NOT verified: the signing key is not pinned; a folder's own public-key.pem proves nothing "
    "(whoever edits the folder can sign with a key of their own). Pass --key PEM or "
    "--key-sha256 HEX (the key or fingerprint your organisation published: `audit key`), or "
    "--stack NAME (its signing key, read from KMS)"
)


def pinned_key(args: argparse.Namespace, folders: Sequence[Path] = ()) -> bytes | None:
    """The public key (PEM) verification trusts: --key; the folders' own key if it is the one
    --key-sha256 names; or the --stack's signing key in KMS."""
    from catalogue_purge.record.audit import key_fingerprint

    if args.key:
        return bytes(args.key.read_bytes())
    if args.key_sha256:
        wanted = args.key_sha256.lower().removeprefix("sha256:")
        for folder in folders:
            pem = folder / "public-key.pem"
            if pem.is_file() and key_fingerprint(pem.read_bytes()) == wanted:
                return pem.read_bytes()
        out.print(f"[red]no run folder holds the key with SHA-256 {wanted}[/red]")
        return None
    if getattr(args, "stack", None):
        return stack_signing_key(args.stack)
    return None


def stack_signing_key(name: str) -> bytes:
    """The public key (PEM) of a stack's signing key, from KMS's GetPublicKey."""
    from catalogue_purge import aws
    from catalogue_purge.record.manifest import KmsSigner

    key_id = stack_named(name).physical["SigningKey"]
    return KmsSigner(aws.client("kms"), key_id).public_key_pem()


def chain_head(args: argparse.Namespace, results: Sequence[Any], whole: bool) -> list[str]:
    """Problems with the end of the chain: --expect-head (a sequence or a run id), or with
    --stack the head the manifests bucket holds when the whole chain is verified, as
    CloudTrail's validate-logs checks the end of its chain; a run removed from the end is
    otherwise invisible."""
    from catalogue_purge.record.audit import list_runs

    chained = [r for r in results if r.sequence is not None]
    if not chained:
        return []
    last = max(chained, key=lambda r: r.sequence)
    expected: str | None = args.expect_head
    if expected is None and whole and getattr(args, "stack", None):
        root = f"s3://{stack_named(args.stack).physical['ManifestsBucket']}"
        heads = [r for r in list_runs(root, last.policy_id) if r["sequence"]]
        expected = str(max(r["sequence"] for r in heads)) if heads else None
    if expected is None:
        return []
    if expected.isdigit() and last.sequence == int(expected):
        return []
    if not expected.isdigit() and last.run_id == expected:
        return []
    return [
        f"the chain ends at run {last.run_id} (sequence {last.sequence}), but its head is "
        f"{expected}: runs after it are missing"
    ]


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from catalogue_purge.record.audit import verify_runs

    target = Path(args.folder)
    folders = (
        [target]
        if (target / "digest.json").exists()
        else sorted(p for p in target.iterdir() if p.is_dir())
    )
    if not folders:
        raise PurgeError(f"{target} holds no run folder (a folder with digest.json)")
    pinned = pinned_key(args, folders)
    # A folder of runs is a policy's whole chain; a single run is checked on its own.
    whole = len(folders) > 1 or folders[0] != target
    results = verify_runs(folders, pinned, from_first=whole)
    head = chain_head(args, results, whole)
    code = 0 if all(r.ok for r in results) and not head and pinned is not None else 8
    if args.json:
        emit_json(
            {
                "verified": code == 0,
                "key_pinned": pinned is not None,
                "chain": head,
                "runs": [
                    {
                        "run_id": r.run_id,
                        "sequence": r.sequence,
                        "ok": r.ok,
                        "key_sha256": r.key_fingerprint,
                        "problems": r.problems,
                    }
                    for r in results
                ],
            }
        )
        return code
    for result in results:
        mark = "[green]verified[/green]" if result.ok else "[red]FAILED[/red]"
        out.print(
            f"{mark} {result.run_id} (sequence {result.sequence}, key sha256 "
            f"{(result.key_fingerprint or '')[:16]})"
        )
        for problem in result.problems:
            out.print(f"  - {problem}")
    for problem in head:
        out.print(f"[red]FAILED[/red] {problem}")
    if pinned is None:
        out.print(f"[red]{UNPINNED}[/red]")
    return code


def cmd_audit_dsa(args: argparse.Namespace) -> int:
    """Statements of reasons only from a run that verifies with a trusted key (fail closed)."""
    from catalogue_purge.record.audit import verify_run
    from catalogue_purge.record.dsa import statements, write_batches

    folder = args.folder
    if not (folder / "digest.json").is_file():
        raise PurgeError(f"{folder} is not a run folder (no digest.json): download the run first")
    pinned = pinned_key(args, [folder])
    if pinned is None:
        raise PurgeError(f"{UNPINNED}; nothing was written")
    verification = verify_run(folder, pinned)
    if not verification.ok:
        raise PurgeError(
            f"run {folder.name} does not verify, nothing was written: "
            + "; ".join(verification.problems)
        )
    policy = load_policy(args.policy)
    recorded = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))["policy"]
    if (recorded["id"], recorded["sha256"]) != (policy.id, policy.sha256):
        raise PurgeError(
            f"run {folder.name} applied {recorded['id']} (sha256 {recorded['sha256'][:12]}), not "
            f"{args.policy} ({policy.sha256[:12]}): give the policy file the run applied"
        )
    ladder = [step.model_dump() for step in policy.document.penalties.ladder]
    found, left = statements(folder, ladder)
    batches = write_batches(found, args.to)
    if args.json:
        emit_json(
            {"statements": len(found), "batches": batches, "left_out": left, "to": str(args.to)}
        )
        return 0
    out.print(f"{len(found):,} statement(s) of reasons in {batches:,} batch(es) -> {args.to}")
    for why, count in left.items():
        out.print(f"  left out: {count:,} {why}")
    return 0


def cmd_finalize(args: argparse.Namespace) -> int:
    from catalogue_purge import aws
    from catalogue_purge.detect.policy import shipped_policies
    from catalogue_purge.record.manifest import KmsSigner, finalize_run

    manifests = from_stack(args, "manifests", "ManifestsBucket", prefix="s3://")
    key_id = from_stack(args, "key_id", "SigningKey")
    findings = args.findings.rstrip("/")
    manifest = finalize_run(
        findings,
        runs_uri=args.runs or f"{findings}/runs",
        run_id=args.run_id,
        manifests_root=manifests,
        signer=KmsSigner(aws.client("kms"), key_id),
        policies_dir=args.policies or shipped_policies(),
        allow_failed=args.allow_failed,
    )
    out.print(
        f"manifest of run {args.run_id}: {len(manifest['parts'])} parts, counts "
        f"{counts(manifest['counts']['by_decision'])}, under {manifests}"
    )
    return 0


def _job_progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not console.is_terminal,
    )


def print_job(output: dict) -> None:
    plan, closed = output["plan"], output.get("closed", {})
    batches = closed.get("batches", {}).get("count", 0)
    out.print(
        f"run {plan['run_id']}: {plan['rows']:,} listings in {plan['shards']['count']} shard(s), "
        f"{closed.get('findings', 0):,} findings, {closed.get('planned', 0):,} to delist "
        f"(plan {closed.get('plan_sha256', '-')}) in {batches} batch(es)"
    )
    scope = plan.get("scope", {})
    out.print(
        f"scope: {plan.get('kind', 'purge')} run, {scope.get('kind', 'full')} sweep"
        + (f" ({scope['reason']})" if scope.get("reason") else "")
    )
    if "penalties" in output:
        penalties = output["penalties"]
        statuses = f" ({counts(penalties['by_status'])})" if penalties["by_status"] else ""
        out.print(f"penalties: {penalties['reason']}{statuses}")
    if "notices" in output:
        notices = output["notices"]
        out.print(
            f"notices: {notices['sent']:,} sent, {notices['already_sent']:,} sent before, "
            f"to {notices['sellers']:,} seller(s)"
        )
    if "manifest" in output:
        totals = output["manifest"]["counts"]
        out.print(
            f"manifest: {output['manifest']['manifest']}: {counts(totals['by_decision'])}; "
            f"outcomes {counts(totals['by_outcome'])}"
        )


def stack_named(name: str) -> Any:
    """A stack by name: `local` is the local sandbox (catalogue-purge local up), any other
    name a deployed stack, read from CloudFormation."""
    from catalogue_purge.job.local import deployed_stack
    from catalogue_purge.job.sandbox import LOCAL, attach

    return attach().stack if name == LOCAL else deployed_stack(name)


def cmd_run(args: argparse.Namespace) -> int:
    from catalogue_purge.errors import SafetyLimitExceeded
    from catalogue_purge.job.statemachine import ExecutionFailed

    try:
        return _run(args)
    except ExecutionFailed as exc:
        if exc.error != "SafetyLimitExceeded":
            raise
        # The state machine's own words are for a StartRun event; say them for this command.
        raise SafetyLimitExceeded(
            exc.cause.replace(
                "start the run again with approve=",
                "run again with the same --run-id and --approve ",
            )
        ) from None


def _run(args: argparse.Namespace) -> int:
    from catalogue_purge.job.events import StartRun
    from catalogue_purge.job.local import run_job, run_local, start_moto
    from catalogue_purge.job.sandbox import LOCAL, attach, one_command_at_a_time

    policy = load_policy(args.policy)
    as_of = parse_as_of(args.as_of, policy)
    # The run's own options, the same for a deployed run (StartRun) and a local one.
    options = {
        "kind": args.kind,
        "scope": args.scope,
        "run_id": args.run_id,
        "dry_run": args.dry_run,
        "approve": args.approve,
    }
    if args.local and args.stack:
        raise PurgeError(
            "run takes --local (a stack of its own, used once) or --stack NAME (`local`: the "
            "sandbox that lasts across commands), not both"
        )
    say = console.print if args.json else out.print  # with --json, stdout holds the JSON only
    if not args.local and args.stack != LOCAL:
        if not args.stack or not args.snapshot.startswith("s3://"):
            raise PurgeError(
                "run needs --local (moto's server on loopback, a local snapshot), --stack local "
                "(the local sandbox), or --stack NAME of a deployed stack and an s3:// snapshot"
            )
        start = StartRun(
            policy_id=policy.id,
            snapshot_uri=args.snapshot,
            as_of=as_of,
            **options,
        )
        with _job_progress() as progress:
            output = run_job(stack_named(args.stack), start, progress)
        if args.json:
            emit_json(output)
        else:
            print_job(output)
        return 0
    with ExitStack() as scope:
        stack = None
        if args.stack == LOCAL:  # the sandbox: its stack, one command at a time
            sandbox = attach()
            say(f"local sandbox: moto's server at {sandbox.endpoint} ({sandbox.folder})")
            scope.enter_context(one_command_at_a_time(sandbox))
            stack = sandbox.stack
        else:  # --local: a server and a stack of its own, for this run only
            server, endpoint = start_moto()
            scope.callback(server.stop)
            say(f"local AWS: moto's server at {endpoint}")
        progress = scope.enter_context(_job_progress())
        result = run_local(
            policy,
            args.snapshot,
            as_of,
            args.out,
            say=say,
            progress=progress,
            stack=stack,
            **options,
        )
    return print_local_run(result, policy, as_of, args)


def print_local_run(result: Any, policy: Policy, as_of: datetime, args: argparse.Namespace) -> int:
    examples = args.examples
    code = 0 if result.balanced and (result.dry_run or result.verified) else 8
    if args.json:
        emit_json(
            {
                "run_id": result.run_id,
                "policy": policy_identity(policy),
                "as_of": as_of.isoformat(),
                "dry_run": result.dry_run,
                "complete_before": result.complete_before,
                "job": result.output,
                "summary": result.summary,
                "outcomes": result.outcomes,
                "planned": result.planned,
                "balanced": result.balanced,
                "verified": result.verified,
                "manifest_folder": str(result.manifest_folder) if result.manifest_folder else None,
                "seconds": round(result.seconds, 3),
                "evasions": evasion_rows(result.findings, examples),
            }
        )
        return code
    print_job(result.output)
    print_summary(result.summary, policy, as_of)
    out.print(f"the whole job took {result.seconds:.1f}s")
    balance = "balanced" if result.balanced else "NOT balanced"
    if result.dry_run:
        out.print(
            f"dry run: predicted outcomes {counts(result.outcomes)} ({balance}); nothing was "
            "delisted, "
            "no penalty, notice or manifest"
        )
        print_evasions(result.findings, examples)
        return code
    out.print(f"delisting: {counts(result.outcomes)} ({balance})")
    if result.complete_before:
        out.print(
            f"run {result.run_id} was complete already: nothing changed (the same run again "
            "answers with what it did then)"
        )
    print_evasions(result.findings, examples)
    state = "[green]verified[/green]" if result.verified else "[red]NOT verified[/red]"
    out.print(f"manifest of run {result.run_id}: {state}: {result.manifest_folder}")
    out.print(
        f"report: {result.manifest_folder / 'report.html' if result.manifest_folder else '-'}"
    )
    _print_review_waiting(result.output.get("reviews"), args)
    return code


def _print_review_waiting(reviews: dict | None, args: argparse.Namespace) -> None:
    """How many listings wait for a person, and the command that opens the reviewers' page."""
    if not reviews:
        return
    waiting = reviews["waiting"]
    out.print(f"review queue: {waiting:,} listing(s) wait for a person to decide")
    if not waiting:
        return
    if args.stack:
        out.print(
            f"  open the reviewers' page: catalogue-purge review serve --stack {args.stack} "
            f"--policy {args.policy}"
        )
    else:
        out.print(
            "  this run's stack is gone with it; to review, run it in the lasting sandbox: "
            f"catalogue-purge local up && catalogue-purge run --stack local --snapshot "
            f"{args.snapshot} --policy {args.policy} --as-of {args.as_of} && "
            f"catalogue-purge review serve --stack local --policy {args.policy}"
        )


def cmd_reinstate(args: argparse.Namespace) -> int:
    from catalogue_purge import aws
    from catalogue_purge.enforce.catalogue import DynamoCatalogue
    from catalogue_purge.enforce.penalties import DynamoAccounts, Ledger
    from catalogue_purge.job.reinstate import Selection, reinstate
    from catalogue_purge.record.manifest import KmsSigner

    policy = load_policy(args.policy)
    stack = stack_named(args.stack)
    names = stack.physical
    dynamodb = aws.client("dynamodb")
    data = f"s3://{names['DataBucket']}"
    done = reinstate(
        args.run,
        Selection(tuple(args.listing), tuple(args.seller), tuple(args.rule)),
        args.reason,
        policy=policy,
        sweep_uri=f"{data}/sweeps/{args.run}",
        runs_uri=f"{data}/runs",
        data_root=data,
        manifests_root=f"s3://{names['ManifestsBucket']}",
        catalogue=DynamoCatalogue(names["ListingsTable"], dynamodb),
        ledger=Ledger(names["SellerLedgerTable"], dynamodb),
        accounts=DynamoAccounts(names["SellerAccountsTable"], dynamodb),
        signer=KmsSigner(aws.client("kms"), names["SigningKey"]),
    )
    out.print(f"reinstatement {done.reinstatement_id} of run {args.run}: {counts(done.outcomes)}")
    for penalty in done.penalties:
        out.print(f"  seller {penalty.seller_id}: {penalty.step_before} -> {penalty.step_after}")
    out.print(f"manifest: {done.manifest.get('run_id')} (kind reinstatement, chained)")
    return 0


def from_stack(args: argparse.Namespace, option: str, logical_id: str, prefix: str = "") -> str:
    """An option's value: given, or the --stack's resource; an error naming both otherwise."""
    given = getattr(args, option)
    if given:
        return str(given)
    if args.stack:
        return prefix + str(stack_named(args.stack).physical[logical_id])
    flag = "--" + option.replace("_", "-")
    raise PurgeError(
        f"give {flag}, or --stack NAME (`local`: the sandbox) to take its {logical_id}"
    )


def manifests_root(args: argparse.Namespace) -> str:
    """--root, or the manifests bucket of --stack."""
    if bool(args.root) == bool(args.stack):
        raise PurgeError("give the manifests --root (s3://bucket or a folder), or --stack NAME")
    return str(args.root or f"s3://{stack_named(args.stack).physical['ManifestsBucket']}")


def cmd_audit_list(args: argparse.Namespace) -> int:
    from catalogue_purge.record.audit import list_runs

    args.root = manifests_root(args)
    runs = list_runs(args.root, args.policy)
    broken = [r for r in runs if r["problem"]]
    code = 8 if broken else 0 if runs else 1
    if args.json:
        emit_json(runs)
    if not runs:
        of = f" of policy {args.policy}" if args.policy else ""
        console.print(
            f"[red]error:[/red] no complete run{of} under {args.root} (a manifests root holds "
            "runs/<policy>/<run>/digest.json): check --root or --stack",
            highlight=False,
        )
    if args.json or not runs:
        return code
    table = Table(title=f"runs under {args.root}")
    for column in ("policy", "sequence", "run", "signed at", "location"):
        table.add_column(column)
    for run in runs:
        table.add_row(
            run["policy_id"],
            str(run["sequence"] or "?"),
            run["run_id"],
            run["signed_at"] or "?",
            run["location"],
        )
    out.print(table)
    for run in broken:
        out.print(f"[red]FAILED[/red] {run['location']}: {run['problem']}")
    return code


def cmd_audit_key(args: argparse.Namespace) -> int:
    from catalogue_purge.record.audit import key_fingerprint

    pem = stack_signing_key(args.stack)
    fingerprint = key_fingerprint(pem)
    if args.out:
        args.out.write_bytes(pem)
    if args.json:
        emit_json({"stack": args.stack, "key_sha256": fingerprint, "pem": pem.decode()})
        return 0
    print(pem.decode().strip())
    print(f"sha256 {fingerprint}")
    return 0


def cmd_audit_download(args: argparse.Namespace) -> int:
    from catalogue_purge.record.audit import download_run, list_runs, verify_runs

    args.root = manifests_root(args)
    matches = [r for r in list_runs(args.root) if r["run_id"] == args.run_id]
    if not matches:
        raise PurgeError(f"no complete run {args.run_id} under {args.root}")
    folder = download_run(matches[0]["location"], args.to)
    pinned = pinned_key(args, [folder])
    result = verify_runs([folder], pinned, from_first=False)[0]
    for problem in result.problems:
        out.print(f"  - {problem}")
    if pinned is None:
        out.print(f"downloaded, every part checked: {folder}")
        out.print(f"[red]{UNPINNED}[/red]")
        return 8
    out.print(f"{'verified' if result.ok else 'FAILED'}: {folder}")
    return 0 if result.ok else 8


def cmd_policy_check(args: argparse.Namespace) -> int:
    from catalogue_purge.detect.matcher import Matcher

    policy = load_policy(args.policy)
    matcher = Matcher(policy)
    doc = policy.document
    out.print(f"{args.policy}: valid. id {doc.id}, version {doc.version}, sha256 {policy.sha256}")
    out.print(
        f"{len(doc.rules)} rules, {sum(len(r.all_terms()) for r in doc.rules)} terms, "
        f"{len(doc.prohibited_categories)} prohibited categories, "
        f"{len(policy.exemptions)} exemptions, "
        f"{matcher.screen_pattern_count} screen anchors"
    )
    return 0


def cmd_policy_evaluate(args: argparse.Namespace) -> int:
    from catalogue_purge.detect.evaluation import (
        DECISIONS,
        FIGURES,
        TARGETS_UNMET,
        evaluate,
        load_labelled,
        parse_targets,
        render_html,
    )

    targets = parse_targets(args.target or [])
    policy = load_policy(args.policy)
    evaluations = [evaluate(policy, load_labelled(path), str(path)) for path in args.labels]
    unmet = {ev.labels_file: ev.unmet(targets) for ev in evaluations}
    code = TARGETS_UNMET if any(unmet.values()) else 0
    if args.html:
        args.html.write_text(render_html(evaluations, targets), encoding="utf-8")
    if args.json:
        emit_json(
            {
                "targets": targets,
                "met": code == 0,
                "evaluations": [
                    ev.as_json() | {"unmet": unmet[ev.labels_file]} for ev in evaluations
                ],
            }
        )
        return code
    for ev in evaluations:
        print(
            f"{ev.labels_file}: {ev.rows:,} labelled listings, policy {ev.policy_id} "
            f"sha256 {ev.policy_sha256[:16]}"
        )
        for name in FIGURES:
            value = ev.figures[name]
            target = targets.get(name)
            aim = (
                ""
                if target is None
                else f"  (target {'>=' if FIGURES[name] == 'min' else '<='} {target})"
            )
            print(f"  {name:<18} {'n/a' if value is None else f'{value:.3f}'}{aim}")
        print("  label x decision   " + "  ".join(f"{d:>7}" for d in DECISIONS))
        for label, row in ev.matrix.items():
            print(f"  {label:<18} " + "  ".join(f"{row[d]:>7,}" for d in DECISIONS))
        print(
            "  rules (hits on prohibited/review/allowed, precision, alone delist/review, "
            "pushed over delist/review):"
        )
        for rule in ev.rules:
            p = "n/a" if rule.precision is None else f"{rule.precision:.2f}"
            hits = "/".join(
                f"{rule.hits[label]:>4}" for label in ("prohibited", "review", "allowed")
            )
            alone = f"{rule.alone['delist']:>4}/{rule.alone['review']:>4}"
            pushed = f"{rule.pushed['delist']:>4}/{rule.pushed['review']:>4}"
            print(f"    {rule.rule_id:<28} {hits}  {p:>4}  {alone}  {pushed}")
        print(f"  wrong decisions: {len(ev.wrong):,}")
        for w in ev.wrong[: args.show]:
            evidence = "; ".join(f"{e['rule_id']}: {e['term']}" for e in w["evidence"]) or "-"
            said = f"{w['label']} -> {w['decision']}: {w['title'][:70]!r}"
            print(f"    {w['listing_id']} {said} [{evidence}]")
        if len(ev.wrong) > args.show:
            print(f"    ... and {len(ev.wrong) - args.show:,} more (--show N, --html, --json)")
        for miss in unmet[ev.labels_file]:
            print(f"  TARGET NOT MET: {miss}")
    if args.html:
        print(f"report: {args.html}")
    return code


@dataclass(frozen=True)
class _GivenListing:
    """A listing given on the command line (explain)."""

    listing_id: str
    seller_id: str
    category_path: str
    title: str
    description: str | None
    country_of_sale: str


def cmd_explain(args: argparse.Namespace) -> int:
    from catalogue_purge.detect.matcher import Matcher
    from catalogue_purge.detect.sweep import explain

    policy = load_policy(args.policy, exemptions=args.exemptions)
    as_of = parse_as_of(args.as_of, policy) if args.as_of else None
    on = policy.local_day(as_of) if as_of else policy.document.milestones.delisting_from
    listing = _GivenListing(
        listing_id=args.listing_id,
        seller_id=args.seller_id,
        category_path=args.category or "",
        title=args.title,
        description=args.description,
        country_of_sale=args.country.upper(),
    )
    explained = explain(policy, Matcher(policy), listing, on)
    if as_of is not None and not policy.delisting_active(as_of):
        explained["decision_at_as_of"] = "none (before the delisting date)"
    if args.json:
        emit_json(explained)
        return 0
    t = explained["thresholds"]
    if not explained["in_scope"]:
        print(f"decision: none (the policy does not apply in {listing.country_of_sale})")
        return 0
    print(
        f"decision: {explained['decision']}  score {explained['score']:g} "
        f"(delist at {t['delist']:g}, review at {t['review']:g})"
    )
    if explained.get("decision_at_as_of"):
        print(f"  on {args.as_of}: {explained['decision_at_as_of']}")
    if explained["prohibited_category"] and explained["decision"] == "review":
        caps = {r.id for r in policy.document.rules if r.at_most == "review"}
        disagrees = explained["score"] < 0 or any(
            e["rule_id"] in caps and not e["shadow"] and not e["exemption_id"]
            for e in explained["evidence"]
        )
        print(
            f"  category {explained['prohibited_category']!r} is suspended, but the text "
            + (
                "disagrees (its score is below 0, or a rule at_most: review fired; the "
                "category says when_text_disagrees: review): a person decides"
                if disagrees
                else f"says too little to act on (its score is below {t['review']:g}; the "
                "category says when_text_silent: review): a person decides"
            )
        )
    elif explained["prohibited_category"]:
        agrees = "agrees" if explained["score"] >= t["review"] else "does not agree"
        print(
            f"  category {explained['prohibited_category']!r} is suspended: delisted whatever "
            f"the score (the text {agrees})"
        )
    if explained.get("shadow_decision"):
        print(f"  rules in shadow would make it: {explained['shadow_decision']}")
    seen: set[str] = set()
    for e in explained["evidence"]:
        if e["field"] == "category_path":
            continue
        weight = "" if e["rule_id"] in seen else f"{e['weight']:+g}"
        seen.add(e["rule_id"])
        notes = [n for n in ("shadow" if e["shadow"] else "", e["exemption_id"] or "") if n]
        said = f" ({', '.join(notes)})" if notes else ""
        print(f"  {weight:>6} {e['rule_id']}: {e['term']!r} in {e['field']}: {e['text']!r}{said}")
    if not explained["evidence"]:
        print("  no rule fired")
    return 0


def cmd_policy_parameters(args: argparse.Namespace) -> int:
    from catalogue_purge.job.stack import schedule_parameters

    parameters = schedule_parameters(load_policy(args.policy))
    print(" ".join(f"{k}={v}" for k, v in parameters.items()))
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from catalogue_purge.synthetic import generate_snapshot

    with _progress() as progress:
        task = progress.add_task("generating", total=args.rows)
        written = generate_snapshot(
            args.out,
            rows=args.rows,
            files=args.files,
            row_group_size=args.row_group_size,
            seed=args.seed,
            progress=lambda n: progress.advance(task, n),
        )
    out.print(f"wrote {args.rows:,} listings in {len(written)} files under {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="catalogue-purge", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_run_commands(sub)
    _add_appeal_commands(sub)
    _add_audit_commands(sub)
    _add_local_commands(sub)
    _add_tools(sub)
    from catalogue_purge.cli_review import add_review_commands

    add_review_commands(sub)
    return parser


def _add_run_commands(sub: Any) -> None:
    p = sub.add_parser("sweep", help="find every listing of a snapshot that a policy catches")
    p.add_argument(
        "--snapshot", required=True, help="Parquet file, folder, glob or s3://bucket/prefix"
    )
    p.add_argument("--policy", required=True, type=Path)
    p.add_argument("--as-of", required=True, help="date (2021-10-08) or ISO time of the run")
    p.add_argument(
        "--out", required=True, type=Path, help="folder for findings.parquet and sweep.json"
    )
    p.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="CONTRACT=EXPORT",
        help="column mapping for exports that name columns differently (repeatable)",
    )
    p.add_argument("--exemptions", type=Path, help="exemptions file (default: beside the policy)")
    p.add_argument("--threads", type=positive, help="DuckDB threads (default: all cores)")
    p.add_argument("--examples", type=int, default=5, help="evasions to show with their evidence")
    p.add_argument("--json", action="store_true", help="one JSON document on stdout, nothing else")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("run", help="the whole job: sweep, delist, finalize, verify")
    p.add_argument("--policy", required=True, type=Path)
    p.add_argument(
        "--snapshot", required=True, help="a Parquet file, folder or glob; s3:// with --stack"
    )
    p.add_argument("--as-of", required=True)
    p.add_argument("--local", action="store_true", help="against moto's server on loopback")
    p.add_argument(
        "--stack", help="a deployed stack, or `local`: the sandbox of `catalogue-purge local up`"
    )
    p.add_argument("--run-id", help="default: derived from the run's kind and as-of time")
    p.add_argument("--dry-run", action="store_true", help="predict outcomes, change nothing")
    p.add_argument("--approve", help="the plan hash that the safety limits held back")
    p.add_argument("--kind", choices=["purge", "re-sweep"], default="purge")
    p.add_argument(
        "--scope",
        choices=["auto", "full", "changed"],
        default="auto",
        help="changed: only listings updated since the last complete run (auto: for a re-sweep)",
    )
    p.add_argument("--out", type=Path, default=Path("build/run"), help="findings and manifest")
    p.add_argument("--examples", type=int, default=5, help="evasions to show with their evidence")
    p.add_argument("--json", action="store_true", help="one JSON document on stdout, nothing else")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("delist", help="apply a sweep's delist findings to the live catalogue")
    p.add_argument("--findings", required=True, help="the sweep's output: a folder or s3:// prefix")
    p.add_argument("--table", help="the listings table (DynamoDB); default: the --stack's")
    p.add_argument("--stack", help="a stack whose listings table to use (`local`: the sandbox)")
    p.add_argument("--run-id", required=True, help="the run; the same id resumes it")
    p.add_argument("--policy", required=True, type=Path, help="the policy the sweep used")
    p.add_argument("--runs", help="where runs record intents and outcomes (default: FINDINGS/runs)")
    p.add_argument("--dry-run", action="store_true", help="record what it would do, write nothing")
    p.add_argument("--approve", metavar="HASH", help="apply only this plan, past the safety limits")
    p.add_argument(
        "--concurrency", type=positive, default=16, help="concurrent writers (default 16)"
    )
    p.add_argument("--json", action="store_true", help="one JSON document on stdout, nothing else")
    p.set_defaults(func=cmd_delist)

    p = sub.add_parser("finalize", help="write a run's signed, chained enforcement manifest")
    p.add_argument("--findings", required=True, help="the sweep's output: a folder or s3:// prefix")
    p.add_argument("--run-id", required=True)
    p.add_argument("--runs", help="where the run recorded its outcomes (default: FINDINGS/runs)")
    p.add_argument("--manifests", help="the manifests root: s3://bucket or a folder")
    p.add_argument("--key-id", help="the KMS signing key (ECC_NIST_P256)")
    p.add_argument(
        "--stack", help="a stack whose manifests bucket and signing key to use (`local`)"
    )
    p.add_argument("--policies", type=Path, help="folder of policy files (default: shipped)")
    p.add_argument(
        "--allow-failed",
        action="store_true",
        help="seal a run whose outcomes include FAILED (default: refuse; resume it first)",
    )
    p.set_defaults(func=cmd_finalize)


def _add_appeal_commands(sub: Any) -> None:
    p = sub.add_parser(
        "reinstate",
        help="appeals: reinstate what a run delisted, reverse the penalties it caused",
    )
    p.add_argument(
        "--stack", required=True, help="the deployed stack, or `local` (the local sandbox)"
    )
    p.add_argument("--run", required=True, help="the run that delisted")
    p.add_argument("--policy", required=True, type=Path)
    p.add_argument("--listing", action="append", default=[], help="a listing (repeatable)")
    p.add_argument("--seller", action="append", default=[], help="all of a seller's listings")
    p.add_argument("--rule", action="append", default=[], help="a rule found wrong")
    p.add_argument("--reason", required=True, help="why: it goes into the manifest")
    p.set_defaults(func=cmd_reinstate)


def _add_audit_commands(sub: Any) -> None:
    p = sub.add_parser("audit", help="auditors' tools for enforcement manifests")
    asub = p.add_subparsers(dest="audit_command", required=True)
    a = asub.add_parser("verify", help="verify downloaded run folders offline")
    a.add_argument("folder", help="a run folder, or a folder of a policy's run folders (chain)")
    _add_key_options(a)
    a.add_argument(
        "--stack", help="or trust the signing key of this stack, read from KMS (`local`)"
    )
    a.add_argument(
        "--expect-head",
        metavar="SEQ|RUN",
        help="the chain's last run (its sequence or run id); with --stack, read from the bucket",
    )
    a.add_argument("--json", action="store_true", help="one JSON document on stdout, nothing else")
    a.set_defaults(func=cmd_audit_verify)
    a = asub.add_parser("list", help="list the complete runs under a manifests root")
    a.add_argument("--root", help="the manifests root: s3://bucket or a folder")
    a.add_argument("--stack", help="or the manifests bucket of a stack (`local`: the sandbox)")
    a.add_argument("--policy", help="only this policy's runs")
    a.add_argument("--json", action="store_true", help="one JSON document on stdout, nothing else")
    a.set_defaults(func=cmd_audit_list)
    a = asub.add_parser("download", help="download a run, checking every part as it arrives")
    a.add_argument("run_id")
    a.add_argument("--root", help="the manifests root: s3://bucket or a folder")
    a.add_argument("--stack", help="or the manifests bucket of a stack (`local`: the sandbox)")
    a.add_argument("--to", required=True, type=Path)
    _add_key_options(a)
    a.set_defaults(func=cmd_audit_download)
    a = asub.add_parser(
        "dsa", help="a verified run's EU/EEA decisions as DSA statements of reasons (batches)"
    )
    a.add_argument("folder", type=Path, help="a downloaded run folder")
    a.add_argument("--policy", required=True, type=Path, help="the policy the run applied")
    a.add_argument("--to", required=True, type=Path, help="JSON Lines: one API request per line")
    _add_key_options(a)
    a.add_argument("--stack", help="or trust the signing key of this stack (`local`)")
    a.add_argument("--json", action="store_true", help="one JSON document on stdout, nothing else")
    a.set_defaults(func=cmd_audit_dsa)
    a = asub.add_parser(
        "key", help="the stack's signing key (PEM) and its SHA-256 fingerprint, to publish"
    )
    a.add_argument(
        "--stack", required=True, help="the deployed stack, or `local` (the local sandbox)"
    )
    a.add_argument("--out", type=Path, help="also write the PEM to this file")
    a.add_argument("--json", action="store_true", help="one JSON document on stdout, nothing else")
    a.set_defaults(func=cmd_audit_key)


def _add_key_options(parser: argparse.ArgumentParser) -> None:
    pin = parser.add_mutually_exclusive_group()
    pin.add_argument("--key", type=Path, help="the public key (PEM) the auditor trusts")
    pin.add_argument(
        "--key-sha256",
        metavar="HEX",
        help="or the SHA-256 fingerprint of that key (DER), as `audit key` prints it",
    )


def _add_local_commands(sub: Any) -> None:
    p = sub.add_parser(
        "local", help="a local sandbox that lasts across commands (use it with --stack local)"
    )
    lsub = p.add_subparsers(dest="local_command", required=True)
    for name, func, what in (
        ("up", cmd_local_up, "start moto's server and create the stack's resources"),
        ("status", cmd_local_status, "is the sandbox up, and its resources"),
        ("down", cmd_local_down, "stop the sandbox; its state is gone"),
    ):
        c = lsub.add_parser(name, help=what)
        c.add_argument(
            "--dir",
            type=Path,
            help="the sandbox's folder (default: $CATALOGUE_PURGE_SANDBOX or build/local)",
        )
        c.set_defaults(func=func)


def _sandbox_dir(args: argparse.Namespace) -> Path | None:
    """--dir, also for the commands that follow it in this process (they read the env)."""
    import os

    from catalogue_purge.job.sandbox import SANDBOX_ENV

    if args.dir:
        os.environ[SANDBOX_ENV] = str(args.dir)
    return args.dir


def cmd_local_up(args: argparse.Namespace) -> int:
    from catalogue_purge.job.sandbox import up

    sandbox, started = up(_sandbox_dir(args))
    said = "started" if started else "already up"
    out.print(f"local sandbox {said}: moto's server at {sandbox.endpoint} (pid {sandbox.pid})")
    _print_sandbox(sandbox)
    return 0


def cmd_local_status(args: argparse.Namespace) -> int:
    from catalogue_purge.job.sandbox import attach

    sandbox = attach(_sandbox_dir(args))
    out.print(f"local sandbox up: moto's server at {sandbox.endpoint} (pid {sandbox.pid})")
    _print_sandbox(sandbox)
    return 0


def _print_sandbox(sandbox: Any) -> None:
    names = sandbox.stack.physical
    out.print(f"folder: {sandbox.folder}; stack {sandbox.stack.name}")
    for logical in ("DataBucket", "ManifestsBucket", "ListingsTable", "SellerLedgerTable"):
        out.print(f"  {logical}: {names[logical]}")
    out.print("use it with --stack local (run, reinstate, review, audit list, audit download)")


def cmd_local_down(args: argparse.Namespace) -> int:
    from catalogue_purge.job.sandbox import down, sandbox_dir

    folder = sandbox_dir(args.dir)
    out.print(
        f"local sandbox in {folder} stopped" if down(folder) else f"no local sandbox in {folder}"
    )
    return 0


def _add_tools(sub: Any) -> None:
    p = sub.add_parser("policy", help="policy tools")
    psub = p.add_subparsers(dest="policy_command", required=True)
    c = psub.add_parser("check", help="validate a policy and its exemptions, print its hash")
    c.add_argument("policy", type=Path)
    c.set_defaults(func=cmd_policy_check)
    c = psub.add_parser(
        "parameters",
        help="the stack parameters of a policy's schedules, for sam deploy --parameter-overrides",
    )
    c.add_argument("policy", type=Path)
    c.set_defaults(func=cmd_policy_parameters)
    c = psub.add_parser(
        "evaluate",
        help="a policy's decisions against labelled listings: figures, confusion matrix, rules",
    )
    c.add_argument("--policy", required=True, type=Path)
    c.add_argument(
        "--labels",
        required=True,
        type=Path,
        action="append",
        help="a labelled JSON Lines file (label: prohibited, review or allowed); repeatable",
    )
    c.add_argument("--html", type=Path, help="also write the figures as one HTML page")
    c.add_argument(
        "--target",
        action="append",
        metavar="NAME=VALUE",
        help="a figure's floor (or ceiling, for allowed_touched and review_delisted); "
        "`default` for the shipped targets. Exit 9 when one is not met; repeatable",
    )
    c.add_argument(
        "--show", type=non_negative, default=20, help="wrong decisions printed per file (20)"
    )
    c.add_argument("--json", action="store_true", help="one JSON document on stdout, nothing else")
    c.set_defaults(func=cmd_policy_evaluate)

    p = sub.add_parser(
        "explain", help="the decision for one listing, with every piece of evidence and its weight"
    )
    p.add_argument("--policy", required=True, type=Path)
    p.add_argument("--title", required=True)
    p.add_argument("--description")
    p.add_argument("--category", help="the listing's category path (A > B > C)")
    p.add_argument("--country", default="US", help="country of sale (US)")
    p.add_argument("--listing-id", default="L-EXPLAIN", help="for exemptions by listing")
    p.add_argument("--seller-id", default="S-EXPLAIN", help="for exemptions by seller")
    p.add_argument("--exemptions", type=Path, help="default: <policy>.exemptions.yaml beside it")
    p.add_argument(
        "--as-of", help="the day exemptions are counted on (default: the delisting date)"
    )
    p.add_argument("--json", action="store_true", help="one JSON document on stdout, nothing else")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("generate", help="write a seeded synthetic catalogue snapshot")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--rows", type=int, default=200_000)
    p.add_argument("--files", type=int, default=1)
    p.add_argument("--row-group-size", type=int, default=120_000)
    p.add_argument("--seed", type=int, default=2021)
    p.set_defaults(func=cmd_generate)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except PurgeError as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        return exc.exit_code
    except KeyboardInterrupt:
        console.print("[red]interrupted[/red]: nothing was written")
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, as command-line tools do. Standard
        # output is pointed at nothing so that the interpreter's final flush cannot fail too.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())

"""`catalogue-purge review ...`: the review queue's commands (see review/)."""

from __future__ import annotations

import argparse
import json
import webbrowser
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from catalogue_purge import aws
from catalogue_purge.detect.policy import Policy, load_policy
from catalogue_purge.errors import PurgeError

out = Console(highlight=False)


@dataclass
class Context:
    stack: Any
    policy: Policy
    queue: Any
    local: bool


def _context(args: argparse.Namespace) -> Context:
    from catalogue_purge.job.local import deployed_stack
    from catalogue_purge.job.sandbox import LOCAL, attach
    from catalogue_purge.review.queue import ReviewQueue

    policy = load_policy(args.policy)
    stack = attach().stack if args.stack == LOCAL else deployed_stack(args.stack)
    table = stack.physical.get("ReviewQueueTable")
    if not table:
        raise PurgeError(
            f"stack {args.stack} has no review queue (ReviewQueueTable): deploy the current "
            "template, or start the local sandbox again (`catalogue-purge local down`, `up`)"
        )
    return Context(
        stack, policy, ReviewQueue(table, aws.client("dynamodb"), policy), args.stack == LOCAL
    )


def _reviewer(args: argparse.Namespace) -> str:
    from catalogue_purge.review.queue import pseudonym, reviewer_id

    if args.reviewer:
        return reviewer_id(args.reviewer)
    arn = aws.client("sts").get_caller_identity()["Arn"]
    return pseudonym(arn)


def cmd_status(args: argparse.Namespace) -> int:
    ctx = _context(args)
    counts = ctx.queue.counts()
    waiting = ctx.queue.waiting()
    oldest = min((i.enqueued_at for i in waiting), default=None)
    if args.json:
        print(
            json.dumps(
                {
                    "policy": ctx.policy.id,
                    "counts": counts,
                    "waiting": len(waiting),
                    "oldest": oldest,
                }
            )
        )
        return 0
    out.print(f"review queue of {ctx.policy.id} on stack {ctx.stack.name}:")
    for key, value in counts.items():
        out.print(f"  {key:<16} {value:>8,}")
    out.print(f"{len(waiting):,} waiting" + (f", the oldest queued {oldest}" if oldest else ""))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from catalogue_purge.enforce.catalogue import DynamoCatalogue
    from catalogue_purge.enforce.penalties import Ledger
    from catalogue_purge.review.queue import Order
    from catalogue_purge.review.serve import Desk, make_server

    ctx = _context(args)
    dynamodb = aws.client("dynamodb")
    desk = Desk(
        ctx.queue,
        _reviewer(args),
        tier=args.tier,
        order=Order(args.order),
        catalogue=DynamoCatalogue(ctx.stack.physical["ListingsTable"], dynamodb),
        ledger=Ledger(ctx.stack.physical["SellerLedgerTable"], dynamodb),
    )
    try:
        server = make_server(desk, args.port)
    except OSError as exc:
        raise PurgeError(f"cannot listen on 127.0.0.1:{args.port}: {exc.strerror}") from None
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    out.print(
        f"reviewing {ctx.policy.id} as {desk.reviewer} (tier {desk.tier}): {url}  (Ctrl+C stops)"
    )
    out.file.flush()  # the address now, also when the output goes to a file or a pipe
    if args.open:
        webbrowser.open(url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        out.print("stopped; claims not decided return to the queue when they expire")
    finally:
        server.server_close()
    return 0


def cmd_apply(args: argparse.Namespace) -> int:
    from catalogue_purge.enforce.catalogue import DynamoCatalogue
    from catalogue_purge.enforce.penalties import DynamoAccounts, Ledger
    from catalogue_purge.job.events import ApplyReviews
    from catalogue_purge.job.reviews import apply_reviews
    from catalogue_purge.job.sandbox import attach, one_command_at_a_time
    from catalogue_purge.record.manifest import KmsSigner

    ctx = _context(args)
    as_of = datetime.fromisoformat(args.as_of) if args.as_of else None
    if as_of is not None and as_of.tzinfo is None:
        raise PurgeError(f"--as-of {args.as_of}: give a time zone (2021-10-20T10:00:00+08:00)")
    event = ApplyReviews(
        policy_id=ctx.policy.id, as_of=as_of, dry_run=args.dry_run, limit=args.limit
    )
    names = ctx.stack.physical
    if ctx.local:
        dynamodb = aws.client("dynamodb")
        with one_command_at_a_time(attach()):
            done = apply_reviews(
                event,
                Path(ctx.policy.path).resolve().parent,
                queue_table=names["ReviewQueueTable"],
                client=dynamodb,
                catalogue=DynamoCatalogue(names["ListingsTable"], dynamodb),
                data_bucket=names["DataBucket"],
                manifests_bucket=names["ManifestsBucket"],
                signer=KmsSigner(aws.client("kms"), names["SigningKey"]),
                ledger=Ledger(names["SellerLedgerTable"], dynamodb),
                accounts=DynamoAccounts(names["SellerAccountsTable"], dynamodb),
                events=aws.client("events"),
                bus=names["NoticesBus"],
            )
        result = done.model_dump()
    else:
        answer = aws.client("lambda").invoke(
            FunctionName=names["ApplyReviewsFunction"],
            Payload=event.model_dump_json().encode(),
        )
        result = json.loads(answer["Payload"].read())
        if answer.get("FunctionError"):
            raise PurgeError(f"the applier failed: {result.get('errorMessage', result)}")
    if args.json:
        print(json.dumps(result, default=str))
        return 0
    if result["run_id"] is None:
        out.print("no decision waits to be applied")
        return 0
    what = ", ".join(f"{k} {v:,}" for k, v in sorted(result["outcomes"].items()))
    kind = "dry run (nothing changed)" if result["dry_run"] else "review run"
    out.print(f"{kind} {result['run_id']}: {what}")
    if result["sent_back"]:
        out.print(f"{result['sent_back']:,} changed since they were decided: back in the queue")
    if result["penalties"]:
        out.print("penalties: " + ", ".join(f"{k} {v:,}" for k, v in result["penalties"].items()))
    if result["manifest"]:
        out.print(f"manifest (kind review, chained): {result['manifest']}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from catalogue_purge.review.exchange import export_claimed
    from catalogue_purge.review.queue import Order

    ctx = _context(args)
    reviewer = _reviewer(args)
    count = export_claimed(
        ctx.queue,
        args.out,
        reviewer=reviewer,
        tier=args.tier,
        count=args.count,
        order=Order(args.order),
        hours=args.hours,
    )
    out.print(
        f"{count:,} item(s) claimed for {reviewer} for {args.hours} h and written to {args.out}: "
        "fill in decision (delist, keep, escalate, skip), reason and, for a delisting, rules; "
        f"then `catalogue-purge review import {args.out} ...`"
    )
    return 0 if count else 1


def cmd_import(args: argparse.Namespace) -> int:
    from catalogue_purge.review.exchange import import_decisions

    ctx = _context(args)
    done = import_decisions(args.file, ctx.queue, reviewer=_reviewer(args), tier=args.tier)
    decided = ", ".join(f"{k} {v:,}" for k, v in sorted(done.decided.items())) or "none"
    out.print(f"decided: {decided}; given back undecided: {done.released:,}")
    for conflict in done.conflicts:
        out.print(f"  [red]refused[/red] {conflict}")
    return 4 if done.conflicts else 0


def cmd_labels(args: argparse.Namespace) -> int:
    from catalogue_purge.review.exchange import write_labels

    ctx = _context(args)
    count = write_labels(ctx.queue, args.out)
    out.print(
        f"{count:,} listing(s) people decided, labelled, in {args.out}: "
        f"`catalogue-purge policy evaluate --policy {args.policy} --labels {args.out}`"
    )
    return 0 if count else 1


def cmd_exemptions(args: argparse.Namespace) -> int:
    from catalogue_purge.detect.policy import exemptions_path
    from catalogue_purge.review.exchange import write_exemptions

    ctx = _context(args)
    current = exemptions_path(Path(args.policy))
    added, kept = write_exemptions(ctx.queue, current, args.out)
    out.print(
        f"{args.out}: {kept:,} exemption(s) of {current.name} and {added:,} from reviewers' keep "
        f"decisions. Review the change, then put it in place of {current}: the next sweep "
        "applies it (and sweeps in full, as after any change of exemptions)"
    )
    return 0


def add_review_commands(sub: Any) -> None:
    p = sub.add_parser("review", help="the review queue: people decide the doubtful listings")
    rsub = p.add_subparsers(dest="review_command", required=True)

    def command(name: str, what: str, func: Any) -> argparse.ArgumentParser:
        c = rsub.add_parser(name, help=what)
        c.add_argument("--stack", required=True, help="a deployed stack, or `local` (the sandbox)")
        c.add_argument("--policy", required=True, type=Path)
        c.set_defaults(func=func)
        return c

    def reviewer(c: argparse.ArgumentParser) -> None:
        c.add_argument(
            "--reviewer",
            help="a pseudonymous id (default: one derived from your AWS identity)",
        )
        c.add_argument("--tier", type=int, choices=[1, 2], default=1, help="2: the second tier")

    def order(c: argparse.ArgumentParser) -> None:
        c.add_argument("--order", choices=["oldest", "priority"], default="oldest")

    c = command("status", "what waits in the queue, by state and lane", cmd_status)
    c.add_argument("--json", action="store_true")
    c = command("serve", "the reviewers' page on loopback", cmd_serve)
    c.add_argument("--port", type=int, default=8765, help="0: any free port (default 8765)")
    c.add_argument("--open", action="store_true", help="open the page in the browser")
    reviewer(c)
    order(c)
    c = command("apply", "apply the decided items now, as a review run", cmd_apply)
    c.add_argument("--dry-run", action="store_true", help="predict the outcomes, change nothing")
    c.add_argument("--as-of", help="the run's time (default now), e.g. 2021-10-20T10:00:00+08:00")
    c.add_argument("--limit", type=int, default=10_000, help="decisions per review run")
    c.add_argument("--json", action="store_true")
    c = command("export", "claim items and write them to a CSV for a spreadsheet", cmd_export)
    c.add_argument("--out", required=True, type=Path)
    c.add_argument("--count", type=int, default=100)
    c.add_argument(
        "--hours",
        type=int,
        default=8,
        choices=range(1, 25),
        metavar="1-24",
        help="how long the claims last (default 8)",
    )
    reviewer(c)
    order(c)
    c = command("import", "decide the items of a filled-in CSV", cmd_import)
    c.add_argument("file", type=Path)
    reviewer(c)
    c = command("labels", "the decided items as a labelled file for `policy evaluate`", cmd_labels)
    c.add_argument("--out", required=True, type=Path)
    c = command(
        "exemptions",
        "the policy's exemptions file with the reviewers' exemptions added",
        cmd_exemptions,
    )
    c.add_argument("--out", required=True, type=Path, help="where to write it, for review")

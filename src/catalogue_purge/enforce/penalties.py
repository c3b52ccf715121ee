"""Seller penalties after the policy's penalty date: the ledger of offences and the ladder.

An offence is a run's delistings of one seller's listings under a policy. Each offence moves
the seller up the policy's ladder (warning, store blocked, account frozen, account closed):
one step, or `evasion_jump` steps when a listing evaded (a prohibited product outside every
prohibited category), or `relist_after_warning_jump` steps for a relist after a warning. A step
that `requires_approval` (closing an account) is proposed, never applied by the job.

The ledger (a DynamoDB table, key seller_id + entry) holds, per seller and policy, one item per
offence (`<policy>#offence#<run>`) and the seller's current step (`<policy>#state`), written
together in one transaction conditioned on the offence being new and the state unchanged: a
seller is penalised at most once per run, and a repeated run changes nothing.

The penalty itself goes through an AccountService (a DynamoDB implementation here; the platform
plugs its own account service in), set to an absolute step, so applying it again is harmless.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

import pyarrow as pa
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from catalogue_purge.detect.policy import Penalties
from catalogue_purge.enforce.runstore import RunStore
from catalogue_purge.errors import PurgeError

NO_STEP = -1
PENALTY_SCHEMA = pa.schema(
    [
        ("seller_id", pa.string()),
        ("run_id", pa.string()),
        ("offences", pa.int64()),
        ("step_before", pa.string()),
        ("step_after", pa.string()),
        ("status", pa.string()),
        ("proposed", pa.string()),
        ("reason", pa.string()),
        ("listings", pa.list_(pa.string())),
        ("rules", pa.list_(pa.string())),
        ("evasion", pa.bool_()),
        ("relist", pa.bool_()),
        ("at", pa.timestamp("us", tz="UTC")),
    ]
)


@dataclass(frozen=True)
class Offence:
    seller_id: str
    policy_id: str
    run_id: str
    listings: tuple[str, ...]
    rules: tuple[str, ...]
    evasion: bool
    relist: bool
    # A step of the ladder (its index) a person of the second tier decided for the seller: the
    # seller goes at least that far, and no further approval is asked for it.
    decided_step: int = NO_STEP


@dataclass(frozen=True)
class Penalty:
    """What an offence did to its seller (a row of the manifest's penalty table)."""

    seller_id: str
    run_id: str
    offences: int  # the seller's offences under the policy, this one included
    step_before: str | None
    step_after: str | None
    status: str  # applied | proposed (awaits approval) | reversed
    proposed: str | None
    reason: str
    listings: tuple[str, ...]
    rules: tuple[str, ...]
    evasion: bool
    relist: bool


def next_step(before: int, offence: Offence, penalties: Penalties) -> int:
    """The ladder index an offence takes a seller to (before: NO_STEP for a clean record)."""
    after = before + 1
    if offence.evasion:
        after = max(after, before + penalties.evasion_jump)
    if offence.relist and before >= 0:  # a relist after (at least) a warning
        after = max(after, before + penalties.relist_after_warning_jump)
    return max(min(after, len(penalties.ladder) - 1), offence.decided_step)


def applicable(before: int, wanted: int, penalties: Penalties) -> int:
    """The highest step up to `wanted` the job may apply alone (never lower than `before`)."""
    for index in range(wanted, before, -1):
        if not penalties.ladder[index].requires_approval:
            return index
    return before


def reason(offence: Offence, offences: int, penalties: Penalties, before: int, after: int) -> str:
    what = [f"{len(offence.listings)} listing(s) delisted under {offence.policy_id}"]
    if offence.evasion:
        what.append(
            f"evasion: a prohibited product outside its category (+{penalties.evasion_jump})"
        )
    if offence.relist and before >= 0:
        what.append(f"relist after a warning (+{penalties.relist_after_warning_jump})")
    elif offence.relist:
        what.append("relist")
    if offence.decided_step >= 0:
        what.append(f"the second tier decided {penalties.ladder[offence.decided_step].id}")
    step = penalties.ladder[after].id if after >= 0 else "none"
    return f"offence {offences}: " + "; ".join(what) + f"; step {step}"


class AccountService(Protocol):
    """The platform's seller accounts: set a seller's penalty step (None: good standing).

    `version` is the version of the seller's state in the ledger that the step comes from:
    the service keeps the step of the highest version it was given. Two runs penalising one
    seller at once apply their steps in either order; the account must end at the ledger's
    latest step, not at whichever call came last."""

    def set_step(
        self,
        seller_id: str,
        policy_id: str,
        step: str | None,
        run_id: str,
        reason: str,
        *,
        version: int,
    ) -> None: ...


@dataclass
class InMemoryAccounts:
    steps: dict[tuple[str, str], str | None] = field(default_factory=dict)
    versions: dict[tuple[str, str], int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def set_step(
        self,
        seller_id: str,
        policy_id: str,
        step: str | None,
        run_id: str,
        reason: str,
        *,
        version: int,
    ) -> None:
        key = (seller_id, policy_id)
        with self._lock:
            if version >= self.versions.get(key, -1):
                self.steps[key], self.versions[key] = step, version


@dataclass
class DynamoAccounts:
    """Seller accounts in a DynamoDB table keyed by seller_id: the penalty step per policy."""

    table: str
    client: Any

    def set_step(
        self,
        seller_id: str,
        policy_id: str,
        step: str | None,
        run_id: str,
        reason: str,
        *,
        version: int,
    ) -> None:
        self.client.update_item(
            TableName=self.table,
            Key={"seller_id": {"S": seller_id}},
            UpdateExpression="SET #p = if_not_exists(#p, :empty)",
            ExpressionAttributeNames={"#p": "penalties"},
            ExpressionAttributeValues={":empty": {"M": {}}},
        )
        value = {
            "M": {
                "step": {"S": step} if step else {"NULL": True},
                "run_id": {"S": run_id},
                "reason": {"S": reason},
                "at": {"S": datetime.now(UTC).isoformat()},
                "version": {"N": str(version)},
            }
        }
        try:
            self.client.update_item(
                TableName=self.table,
                Key={"seller_id": {"S": seller_id}},
                UpdateExpression="SET #p.#policy = :value",
                ConditionExpression=("attribute_not_exists(#p.#policy.#v) OR #p.#policy.#v <= :v"),
                ExpressionAttributeNames={"#p": "penalties", "#policy": policy_id, "#v": "version"},
                ExpressionAttributeValues={":value": value, ":v": {"N": str(version)}},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            # a later state of the seller was applied already: it stands


class Ledger:
    """The seller ledger in DynamoDB (see the module's docstring)."""

    def __init__(self, table: str, client: Any):
        self.table, self.client = table, client

    def _state_key(self, seller_id: str, policy_id: str) -> dict:
        return {"seller_id": {"S": seller_id}, "entry": {"S": f"{policy_id}#state"}}

    def _offence_key(self, seller_id: str, policy_id: str, run_id: str) -> dict:
        return {"seller_id": {"S": seller_id}, "entry": {"S": f"{policy_id}#offence#{run_id}"}}

    def _state_update(
        self, seller_id: str, policy_id: str, step: int, offences: int, version: int
    ) -> dict:
        """The seller's new state, written only over the `version` it was read at."""
        return {
            "TableName": self.table,
            "Key": self._state_key(seller_id, policy_id),
            "UpdateExpression": "SET #s = :s, offences = :o, version = :next",
            "ExpressionAttributeNames": {"#s": "step"},
            "ExpressionAttributeValues": {
                ":s": {"N": str(step)},
                ":o": {"N": str(offences)},
                ":v": {"N": str(version)},
                ":next": {"N": str(version + 1)},
            },
        }

    def state(self, seller_id: str, policy_id: str) -> tuple[int, int, int]:
        """(step index, offences, version) of a seller under a policy."""
        item = self.client.get_item(
            TableName=self.table, Key=self._state_key(seller_id, policy_id), ConsistentRead=True
        ).get("Item")
        if not item:
            return NO_STEP, 0, 0
        return int(item["step"]["N"]), int(item["offences"]["N"]), int(item["version"]["N"])

    def offence(self, seller_id: str, policy_id: str, run_id: str) -> dict | None:
        item = self.client.get_item(
            TableName=self.table,
            Key=self._offence_key(seller_id, policy_id, run_id),
            ConsistentRead=True,
        ).get("Item")
        return _plain(item) if item else None

    def offences(self, seller_id: str, policy_id: str) -> list[dict]:
        items = self.client.query(
            TableName=self.table,
            KeyConditionExpression="seller_id = :s AND begins_with(entry, :p)",
            ExpressionAttributeValues={
                ":s": {"S": seller_id},
                ":p": {"S": f"{policy_id}#offence#"},
            },
            ConsistentRead=True,
        )["Items"]
        return sorted((_plain(i) for i in items), key=lambda o: o["at"])

    def write(
        self,
        penalty: Penalty,
        policy_id: str,
        before: tuple[int, int, int],
        after_index: int,
        offences: int,
    ) -> bool:
        """The offence and the new state in one transaction. False when the offence is
        already recorded (this run penalised the seller before) or the state moved meanwhile."""
        _, _, version = before
        offence_item = {
            **self._offence_key(penalty.seller_id, policy_id, penalty.run_id),
            **_typed(
                {
                    "run_id": penalty.run_id,
                    "listings": list(penalty.listings),
                    "rules": list(penalty.rules),
                    "evasion": penalty.evasion,
                    "relist": penalty.relist,
                    "step_before": penalty.step_before,
                    "step_after": penalty.step_after,
                    "status": penalty.status,
                    "proposed": penalty.proposed,
                    "reason": penalty.reason,
                    "offences": offences,
                    "reversed": False,
                    "at": datetime.now(UTC).isoformat(),
                }
            ),
        }
        try:
            self.client.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self.table,
                            "Item": offence_item,
                            "ConditionExpression": "attribute_not_exists(entry)",
                        }
                    },
                    {
                        "Update": self._state_update(
                            penalty.seller_id, policy_id, after_index, offences, version
                        )
                        | {"ConditionExpression": "attribute_not_exists(version) OR version = :v"}
                    },
                ]
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "TransactionCanceledException":
                return False
            raise
        return True

    def set_state(
        self, seller_id: str, policy_id: str, step: int, offences: int, version: int
    ) -> bool:
        try:
            self.client.update_item(
                **self._state_update(seller_id, policy_id, step, offences, version),
                ConditionExpression="version = :v",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def mark_reversed(self, seller_id: str, policy_id: str, run_id: str, why: str) -> None:
        self.client.update_item(
            TableName=self.table,
            Key=self._offence_key(seller_id, policy_id, run_id),
            UpdateExpression="SET reversed = :t, reversed_reason = :why",
            ExpressionAttributeValues={":t": {"BOOL": True}, ":why": {"S": why}},
        )


_SERIALIZER, _DESERIALIZER = TypeSerializer(), TypeDeserializer()


def _typed(values: dict) -> dict:
    return {key: _SERIALIZER.serialize(value) for key, value in values.items()}


def _plain(item: dict) -> dict:
    """An item as Python values; DynamoDB numbers (Decimal) as the ints the ledger stores."""
    plain = {key: _DESERIALIZER.deserialize(value) for key, value in item.items()}
    return {k: int(v) if isinstance(v, Decimal) else v for k, v in plain.items()}


def _penalty_from_record(record: dict, seller_id: str) -> Penalty:
    return Penalty(
        seller_id=seller_id,
        run_id=record["run_id"],
        offences=record["offences"],
        step_before=record["step_before"],
        step_after=record["step_after"],
        status=record["status"],
        proposed=record["proposed"],
        reason=record["reason"],
        listings=tuple(record["listings"]),
        rules=tuple(record["rules"]),
        evasion=record["evasion"],
        relist=record["relist"],
    )


def penalise(
    offence: Offence,
    penalties: Penalties,
    ledger: Ledger,
    accounts: AccountService,
    attempts: int = 5,
) -> Penalty:
    """Record the offence and move the seller up the ladder, once per run; apply the step
    through the account service (again, harmlessly, when the run repeats)."""
    ladder = penalties.ladder
    for _ in range(attempts):
        recorded = ledger.offence(offence.seller_id, offence.policy_id, offence.run_id)
        if recorded is not None:
            penalty = _penalty_from_record(recorded, offence.seller_id)
            # the run repeated: the account gets the ledger's state as it is now, which later
            # runs may have moved past this offence's step
            step, _, version = ledger.state(offence.seller_id, offence.policy_id)
            applied = (ladder[step].id if step >= 0 else None, version)
            break
        before = ledger.state(offence.seller_id, offence.policy_id)
        wanted = next_step(before[0], offence, penalties)
        # A step the second tier decided is its own approval.
        decided = offence.decided_step >= 0 and wanted == offence.decided_step
        after = wanted if decided else applicable(before[0], wanted, penalties)
        count = before[1] + 1
        why = reason(offence, count, penalties, before[0], wanted)
        if wanted != after:
            meanwhile = f"; {ladder[after].id} applied meanwhile" if after >= 0 else ""
            why += f" (proposed: awaits a person's approval{meanwhile})"
        penalty = Penalty(
            seller_id=offence.seller_id,
            run_id=offence.run_id,
            offences=count,
            step_before=ladder[before[0]].id if before[0] >= 0 else None,
            step_after=ladder[after].id if after >= 0 else None,
            status="proposed" if wanted != after else "applied",
            proposed=ladder[wanted].id if wanted != after else None,
            reason=why,
            listings=offence.listings,
            rules=offence.rules,
            evasion=offence.evasion,
            relist=offence.relist,
        )
        if ledger.write(penalty, offence.policy_id, before, after, count):
            applied = (penalty.step_after, before[2] + 1)  # the write moved the version on
            break
        time.sleep(0.05)  # the state moved under us (another run): read it again
    else:
        raise PurgeError(f"seller {offence.seller_id}: the ledger kept changing; try again")
    step_id, version = applied
    accounts.set_step(
        offence.seller_id,
        offence.policy_id,
        step_id,
        offence.run_id,
        penalty.reason,
        version=version,
    )
    return penalty


def penalise_recorded(
    offences: Sequence[Offence],
    penalties: Penalties,
    ledger: Ledger,
    accounts: AccountService,
    *,
    store: RunStore,
    concurrency: int = 8,
) -> pa.Table:
    """Penalise each offence's seller not yet recorded in `store` (a run's penalties), from a
    few threads, recording them 500 at a time: a resumed step penalises no one twice. Every
    penalty recorded, the earlier ones included."""
    recorded = store.read_outcomes()
    done = set(recorded.column("seller_id").to_pylist())
    todo = [o for o in offences if o.seller_id not in done]
    appended = [recorded]
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="penalise") as pool:
        for start in range(0, len(todo), 500):
            chunk = todo[start : start + 500]
            results = list(pool.map(lambda o: penalise(o, penalties, ledger, accounts), chunk))
            appended.append(penalty_table(results))
            store.append_outcomes(appended[-1])
    return pa.concat_tables(appended)


def offences_of(
    run_id: str, policy_id: str, findings: Sequence[dict], outcomes: Sequence[dict]
) -> list[Offence]:
    """One offence per seller with listings DELISTED by the run."""
    delisted = {o["listing_id"] for o in outcomes if o["outcome"] == "DELISTED"}
    by_seller: dict[str, list[dict]] = {}
    for finding in findings:
        if finding["listing_id"] in delisted:
            by_seller.setdefault(finding["seller_id"], []).append(finding)
    return [
        Offence(
            seller_id=seller,
            policy_id=policy_id,
            run_id=run_id,
            listings=tuple(sorted(f["listing_id"] for f in rows)),
            rules=tuple(sorted({r for f in rows for r in f["rule_ids"]})),
            evasion=any(f["evasion"] for f in rows),
            relist=any(f["relist"] for f in rows),
        )
        for seller, rows in sorted(by_seller.items())
    ]


def reverse(
    seller_id: str,
    policy_id: str,
    run_id: str,
    why: str,
    *,
    penalties: Penalties,
    ledger: Ledger,
    accounts: AccountService,
    reinstatement_id: str,
) -> Penalty | None:
    """Undo what a run's offence did to a seller (its listings were reinstated): the offence
    is marked reversed and the seller's step is replayed from the offences that remain."""
    record = ledger.offence(seller_id, policy_id, run_id)
    if record is None:
        return None
    ladder = penalties.ladder
    for _ in range(5):
        current = ledger.state(seller_id, policy_id)
        remaining = [
            o
            for o in ledger.offences(seller_id, policy_id)
            if not o["reversed"] and o["run_id"] != run_id
        ]
        step = NO_STEP
        for kept in remaining:
            replayed = Offence(
                seller_id,
                policy_id,
                kept["run_id"],
                (),
                (),
                bool(kept["evasion"]),
                bool(kept["relist"]),
            )
            step = applicable(step, next_step(step, replayed, penalties), penalties)
        if ledger.set_state(seller_id, policy_id, step, len(remaining), current[2]):
            break
        time.sleep(0.05)
    else:
        raise PurgeError(f"seller {seller_id}: the ledger kept changing; try again")
    if not record["reversed"]:
        ledger.mark_reversed(seller_id, policy_id, run_id, why)
    after = ladder[step].id if step >= 0 else None
    accounts.set_step(seller_id, policy_id, after, reinstatement_id, why, version=current[2] + 1)
    return Penalty(
        seller_id=seller_id,
        run_id=run_id,
        offences=len(remaining),
        step_before=ladder[current[0]].id if current[0] >= 0 else None,
        step_after=after,
        status="reversed",
        proposed=None,
        reason=f"offence of run {run_id} reversed: {why}",
        listings=tuple(record["listings"]),
        rules=tuple(record["rules"]),
        evasion=bool(record["evasion"]),
        relist=bool(record["relist"]),
    )


def penalty_table(penalties: Sequence[Penalty]) -> pa.Table:
    now = datetime.now(UTC)
    return pa.Table.from_pylist(
        [
            {
                "seller_id": p.seller_id,
                "run_id": p.run_id,
                "offences": p.offences,
                "step_before": p.step_before,
                "step_after": p.step_after,
                "status": p.status,
                "proposed": p.proposed,
                "reason": p.reason,
                "listings": list(p.listings),
                "rules": list(p.rules),
                "evasion": p.evasion,
                "relist": p.relist,
                "at": now,
            }
            for p in penalties
        ],
        schema=PENALTY_SCHEMA,
    )

"""The review queue: one item per listing a run sent to review, decided by people.

A DynamoDB table (template.yaml's ReviewQueueTable), key item_id = "<policy>#<listing>". An item
waits in a lane until a reviewer claims it, and leaves the lanes once decided and applied:

    first      a run's review findings, for any reviewer
    second     a sampled share of first decisions, for a second reviewer (never the first)
    escalated  escalations and disagreements, for the second tier only
    decided    decided, waiting for the applier (review/apply.py)

The lanes are two sparse global secondary indexes (an item without `lane` is in neither):
`lane-oldest` orders a lane by the time an item was queued, `lane-priority` by its priority
(prohibited category, then the seller's past offences, then the score), oldest first within.

Every change is a conditional write on the item's `version`, which each change increments, in
the way Discourse's reviewables are claimed: two reviewers who ask at once for the same item
never both get it, a decision is taken only from the reviewer who holds the claim, and a claim
not decided within the policy's `review.claim_minutes` returns to the queue (the next claim may
take it over). Reviewers are named by pseudonymous ids only (`reviewer_id`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from catalogue_purge.detect.policy import CATEGORY_RULE_PREFIX, Policy
from catalogue_purge.errors import PurgeError


class Lane(StrEnum):
    FIRST = "first"
    SECOND = "second"
    ESCALATED = "escalated"
    DECIDED = "decided"


class State(StrEnum):
    WAITING = "WAITING"  # in a lane, unclaimed (or its claim expired)
    CLAIMED = "CLAIMED"
    DECIDED = "DECIDED"  # in the decided lane, for the applier
    APPLIED = "APPLIED"  # a review run applied the decision
    GONE = "GONE"  # the listing left the catalogue, or a run acted on it, before a decision
    CLEARED = "CLEARED"  # changed since, and the policy no longer sends it to review


class Decision(StrEnum):
    DELIST = "delist"
    KEEP = "keep"
    ESCALATE = "escalate"
    SKIP = "skip"


class Order(StrEnum):
    OLDEST = "oldest"
    PRIORITY = "priority"


INDEX = {Order.OLDEST: "lane-oldest", Order.PRIORITY: "lane-priority"}
SELLER_INDEX = "seller"
_REVIEWER = re.compile(r"^[a-z0-9][a-z0-9._-]{2,63}$")
DESCRIPTION_CHARS = 20_000  # the page reads the live description; the item keeps a copy


class QueueError(PurgeError):
    """A claim or a decision the queue refuses (the item moved on, or the request is wrong)."""

    exit_code = 4


class Conflict(QueueError):
    """The item is no longer as the request saw it: another reviewer or a run changed it."""


def reviewer_id(name: str) -> str:
    """A reviewer's id as manifests record it: a pseudonym, never a name or an address."""
    if not _REVIEWER.fullmatch(name):
        raise QueueError(
            f"reviewer id {name!r} is not a pseudonymous id (3-64 of a-z, 0-9, '.', '_', '-'; "
            "no names or e-mail addresses): manifests name reviewers by such ids only"
        )
    return name


def pseudonym(identity: str) -> str:
    """A stable pseudonymous id for a caller's identity (an IAM ARN): rv- and a hash."""
    return "rv-" + hashlib.sha256(identity.encode()).hexdigest()[:12]


def item_id(policy_id: str, listing_id: str) -> str:
    return f"{policy_id}#{listing_id}"


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _priority(prohibited: bool, offences: int, score: float | None) -> int:
    return (1000 if prohibited else 0) + 100 * min(offences, 9) + max(0, min(99, round(score or 0)))


def sampled(item_key: str, version: int, share: float) -> bool:
    """Whether a decision goes to a second reviewer: a stable draw per item and version."""
    digest = hashlib.sha256(f"{item_key}:{version}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


@dataclass(frozen=True)
class Candidate:
    """A review finding, as a run offers it to the queue."""

    listing_id: str
    seller_id: str
    country_of_sale: str
    category_path: str
    title: str
    updated_at: str  # the listing's version the run decided on ("" if unknown)
    rule_ids: tuple[str, ...]
    clauses: tuple[str, ...]
    matched_terms: tuple[str, ...]
    evidence: tuple[dict, ...]
    evasion: bool
    score: float | None = None
    description: str | None = None
    past_offences: int = 0

    @property
    def prohibited(self) -> bool:
        return any(r.startswith(CATEGORY_RULE_PREFIX) for r in self.rule_ids)


@dataclass
class Item:
    """A queue item as stored (see the module)."""

    item_id: str
    policy_id: str
    listing_id: str
    seller_id: str
    state: State
    version: int
    lane: Lane | None
    run_id: str
    enqueued_at: str
    updated_at: str
    title: str = ""
    description: str | None = None
    country_of_sale: str = ""
    category_path: str = ""
    rule_ids: list[str] = field(default_factory=list)
    clauses: list[str] = field(default_factory=list)
    matched_terms: list[str] = field(default_factory=list)
    evidence: list[dict] = field(default_factory=list)
    evasion: bool = False
    score: float | None = None
    priority: int = 0
    past_offences: int = 0
    claimed_by: str | None = None
    claim_expires: str | None = None
    decisions: list[dict] = field(default_factory=list)  # every decision, skips included
    final: dict | None = None  # the decision the applier acts on
    disputed: bool = False
    skipped_by: list[str] = field(default_factory=list)
    applying_run: str | None = None
    applied_run: str | None = None
    outcome: str | None = None
    history: list[dict] = field(default_factory=list)  # earlier versions' decisions, re-checks

    def claim_live(self, now: datetime) -> bool:
        return (
            self.state is State.CLAIMED
            and self.claim_expires is not None
            and self.claim_expires > _iso(now)
        )

    @classmethod
    def from_public(cls, values: dict) -> Item:
        """An item from its public() form (a review run's record of its members)."""
        lane = values.get("lane")
        return cls(
            **values
            | {
                "state": State(values["state"]),
                "lane": Lane(lane) if lane else None,
                "history": values.get("history", []),
            }
        )

    def public(self) -> dict:
        """The item as the reviewers' page and the exports show it."""
        return {
            k: (v.value if isinstance(v, StrEnum) else v)
            for k, v in self.__dict__.items()
            if k != "history"
        }


_SERIALIZER, _DESERIALIZER = TypeSerializer(), TypeDeserializer()
_JSON_FIELDS = ("evidence", "decisions", "final", "history")


def _stored(key: str, value: Any) -> Any:
    if key in _JSON_FIELDS:
        return json.dumps(value, ensure_ascii=False, default=str)
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, StrEnum):
        return value.value
    return value


def _to_dynamo(values: dict) -> dict:
    """Attributes as DynamoDB's types; a None value is left out (the attribute goes)."""
    return {
        key: _SERIALIZER.serialize(_stored(key, value))
        for key, value in values.items()
        if value is not None
    }


def _from_dynamo(raw: dict) -> Item:
    plain: dict[str, Any] = {k: _DESERIALIZER.deserialize(v) for k, v in raw.items()}
    for key in _JSON_FIELDS:
        if key in plain:
            plain[key] = json.loads(plain[key])
    for key in ("version", "priority", "past_offences"):
        plain[key] = int(plain.get(key, 0))
    if plain.get("score") is not None:
        plain["score"] = float(plain["score"])
    for key in ("rule_ids", "clauses", "matched_terms", "skipped_by"):
        plain[key] = list(plain.get(key) or [])
    known = set(Item.__dataclass_fields__)
    values = {k: v for k, v in plain.items() if k in known}
    values["state"] = State(values["state"])
    # stored as "<policy>#<lane>" (the index's partition)
    values["lane"] = Lane(values["lane"].rpartition("#")[2]) if values.get("lane") else None
    return Item(**values)


def _lane_keys(policy_id: str, lane: Lane, enqueued_at: str, priority: int, listing: str) -> dict:
    return {
        "lane": f"{policy_id}#{lane.value}",
        "oldest_key": f"{enqueued_at}#{listing}",
        "priority_key": f"{999_999 - priority:06d}#{enqueued_at}#{listing}",
    }


def _archived(item: Item, **why: str) -> list[dict]:
    """The item's history with its present version's decisions added (a re-check, or a
    decision sent back), and why they were set aside."""
    return [
        *item.history,
        {
            "updated_at": item.updated_at,
            "state": item.state.value,
            "decisions": item.decisions,
            "final": item.final,
            **why,
        },
    ]


@dataclass(frozen=True)
class Enqueued:
    queued: int = 0  # new items
    already: int = 0  # the same listing version was queued already (a re-sweep)
    rechecked: int = 0  # the listing changed since it was queued: back to the first lane
    left: dict[str, int] = field(default_factory=dict)  # items leaving the queue, by state


class ReviewQueue:
    """The queue table (see the module)."""

    def __init__(self, table: str, client: Any, policy: Policy):
        self.table, self.client, self.policy = table, client, policy
        self.review = policy.document.review

    # -- reading ------------------------------------------------------------------------------

    def get(self, listing_id: str) -> Item | None:
        answer = self.client.get_item(
            TableName=self.table,
            Key={"item_id": {"S": item_id(self.policy.id, listing_id)}},
            ConsistentRead=True,
        )
        raw = answer.get("Item")
        return None if raw is None else _from_dynamo(raw)

    def _get_many(self, listing_ids: Sequence[str]) -> dict[str, Item]:
        found: dict[str, Item] = {}
        for start in range(0, len(listing_ids), 100):  # BatchGetItem takes 100 keys at a time
            keys = [
                {"item_id": {"S": item_id(self.policy.id, i)}}
                for i in listing_ids[start : start + 100]
            ]
            pending: dict = {self.table: {"Keys": keys, "ConsistentRead": True}}
            while pending:
                answer = self.client.batch_get_item(RequestItems=pending)
                for raw in answer["Responses"].get(self.table, []):
                    item = _from_dynamo(raw)
                    found[item.listing_id] = item
                pending = answer.get("UnprocessedKeys") or {}
        return found

    def lane(
        self,
        lane: Lane,
        order: Order = Order.OLDEST,
        *,
        claimable_at: datetime | None = None,
        claimed_by: str | None = None,
    ) -> Iterator[Item]:
        """A lane's items in its order (claimed ones included). The index answers only those
        a claim may take at `claimable_at` (waiting, or their claim expired), or only the ones
        `claimed_by` holds: a long lane is not read whole for the next item."""
        values: dict[str, Any] = {":lane": {"S": f"{self.policy.id}#{lane.value}"}}
        query: dict[str, Any] = {}
        if claimable_at is not None:
            query["FilterExpression"] = "#s = :waiting OR (#s = :claimed AND claim_expires < :now)"
            values |= {
                ":waiting": {"S": State.WAITING.value},
                ":claimed": {"S": State.CLAIMED.value},
                ":now": {"S": _iso(claimable_at)},
            }
        elif claimed_by is not None:
            query["FilterExpression"] = "#s = :claimed AND claimed_by = :reviewer"
            values |= {":claimed": {"S": State.CLAIMED.value}, ":reviewer": {"S": claimed_by}}
        if query:
            query["ExpressionAttributeNames"] = {"#s": "state"}
        paginator = self.client.get_paginator("query")
        for page in paginator.paginate(
            TableName=self.table,
            IndexName=INDEX[order],
            KeyConditionExpression="lane = :lane",
            ExpressionAttributeValues=values,
            **query,
        ):
            for raw in page["Items"]:
                yield _from_dynamo(raw)

    def items(self) -> Iterator[Item]:
        """Every item of the policy, in the lanes or out of them (a scan)."""
        for page in self.client.get_paginator("scan").paginate(
            TableName=self.table,
            FilterExpression="policy_id = :p",
            ExpressionAttributeValues={":p": {"S": self.policy.id}},
            ConsistentRead=True,
        ):
            for raw in page["Items"]:
                yield _from_dynamo(raw)

    def of_seller(self, seller_id: str) -> list[Item]:
        answer = self.client.get_paginator("query").paginate(
            TableName=self.table,
            IndexName=SELLER_INDEX,
            KeyConditionExpression="seller_id = :s",
            ExpressionAttributeValues={":s": {"S": seller_id}},
        )
        return [
            item
            for page in answer
            for item in map(_from_dynamo, page["Items"])
            if item.policy_id == self.policy.id
        ]

    def counts(self) -> dict[str, int]:
        """Items by state, and waiting ones by lane."""
        tally: dict[str, int] = {}
        for item in self.items():
            tally[item.state.value] = tally.get(item.state.value, 0) + 1
            if item.lane is not None and item.state in (State.WAITING, State.CLAIMED):
                key = f"lane:{item.lane.value}"
                tally[key] = tally.get(key, 0) + 1
        return dict(sorted(tally.items()))

    # -- writing ------------------------------------------------------------------------------

    def _update(
        self, item: Item, changes: dict, remove: Iterable[str] = (), **condition: Any
    ) -> Item:
        """Apply `changes` to the item, conditioned on its version (and `condition`: attribute
        name -> the value it must have); the item as it is now. Conflict if it moved on."""
        names: dict[str, str] = {}
        values: dict[str, Any] = {}
        sets, removes = [], []
        changes = {**changes, "version": item.version + 1}
        encoded = _to_dynamo(changes)
        dropped = [k for k in changes if k not in encoded]  # None: the attribute goes
        for index, key in enumerate(encoded):
            names[f"#a{index}"] = key
            values[f":a{index}"] = encoded[key]
            sets.append(f"#a{index} = :a{index}")
        for index, key in enumerate(dict.fromkeys([*remove, *dropped])):
            if key in encoded:
                continue
            names[f"#r{index}"] = key
            removes.append(f"#r{index}")
        names["#version"] = "version"
        values[":expected"] = {"N": str(item.version)}
        conditions = ["#version = :expected"]
        for index, (key, value) in enumerate(condition.items()):
            names[f"#c{index}"] = key
            values[f":c{index}"] = _to_dynamo({key: value})[key]
            conditions.append(f"#c{index} = :c{index}")
        expression = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
        try:
            answer = self.client.update_item(
                TableName=self.table,
                Key={"item_id": {"S": item.item_id}},
                UpdateExpression=expression,
                ConditionExpression=" AND ".join(conditions),
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            raise Conflict(
                f"listing {item.listing_id} changed in the queue since version {item.version} "
                "(another reviewer or a run moved it on): load it again"
            ) from None
        return _from_dynamo(answer["Attributes"])

    def _new_item(self, candidate: Candidate, run_id: str, now: datetime) -> dict:
        enqueued = _iso(now)
        priority = _priority(candidate.prohibited, candidate.past_offences, candidate.score)
        description = candidate.description
        if description is not None:
            description = description[:DESCRIPTION_CHARS]
        return {
            "item_id": item_id(self.policy.id, candidate.listing_id),
            "policy_id": self.policy.id,
            "listing_id": candidate.listing_id,
            "seller_id": candidate.seller_id,
            "state": State.WAITING,
            "version": 1,
            "run_id": run_id,
            "enqueued_at": enqueued,
            "updated_at": candidate.updated_at,
            "title": candidate.title,
            "description": description,
            "country_of_sale": candidate.country_of_sale,
            "category_path": candidate.category_path,
            "rule_ids": list(candidate.rule_ids),
            "clauses": list(candidate.clauses),
            "matched_terms": list(candidate.matched_terms),
            "evidence": list(candidate.evidence),
            "evasion": candidate.evasion,
            "score": candidate.score,
            "priority": priority,
            "past_offences": candidate.past_offences,
            "decisions": [],
            "history": [],
            **_lane_keys(self.policy.id, Lane.FIRST, enqueued, priority, candidate.listing_id),
        }

    def enqueue(
        self,
        candidates: Sequence[Candidate],
        run_id: str,
        *,
        gone: dict[str, str] | None = None,
        cleared: Sequence[str] = (),
    ) -> Enqueued:
        """A run's review findings into the queue. A listing queued already in the same version
        is left as it is (a re-sweep does not queue it twice); one that changed since is
        re-checked: back to the first lane with its new content, its earlier decisions kept in
        its history. `gone` (listing -> why) and `cleared` are queued listings that left the
        catalogue or that a run acted on, and changed listings the policy no longer sends to
        review: they leave the lanes as such."""
        now = _now()
        existing = self._get_many([c.listing_id for c in candidates])
        queued = already = rechecked = 0
        for candidate in candidates:
            item = existing.get(candidate.listing_id)
            if item is None:
                try:
                    self.client.put_item(
                        TableName=self.table,
                        Item=_to_dynamo(self._new_item(candidate, run_id, now)),
                        ConditionExpression="attribute_not_exists(item_id)",
                    )
                    queued += 1
                except self.client.exceptions.ConditionalCheckFailedException:
                    already += 1  # a repeated delivery of the same step queued it first
                continue
            if item.updated_at == candidate.updated_at or item.applying_run:
                # The same version (decided or not), or one being applied: the applier's
                # conditional write sees a change and sends it back itself.
                already += 1
                continue
            fresh = self._new_item(candidate, run_id, now)
            fresh.pop("item_id")
            fresh.pop("version")  # _update moves it on
            fresh["history"] = _archived(item, rechecked_at=_iso(now), by_run=run_id)
            self._update(
                item,
                fresh,
                remove=("claimed_by", "claim_expires", "final", "skipped_by", "outcome"),
            )
            rechecked += 1
        left: dict[str, int] = {}
        leaving = {**dict.fromkeys(cleared, ""), **(gone or {})}
        for listing, item in self._get_many(sorted(leaving)).items():
            if item.state not in (State.WAITING, State.CLAIMED) or item.applying_run:
                continue
            state = (
                State.CLEARED if listing in cleared and listing not in (gone or {}) else State.GONE
            )
            self._update(
                item,
                {
                    "state": state,
                    "outcome": leaving[listing]
                    or "changed; the policy no longer sends it to review",
                    "run_id": run_id,
                },
                remove=("lane", "oldest_key", "priority_key", "claimed_by", "claim_expires"),
            )
            left[state.value] = left.get(state.value, 0) + 1
        return Enqueued(queued, already, rechecked, left)

    def waiting(self) -> list[Item]:
        """The items in the first, second and escalated lanes."""
        return [
            item
            for lane in (Lane.FIRST, Lane.SECOND, Lane.ESCALATED)
            for item in self.lane(lane)
            if item.state in (State.WAITING, State.CLAIMED)
        ]

    # -- claiming -----------------------------------------------------------------------------

    def _lanes_for(self, tier: int) -> tuple[Lane, ...]:
        if tier not in (1, 2):
            raise QueueError(f"tier {tier}: reviewers are of tier 1 or 2")
        # The second tier decides escalations first, then helps with the rest.
        if tier == 2:
            return (Lane.ESCALATED, Lane.SECOND, Lane.FIRST)
        return (Lane.SECOND, Lane.FIRST)

    def _claimable(self, item: Item, reviewer: str, now: datetime) -> bool:
        if item.state is State.CLAIMED and item.claim_live(now):
            return False
        if item.state not in (State.WAITING, State.CLAIMED):
            return False
        if reviewer in item.skipped_by:
            return False
        # A second review is never by a reviewer who decided the item before.
        return not (
            item.lane is Lane.SECOND and reviewer in {d["reviewer"] for d in item.decisions}
        )

    def claimed_by(self, reviewer: str, tier: int = 1) -> list[Item]:
        """The reviewer's claims still in force (a reload shows them again)."""
        now = _now()
        return [
            item
            for lane in self._lanes_for(tier)
            for item in self.lane(lane, claimed_by=reviewer)
            if item.claim_live(now)
        ]

    def claim(
        self,
        reviewer: str,
        *,
        tier: int = 1,
        count: int = 1,
        order: Order = Order.OLDEST,
        minutes: int | None = None,
    ) -> list[Item]:
        """The next `count` items for the reviewer (its claims in force first), each claimed by
        a conditional write: an item another reviewer claimed first is passed over."""
        reviewer = reviewer_id(reviewer)
        now = _now()
        lease = timedelta(minutes=minutes or self.review.claim_minutes)
        got = self.claimed_by(reviewer, tier)[:count]
        for lane in self._lanes_for(tier):
            if len(got) >= count:
                break
            for item in self.lane(lane, order, claimable_at=now):
                if len(got) >= count:
                    break
                if not self._claimable(item, reviewer, now):
                    continue
                try:
                    got.append(
                        self._update(
                            item,
                            {
                                "state": State.CLAIMED,
                                "claimed_by": reviewer,
                                "claim_expires": _iso(now + lease),
                            },
                        )
                    )
                except Conflict:
                    continue  # another reviewer was first
        return got

    def release(self, listing_id: str, reviewer: str, version: int) -> Item:
        """Give a claim back without deciding."""
        item = self._held(listing_id, reviewer, version)
        return self._update(item, {"state": State.WAITING}, remove=("claimed_by", "claim_expires"))

    def _held(self, listing_id: str, reviewer: str, version: int) -> Item:
        item = self.get(listing_id)
        if item is None:
            raise QueueError(f"listing {listing_id} is not in the review queue of {self.policy.id}")
        if item.version != version:
            raise Conflict(
                f"listing {listing_id} is at version {item.version} in the queue, not {version}: "
                "another reviewer or a run changed it since; load it again"
            )
        if item.state is not State.CLAIMED or item.claimed_by != reviewer:
            holder = f"claimed by {item.claimed_by}" if item.state is State.CLAIMED else item.state
            raise Conflict(
                f"listing {listing_id} is not claimed by {reviewer} ({holder}): claim it first"
            )
        if not item.claim_live(_now()):
            raise Conflict(
                f"the claim of {reviewer} on listing {listing_id} expired at {item.claim_expires}"
                ": claim it again"
            )
        return item

    # -- deciding -----------------------------------------------------------------------------

    def decide(
        self,
        listing_id: str,
        *,
        reviewer: str,
        version: int,
        decision: str,
        reason: str,
        tier: int = 1,
        rules: Sequence[str] = (),
        evasion: bool | None = None,
        exemption_expires: str | None = None,
        account_step: str | None = None,
        source: str = "page",
    ) -> Item:
        """A reviewer's decision on an item the reviewer holds (see the module for the lanes it
        moves to). Every decision needs its reason; a delisting the rules it cites."""
        reviewer = reviewer_id(reviewer)
        try:
            chosen = Decision(decision)
        except ValueError:
            raise QueueError(
                f"decision {decision!r} is not one of {', '.join(d.value for d in Decision)}"
            ) from None
        if not reason or not reason.strip():
            raise QueueError(f"listing {listing_id}: a {chosen.value} decision needs its reason")
        item = self._held(listing_id, reviewer, version)
        cited = self._checked(item, chosen, rules, exemption_expires)
        if account_step:
            self._check_account_step(item, chosen, tier, account_step)
        if item.lane is Lane.ESCALATED and tier != 2:
            raise QueueError(f"listing {listing_id} is escalated: the second tier decides it")
        if chosen is Decision.ESCALATE and tier == 2:
            raise QueueError("the second tier decides escalations; it does not escalate them")
        now = _now()
        record = {
            "reviewer": reviewer,
            "tier": tier,
            "lane": item.lane.value if item.lane else None,
            "decision": chosen.value,
            "reason": reason.strip(),
            "rules": cited,
            "clauses": self._clauses(cited),
            "evasion": item.evasion if evasion is None else evasion,
            "exemption_expires": exemption_expires,
            "account_step": account_step or None,
            "at": _iso(now),
            "source": source,
        }
        decisions = [*item.decisions, record]
        release = ("claimed_by", "claim_expires")
        if chosen is Decision.SKIP:
            return self._update(
                item,
                {
                    "state": State.WAITING,
                    "decisions": decisions,
                    "skipped_by": sorted({*item.skipped_by, reviewer}),
                },
                remove=release,
            )
        if chosen is Decision.ESCALATE:
            return self._move(item, Lane.ESCALATED, decisions, release)
        if item.lane is Lane.SECOND:
            first = next(d for d in reversed(item.decisions) if d["lane"] == Lane.FIRST.value)
            if first["decision"] != chosen.value:
                return self._move(item, Lane.ESCALATED, decisions, release, disputed=True)
            return self._decided(item, record, decisions, release, agreed=True)
        if item.lane is Lane.FIRST and sampled(
            item.item_id, item.version, self.review.second_review_share
        ):
            return self._move(item, Lane.SECOND, decisions, release)
        return self._decided(item, record, decisions, release)

    def _checked(
        self, item: Item, chosen: Decision, rules: Sequence[str], exemption_expires: str | None
    ) -> list[str]:
        """The rules a decision cites, checked with its exemption (QueueError names why)."""
        listing_id = item.listing_id
        known = {r.id for r in self.policy.document.rules} | set(item.rule_ids)
        cited = list(dict.fromkeys(rules))
        unknown = [r for r in cited if r not in known]
        if unknown:
            raise QueueError(
                f"listing {listing_id}: {', '.join(unknown)} is not a rule of {self.policy.id} "
                "(nor one the listing was found under)"
            )
        if chosen is Decision.DELIST and not cited:
            raise QueueError(f"listing {listing_id}: a delisting cites the rules it applies")
        if exemption_expires and chosen is not Decision.KEEP:
            raise QueueError(f"listing {listing_id}: only a keep decision grants an exemption")
        if exemption_expires:
            try:
                expires = datetime.strptime(exemption_expires, "%Y-%m-%d").replace(tzinfo=UTC)
            except ValueError:
                raise QueueError(
                    f"listing {listing_id}: exemption expiry {exemption_expires!r} is not a "
                    "date (YYYY-MM-DD)"
                ) from None
            if expires.date() < _now().date():
                raise QueueError(
                    f"listing {listing_id}: exemption expiry {exemption_expires} is in the past "
                    "(an exemption is granted today)"
                )
        return cited

    def _check_account_step(self, item: Item, chosen: Decision, tier: int, step: str) -> None:
        """An account-level penalty: the second tier's alone, on a delisting, a ladder step."""
        steps = [s.id for s in self.policy.document.penalties.ladder]
        if tier != 2:
            raise QueueError(
                f"listing {item.listing_id}: only the second tier decides account-level "
                "penalties (escalate it)"
            )
        if chosen is not Decision.DELIST:
            raise QueueError(f"listing {item.listing_id}: a penalty goes with a delisting")
        if step not in steps:
            raise QueueError(
                f"listing {item.listing_id}: {step!r} is not a step of the ladder "
                f"({', '.join(steps)})"
            )

    def _clauses(self, rules: Sequence[str]) -> list[str]:
        by_rule = self.policy.clauses()
        return sorted({by_rule[r] for r in rules if r in by_rule})

    def _move(
        self,
        item: Item,
        lane: Lane,
        decisions: list[dict],
        release: Sequence[str],
        disputed: bool = False,
    ) -> Item:
        keys = _lane_keys(self.policy.id, lane, item.enqueued_at, item.priority, item.listing_id)
        return self._update(
            item,
            {"state": State.WAITING, "decisions": decisions, "disputed": disputed or item.disputed}
            | keys,
            remove=release,
        )

    def _decided(
        self,
        item: Item,
        record: dict,
        decisions: list[dict],
        release: Sequence[str],
        agreed: bool = False,
    ) -> Item:
        final = record | {
            "second_review": agreed,
            "first_reviewer": decisions[0]["reviewer"] if agreed else None,
            "disputed": item.disputed,
            "escalated": item.lane is Lane.ESCALATED,
        }
        keys = _lane_keys(
            self.policy.id, Lane.DECIDED, item.enqueued_at, item.priority, item.listing_id
        )
        return self._update(
            item,
            {"state": State.DECIDED, "decisions": decisions, "final": final} | keys,
            remove=release,
        )

    # -- applying (review/apply.py) -----------------------------------------------------------

    def decided(self) -> list[Item]:
        return [i for i in self.lane(Lane.DECIDED) if i.state is State.DECIDED]

    def mark_applying(self, item: Item, run_id: str) -> Item | None:
        """Reserve a decided item for a review run; None if it moved on meanwhile."""
        if item.applying_run == run_id:
            return item
        try:
            return self._update(item, {"applying_run": run_id}, state=State.DECIDED)
        except Conflict:
            return None

    def mark_applied(self, item: Item, run_id: str, outcome: str) -> Item:
        return self._update(
            item,
            {"state": State.APPLIED, "applied_run": run_id, "outcome": outcome},
            remove=("lane", "oldest_key", "priority_key", "applying_run"),
        )

    def send_back(
        self,
        item: Item,
        *,
        run_id: str,
        why: str,
        updated_at: str | None = None,
        title: str | None = None,
        description: str | None = None,
    ) -> Item:
        """A decision the applier could not act on (the listing changed since it was decided,
        or the write failed): the item returns to the first lane for a person to decide again,
        its decisions kept in its history."""
        now = _now()
        keys = _lane_keys(
            self.policy.id, Lane.FIRST, item.enqueued_at, item.priority, item.listing_id
        )
        changes: dict[str, Any] = {
            "state": State.WAITING,
            "decisions": [],
            "history": _archived(item, sent_back_at=_iso(now), by_run=run_id, why=why),
            "disputed": False,
        } | keys
        if updated_at is not None:
            changes["updated_at"] = updated_at
        if title is not None:
            changes["title"] = title
        if description is not None:
            changes["description"] = description[:DESCRIPTION_CHARS]
        return self._update(
            item,
            changes,
            remove=("applying_run", "final", "skipped_by", "claimed_by", "claim_expires"),
        )

    def release_applying(self, item: Item) -> Item:
        """A decision left to the next review run (its write failed): it stays decided."""
        return self._update(item, {}, remove=("applying_run",))

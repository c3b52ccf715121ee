"""The typed events of the Lambda functions: the same models parse the live event, the samples
in events/ and the state machine's payload."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

RUN_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$"  # a Step Functions execution name, a path segment
SHA256 = r"^[0-9a-f]{64}$"


class StartRun(BaseModel):
    """What starts a run: the state machine's input, sent by the schedules (as_of is the
    schedule's time) or by hand. It is also the PlanRun function's event."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    policy_id: str = Field(min_length=1, pattern=r"^[a-z0-9][a-z0-9-]*$")
    snapshot_uri: str = Field(pattern=r"^s3://[^/]+/.*$")
    as_of: AwareDatetime
    kind: str = Field(default="purge", pattern=r"^(purge|re-sweep)$")
    run_id: str | None = Field(
        default=None,
        pattern=RUN_ID,
        description="by default derived from the kind and as_of, so a schedule delivered "
        "twice names the same run and acts once",
    )
    columns: dict[str, str] = Field(default_factory=dict, description="contract -> source")
    scope: str = Field(
        default="auto",
        pattern=r"^(auto|full|changed)$",
        description="changed: only listings updated since the policy's last complete run; "
        "auto: changed for a re-sweep, full for a purge",
    )
    dry_run: bool = False
    approve: str | None = Field(default=None, pattern=SHA256)
    rows_per_shard: int = Field(default=10_000_000, gt=0)
    batch_size: int = Field(default=10_000, gt=0, le=10_000)

    def resolved_run_id(self) -> str:
        """The run's id: given, or the kind and the as-of time (a dry run apart from the run
        it rehearses, which it must not open first)."""
        derived = f"{self.kind}-{self.as_of.astimezone(UTC):%Y%m%dT%H%M%SZ}"
        return self.run_id or (f"{derived}-dry-run" if self.dry_run else derived)


class Items(BaseModel):
    """Where a Distributed Map reads its items (a JSON array in S3)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bucket: str
    key: str
    count: int = Field(ge=0)


class RunPlan(BaseModel):
    """PlanRun's result: the run opened, its shards listed for Map(sweep)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: str = Field(pattern=RUN_ID)
    policy_id: str
    policy_sha256: str = Field(pattern=SHA256)
    kind: str
    as_of: datetime
    acting: bool
    rows: int
    scope: dict
    sweep_uri: str
    runs_uri: str
    shards: Items
    dry_run: bool
    approve: str | None
    batch_size: int


class Shard(BaseModel):
    """Row groups [first, last) of one snapshot file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    index: int = Field(ge=0)
    path: str = Field(min_length=1, description="s3://bucket/key of the Parquet file")
    first_row_group: int = Field(ge=0)
    last_row_group: int = Field(gt=0)
    rows: int = Field(ge=0)


class SweepShard(BaseModel):
    """One Map(sweep) iteration."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: str = Field(pattern=RUN_ID)
    sweep_uri: str = Field(min_length=1)
    shard: Shard


class ShardSwept(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run_id: str
    index: int
    rows: int
    candidates: int
    findings: int
    seconds: float
    quarantined: dict[str, int] = Field(default_factory=dict, description="set aside, by reason")


class CloseSweep(BaseModel):
    """After Map(sweep): merge the shards' findings, record the plan, list the delist batches."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: str = Field(pattern=RUN_ID)
    sweep_uri: str = Field(min_length=1)
    runs_uri: str = Field(min_length=1)
    dry_run: bool = False
    approve: str | None = Field(default=None, pattern=SHA256)
    batch_size: int = Field(default=10_000, gt=0, le=10_000)


class SweepClosed(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run_id: str
    findings: int
    planned: int
    plan_sha256: str
    held: bool = Field(description="the plan breaks the policy's safety limits, unapproved")
    reason: str = ""
    batches: Items


class DelistBatch(BaseModel):
    """One Map iteration of the delisting: a slice of a run's plan."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: str = Field(min_length=1)
    sweep_uri: str = Field(min_length=1, description="the sweep's folder: s3://bucket/prefix")
    runs_uri: str = Field(min_length=1, description="where runs record intents and outcomes")
    table: str = Field(min_length=1, description="the listings table")
    batch_index: int = Field(ge=0)
    batch_size: int = Field(gt=0, le=10_000)
    approve: str | None = Field(default=None, pattern=SHA256)
    dry_run: bool = False


class DelistBatchResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run_id: str
    batch_index: int
    plan_sha256: str
    planned: int
    outcomes: dict[str, int]
    failed: int
    dry_run: bool


class FinalizeRun(BaseModel):
    """The state machine's last step: the run's manifest."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: str = Field(min_length=1)
    sweep_uri: str = Field(min_length=1)
    runs_uri: str = Field(min_length=1)
    kind: str = Field(default="purge", pattern=r"^(purge|re-sweep|reinstatement)$")


class ApplyPenalties(BaseModel):
    """After Map(delist): the run's offences into the seller ledger, up the penalty ladder."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: str = Field(pattern=RUN_ID)
    sweep_uri: str = Field(min_length=1)
    runs_uri: str = Field(min_length=1)


class PenaltiesApplied(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run_id: str
    applied: bool
    reason: str
    sellers: int
    by_status: dict[str, int]


class SendNotices(BaseModel):
    """Each seller's statement of reasons, one event per seller, to the notices bus."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: str = Field(pattern=RUN_ID)
    sweep_uri: str = Field(min_length=1)
    runs_uri: str = Field(min_length=1)
    manifest: str | None = Field(default=None, description="the run's manifest folder")


class NoticesSent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run_id: str
    sellers: int
    sent: int
    already_sent: int


class RunFinalized(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run_id: str
    manifest: str = Field(description="the run's manifest folder")
    counts: dict
    parts: int


class QueueReviews(BaseModel):
    """A run's review findings into the review queue (after its manifest)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: str = Field(pattern=RUN_ID)
    sweep_uri: str = Field(min_length=1)
    runs_uri: str = Field(min_length=1)


class ReviewsQueued(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run_id: str
    queued: int
    already: int
    rechecked: int
    left: dict[str, int]
    waiting: int = Field(description="items in the queue's lanes after this step")


class ApplyReviews(BaseModel):
    """What the applier's schedule sends: apply the decided items of a policy's queue as one
    review run (as_of: the schedule's time; a delivery repeated finds nothing new or resumes
    the same batch)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    policy_id: str = Field(min_length=1, pattern=r"^[a-z0-9][a-z0-9-]*$")
    as_of: AwareDatetime | None = None
    dry_run: bool = False
    limit: int = Field(default=10_000, gt=0, le=100_000)


class ReviewsApplied(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run_id: str | None = Field(description="None: no decision waited to be applied")
    outcomes: dict[str, int]
    penalties: dict[str, int]
    manifest: str | None
    dry_run: bool
    resumed: bool
    sent_back: int


class ManifestAccessRequest(BaseModel):
    """What an auditor asks the ManifestAccess function (query string of the Function URL):
    the runs of a policy, or download links for one run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    policy_id: str | None = None
    run_id: str | None = None


# Every function of template.yaml: the model of its event and of its result. The state
# machine's payloads are checked against these (tests/test_template.py), and the sample of each
# is events/<name>.json.
FUNCTIONS: dict[str, tuple[type[BaseModel], type[BaseModel] | None, str]] = {
    "PlanRunFunction": (StartRun, RunPlan, "plan-run"),
    "SweepShardFunction": (SweepShard, ShardSwept, "sweep-shard"),
    "CloseSweepFunction": (CloseSweep, SweepClosed, "close-sweep"),
    "DelistFunction": (DelistBatch, DelistBatchResult, "delist-batch"),
    "PenaltiesFunction": (ApplyPenalties, PenaltiesApplied, "apply-penalties"),
    "NoticesFunction": (SendNotices, NoticesSent, "send-notices"),
    "FinalizeRunFunction": (FinalizeRun, RunFinalized, "finalize-run"),
    "QueueReviewsFunction": (QueueReviews, ReviewsQueued, "queue-reviews"),
    "ApplyReviewsFunction": (ApplyReviews, ReviewsApplied, "apply-reviews"),
    # An HTTP request of the Function URL; the model parses its query string.
    "ManifestAccessFunction": (ManifestAccessRequest, None, "manifest-access"),
}

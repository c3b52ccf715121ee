"""The typed events of the Lambda functions: the same models parse the live event, the samples
in events/ and the state machine's payload."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class DelistBatch(BaseModel):
    """One Map iteration of the delisting: a slice of a run's plan."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: str = Field(min_length=1)
    sweep_uri: str = Field(min_length=1, description="the sweep's folder: s3://bucket/prefix")
    runs_uri: str = Field(min_length=1, description="where runs record intents and outcomes")
    table: str = Field(min_length=1, description="the listings table")
    batch_index: int = Field(ge=0)
    batch_size: int = Field(gt=0, le=10_000)
    approve: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
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


class ManifestAccessRequest(BaseModel):
    """What an auditor asks the ManifestAccess function (query string of the Function URL):
    the runs of a policy, or download links for one run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    policy_id: str | None = None
    run_id: str | None = None

"""The few domain errors of catalogue-purge, each mapped to an exit code in one place (cli)."""

from __future__ import annotations


class PurgeError(Exception):
    """Base class: a problem the user can fix, reported without a traceback."""

    exit_code = 1


class PolicyError(PurgeError):
    """A policy or exemptions file is malformed: names the file, the key and what is wrong."""

    exit_code = 2

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid policy file {path}:\n{lines}")


class SnapshotError(PurgeError):
    """A snapshot cannot be read as the Snapshot contract: names the file and the column."""

    exit_code = 3


class PlanMismatch(PurgeError):
    """A run already recorded a different plan, or the plan is not the approved one."""

    exit_code = 4


class SafetyLimitExceeded(PurgeError):
    """An unapproved run would act on more than the policy's safety limits allow."""

    exit_code = 5


class OutcomesFailed(PurgeError):
    """Some of a run's outcomes are FAILED: the run can be resumed to retry them."""

    exit_code = 6

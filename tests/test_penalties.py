"""The penalty ladder and the seller ledger (DynamoDB on moto's server)."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest

from catalogue_purge.detect.policy import load_policy
from catalogue_purge.enforce.penalties import (
    NO_STEP,
    DynamoAccounts,
    InMemoryAccounts,
    Ledger,
    Offence,
    applicable,
    next_step,
    penalise,
    reverse,
)
from catalogue_purge.job.stack import Stack, create_table, load_template

from .conftest import SHIPPED_POLICY

PENALTIES = load_policy(SHIPPED_POLICY).document.penalties
LADDER = [step.id for step in PENALTIES.ladder]


def offence(run: str, seller: str = "S", evasion: bool = False, relist: bool = False) -> Offence:
    return Offence(
        seller, "crypto-mining-2021", run, ("L-1",), ("asic-miner-brands",), evasion, relist
    )


@pytest.mark.parametrize(
    ("before", "evasion", "relist", "after"),
    [
        (NO_STEP, False, False, "warning"),
        (NO_STEP, True, False, "store-blocked"),  # an evasion jumps two steps
        (NO_STEP, False, True, "warning"),  # a relist jumps only after a warning
        (0, False, True, "account-frozen"),  # warning + relist -> two steps
        (0, False, False, "store-blocked"),
        (2, True, True, "account-closed"),  # the top, never beyond
        (3, False, False, "account-closed"),
    ],
)
def test_the_ladder(before, evasion, relist, after):
    assert (
        LADDER[next_step(before, offence("r", evasion=evasion, relist=relist), PENALTIES)] == after
    )


def test_closing_an_account_is_proposed_not_applied():
    wanted = next_step(2, offence("r"), PENALTIES)
    assert LADDER[wanted] == "account-closed"
    assert LADDER[applicable(2, wanted, PENALTIES)] == "account-frozen"


def template_table(logical_id: str, prefix: str) -> tuple[str, object]:
    """One of the template's tables on moto's server, under a fresh name."""
    client = boto3.client("dynamodb")
    name = create_table(
        client, Stack("t", load_template()), logical_id, name=f"{prefix}-{uuid.uuid4().hex[:6]}"
    )
    return name, client


@pytest.fixture
def ledger(aws):
    return Ledger(*template_table("SellerLedgerTable", "ledger"))


def test_once_per_run_and_concurrent_runs_both_count(ledger):
    accounts = InMemoryAccounts()
    first = penalise(offence("run-1"), PENALTIES, ledger, accounts)
    again = penalise(offence("run-1"), PENALTIES, ledger, accounts)
    assert first == again  # the same run: the recorded penalty, not a second step
    assert ledger.state("S", "crypto-mining-2021")[:2] == (0, 1)

    # Two runs penalising the same seller at once: both offences count, one step each.
    with ThreadPoolExecutor(2) as pool:
        done = list(
            pool.map(
                lambda r: penalise(offence(r), PENALTIES, ledger, accounts), ["run-2", "run-3"]
            )
        )
    assert sorted(p.step_after for p in done) == ["account-frozen", "store-blocked"]
    assert ledger.state("S", "crypto-mining-2021")[:2] == (2, 3)
    # The account ends at the ledger's step, whichever run's call reached it last.
    assert accounts.steps[("S", "crypto-mining-2021")] == "account-frozen"


def test_a_repeated_earlier_run_leaves_the_account_at_the_ledgers_step(ledger):
    accounts = InMemoryAccounts()
    penalise(offence("run-1"), PENALTIES, ledger, accounts)  # warning
    penalise(offence("run-2"), PENALTIES, ledger, accounts)  # store-blocked
    again = penalise(offence("run-1"), PENALTIES, ledger, accounts)
    assert again.step_after == "warning"  # what run-1 did, as recorded
    assert accounts.steps[("S", "crypto-mining-2021")] == "store-blocked"


@pytest.fixture
def accounts_table(aws):
    return DynamoAccounts(*template_table("SellerAccountsTable", "accounts"))


@pytest.mark.parametrize("service", ["memory", "dynamodb"])
def test_the_account_keeps_the_step_of_the_latest_ledger_state(service, request):
    accounts = (
        InMemoryAccounts() if service == "memory" else request.getfixturevalue("accounts_table")
    )

    def step() -> str | None:
        if isinstance(accounts, InMemoryAccounts):
            return accounts.steps[("S", "p")]
        item = accounts.client.get_item(TableName=accounts.table, Key={"seller_id": {"S": "S"}})
        return item["Item"]["penalties"]["M"]["p"]["M"]["step"]["S"]

    accounts.set_step("S", "p", "account-frozen", "run-3", "why", version=3)
    accounts.set_step("S", "p", "store-blocked", "run-2", "why", version=2)  # arrives late
    assert step() == "account-frozen"
    accounts.set_step("S", "p", "warning", "re-1", "reversed", version=4)
    assert step() == "warning"


def test_a_reversal_replays_the_offences_that_remain(ledger):
    accounts = InMemoryAccounts()
    penalise(offence("run-1", evasion=True), PENALTIES, ledger, accounts)  # store-blocked
    penalise(offence("run-2"), PENALTIES, ledger, accounts)  # account-frozen
    undone = reverse(
        "S",
        "crypto-mining-2021",
        "run-1",
        "wrong category rule",
        penalties=PENALTIES,
        ledger=ledger,
        accounts=accounts,
        reinstatement_id="re-1",
    )
    # Left: run-2's offence alone, a first offence: a warning.
    assert (undone.step_before, undone.step_after) == ("account-frozen", "warning")
    assert accounts.steps[("S", "crypto-mining-2021")] == "warning"
    assert [o["reversed"] for o in ledger.offences("S", "crypto-mining-2021")] == [True, False]

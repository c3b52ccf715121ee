"""DSA statements of reasons from a verified run folder, validated against the API's schema."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from importlib import resources

import jsonschema

from catalogue_purge.cli import main
from catalogue_purge.record.audit import download_run
from catalogue_purge.record.dsa import BATCH, statements, write_batches

from .conftest import SHIPPED_POLICY
from .test_review_apply import apply, decide_all, world  # noqa: F401 - the fixture

SCHEMA = json.loads(
    resources.files("catalogue_purge.record").joinpath("dsa-statement.json").read_text("utf-8")
)


def ladder(policy) -> list[dict]:
    return [s.model_dump() for s in policy.document.penalties.ladder]


def review_run_folder(world, tmp_path, countries: dict[str, str] | None = None):  # noqa: F811
    from dataclasses import replace

    catalogue = world["catalogue"]
    for listing, country in (countries or {}).items():
        catalogue.listings[listing] = replace(catalogue.listings[listing], country_of_sale=country)
    queue = world["queue"]
    for item in queue.waiting():  # the queue keeps the country the run found
        if item.listing_id in (countries or {}):
            queue._update(item, {"country_of_sale": countries[item.listing_id]})
    decide_all(queue, {"L-1": "delist", "L-2": "keep", "L-3": "delist", "L-4": "delist"})
    done = apply(world, as_of=datetime(2021, 10, 20, tzinfo=UTC))
    return download_run(done.manifest, tmp_path / "download"), done


def test_a_review_runs_statements_validate_and_say_a_person_decided(world, tmp_path):  # noqa: F811
    folder, done = review_run_folder(world, tmp_path, {"L-3": "US"})
    found, left = statements(folder, ladder(world["queue"].policy))
    listings = [s for s in found if "decision_visibility" in s]
    # L-1 and L-4 delisted in DE; L-3 sold in the US; L-2 kept.
    assert sorted(s["puid"] for s in listings) == [f"{done.run_id}-L-1", f"{done.run_id}-L-4"]
    # S-0's first offence is a warning, which restricts nothing.
    assert left == {
        "not delisted (KEPT)": 1,
        "penalty applied warning: no restriction": 1,
        "sold outside the EU/EEA": 1,
    }
    for statement in listings:
        assert statement["automated_decision"] == "AUTOMATED_DECISION_PARTIALLY"
        assert statement["territorial_scope"] == ["DE"]
        assert statement["decision_visibility"] == ["DECISION_VISIBILITY_CONTENT_DISABLED"]
    # S-1's offence (L-1 an evasion) moved it two steps: its store blocked for 30 days.
    [penalty] = [s for s in found if "decision_provision" in s]
    assert penalty["decision_provision"] == "DECISION_PROVISION_PARTIAL_SUSPENSION"
    applied = datetime.fromisoformat(penalty["application_date"])
    ends = datetime.fromisoformat(penalty["end_date_service_restriction"])
    assert (ends - applied).days == 30
    text = json.dumps(found)
    assert "S-1" not in text and "rv-anna" not in text and "seen the photos" not in text
    jsonschema.validate({"statements": found}, SCHEMA)


def test_batches_of_at_most_a_hundred(tmp_path):
    one = {"puid": "x"}
    lines = write_batches(
        [one | {"puid": f"p{n}"} for n in range(BATCH * 2 + 1)], tmp_path / "o.jsonl"
    )
    bodies = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert lines == 3 and [len(b["statements"]) for b in bodies] == [100, 100, 1]


def test_audit_dsa_writes_only_for_a_run_that_verifies(world, tmp_path, capsys):  # noqa: F811
    folder, _ = review_run_folder(world, tmp_path)
    key = tmp_path / "key.pem"
    key.write_bytes(world["public_key"])
    to = tmp_path / "dsa.jsonl"
    base = ["audit", "dsa", str(folder), "--policy", str(SHIPPED_POLICY), "--to", str(to)]
    assert main(base) == 1  # no trusted key: nothing written
    assert "pin" in capsys.readouterr().err.lower() and not to.exists()
    # Another policy than the one the run applied: refused.
    other = tmp_path / "crypto-mining-2021.yaml"
    other.write_text(SHIPPED_POLICY.read_text().replace("claim_minutes: 30", "claim_minutes: 45"))
    assert main([*base[:4], str(other), *base[5:], "--key", str(key)]) == 1
    assert "give the policy file the run applied" in capsys.readouterr().err
    assert main([*base, "--key", str(key), "--json"]) == 0
    said = json.loads(capsys.readouterr().out)
    assert said["statements"] >= 3 and said["batches"] == 1
    for line in to.read_text().splitlines():
        jsonschema.validate(json.loads(line), SCHEMA)
    # Tampered: refused, and the earlier export is not replaced.
    to.unlink()
    part = next(folder.glob("decisions-*.csv"))
    part.write_bytes(part.read_bytes() + b"x")
    assert main([*base, "--key", str(key)]) == 1
    assert "does not verify" in capsys.readouterr().err and not to.exists()

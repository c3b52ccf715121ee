from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from catalogue_purge.cli import main, parse_as_of
from catalogue_purge.detect.policy import exemptions_path, load_policy
from catalogue_purge.detect.snapshot import open_snapshot
from catalogue_purge.detect.sweep import FINDINGS_SCHEMA, decisions, sweep, write_findings
from catalogue_purge.errors import SnapshotError

from .conftest import SHIPPED_POLICY, listing, write_listings

ROWS = [
    listing(
        "L-1", "Antminer S19 Pro 110TH/s", "Computer & Office > Blockchain Miners > ASIC Miners"
    ),
    listing(
        "L-2",
        "Household heater 3250W, A.n.t-miner S19 inside",
        "Home Appliances > Heaters",
        seller_id="S-2",
    ),
    listing("L-3", "Blue ceramic vase", "Home & Garden > Decor"),
    listing("L-4", "Shelf bracket", "Computer & Office > Blockchain Miners"),
    listing(
        "L-5",
        "8 GPU open air frame for graphics cards",
        "Computer & Office > Computer Components > PC Cases",
    ),
    listing("L-6", "Coal mining drill bit 42mm", "Tools > Industrial > Mining Equipment"),
    listing("L-7", "Antminer S9 spare", "Computer & Office > Blockchain Miners", status="INACTIVE"),
    listing("L-8", "USDT OTC 承兑 代购比特币", "Digital Goods > Other", country_of_sale="CN"),
    listing("L-9", "USDT OTC 承兑 代购比特币", "Digital Goods > Other", country_of_sale="US"),
]


def as_of(policy, value="2021-10-08"):
    return parse_as_of(value, policy)


@pytest.fixture
def snapshot_file(tmp_path: Path) -> Path:
    return write_listings(tmp_path / "snap" / "part-0.parquet", ROWS)


def test_decisions_evasion_and_evidence(policy, snapshot_file):
    result = sweep(open_snapshot(str(snapshot_file)), policy, as_of(policy))
    found = {r["listing_id"]: r for r in result.findings.to_pylist()}
    assert decisions(result.findings) == {
        "L-1": "delist",
        "L-2": "delist",
        # A shelf bracket filed in a suspended category: the category is the only evidence,
        # and the shipped policy's categories send such a listing to a person.
        "L-4": "review",
        "L-5": "review",
        "L-8": "delist",
    }
    assert found["L-1"]["evasion"] is False
    assert found["L-1"]["updated_at"] == datetime(2021, 10, 1, tzinfo=UTC)
    assert "category:Computer & Office > Blockchain Miners" in found["L-1"]["rule_ids"]
    assert found["L-2"]["evasion"] is True
    assert "asic-miner-brands" in found["L-2"]["rule_ids"]
    assert "antminer" in found["L-2"]["matched_terms"]
    assert {
        "rule_id": "asic-miner-brands",
        "term": "antminer",
        "field": "title",
        "text": "ant miner",
        "exemption_id": None,
        "weight": 10.0,  # a delist rule weighs the delist threshold
        "shadow": False,
    } in found["L-2"]["evidence"]
    # Each rule counts once: the score is the sum of the weights of the rules that fired.
    weights = {e["rule_id"]: e["weight"] for e in found["L-2"]["evidence"]}
    assert found["L-2"]["score"] == sum(weights.values()) >= 10
    assert found["L-4"]["score"] == 0  # the category alone: the text does not agree
    assert found["L-5"]["score"] == 5.0  # a review rule weighs the review threshold
    assert found["L-4"]["rule_ids"] == ["category:Computer & Office > Blockchain Miners"]
    assert found["L-5"]["evasion"] is True
    assert found["L-8"]["rule_ids"] == ["crypto-trading-services"]
    assert result.findings.schema.equals(FINDINGS_SCHEMA)


def test_before_the_delisting_date_nothing_to_act_on(policy, snapshot_file):
    result = sweep(open_snapshot(str(snapshot_file)), policy, as_of(policy, "2021-10-07T23:59"))
    assert result.acting is False
    assert result.findings.num_rows == 0
    # The milestone is midnight in the policy's time zone (Asia/Shanghai), not in UTC.
    just_after = datetime(2021, 10, 7, 16, 0, tzinfo=UTC)
    assert sweep(open_snapshot(str(snapshot_file)), policy, just_after).acting is True


def test_folder_glob_and_multiple_files(policy, tmp_path):
    write_listings(tmp_path / "many" / "a.parquet", ROWS[:3])
    write_listings(tmp_path / "many" / "sub" / "b.parquet", ROWS[3:])
    by_folder = sweep(open_snapshot(str(tmp_path / "many")), policy, as_of(policy))
    by_glob = sweep(
        open_snapshot(str(tmp_path / "many" / "**" / "*.parquet")), policy, as_of(policy)
    )
    assert decisions(by_folder.findings) == decisions(by_glob.findings)
    assert len(by_folder.snapshot["files"]) == 2
    assert set(decisions(by_folder.findings)) == {"L-1", "L-2", "L-4", "L-5", "L-8"}


def test_column_mapping(policy, tmp_path):
    path = write_listings(
        tmp_path / "export.parquet", ROWS, rename={"title": "item_name", "listing_id": "item_id"}
    )
    with pytest.raises(SnapshotError) as caught:
        open_snapshot(str(path))
    assert "export.parquet" in str(caught.value)
    assert "missing column 'listing_id'" in str(caught.value)
    snapshot = open_snapshot(str(path), columns={"title": "item_name", "listing_id": "item_id"})
    result = sweep(snapshot, policy, as_of(policy))
    assert "L-2" in decisions(result.findings)


def test_wrong_type_names_file_and_column(tmp_path):
    import pyarrow as pa

    table = pa.Table.from_pylist(ROWS)
    table = table.set_column(
        table.schema.get_field_index("updated_at"),
        "updated_at",
        pa.array(["2021-10-01"] * len(ROWS)),
    )
    pq.write_table(table, tmp_path / "typed.parquet")
    with pytest.raises(
        SnapshotError,
        match=r"typed\.parquet.*column 'updated_at' has type string, expected timestamp",
    ):
        open_snapshot(str(tmp_path / "typed.parquet"))


def test_unreadable_file_is_a_clear_error(tmp_path):
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(SnapshotError, match=r"cannot read .*broken\.parquet as Parquet"):
        open_snapshot(str(tmp_path / "broken.parquet"))
    with pytest.raises(SnapshotError, match="does not exist"):
        open_snapshot(str(tmp_path / "nowhere"))


def test_exemptions_reported_and_expiry(tmp_path, snapshot_file):
    policy_path = tmp_path / "policy.yaml"
    policy_path.write_text(SHIPPED_POLICY.read_text(encoding="utf-8"), encoding="utf-8")
    exemptions_path(policy_path).write_text(
        "policy: crypto-mining-2021\nexemptions:\n"
        "  - {id: EX-1, listing_id: L-2, rules: ['*'], reason: confirmed heater, granted_by: compliance@example.com,"
        " granted_at: 2021-10-01, expires: 2021-12-31}\n"
        "  - {id: EX-2, seller_id: S-1, rules: [mining-hints], reason: frames sold for render farms,"
        " granted_by: compliance@example.com, granted_at: 2021-09-01, expires: 2021-09-30}\n",
        encoding="utf-8",
    )
    policy = load_policy(policy_path)
    result = sweep(open_snapshot(str(snapshot_file)), policy, as_of(policy))
    found = {r["listing_id"]: r for r in result.findings.to_pylist()}
    assert found["L-2"]["decision"] == "exempted"
    assert found["L-2"]["exemption_ids"] == ["EX-1"]
    assert found["L-5"]["decision"] == "review"  # EX-2 expired before the sweep
    later = sweep(open_snapshot(str(snapshot_file)), policy, as_of(policy, "2022-01-01"))
    assert decisions(later.findings)["L-2"] == "delist"


def test_write_findings_is_complete_and_atomic(policy, snapshot_file, tmp_path):
    result = sweep(open_snapshot(str(snapshot_file)), policy, as_of(policy))
    target = write_findings(result, tmp_path / "out")
    assert pq.read_table(target).num_rows == result.findings.num_rows
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "findings.parquet",
        "quarantined.parquet",
        "sweep.json",
    ]


def test_cli_sweep_and_failure_writes_nothing(snapshot_file, tmp_path, capsys):
    code = main(
        [
            "sweep",
            "--snapshot",
            str(snapshot_file),
            "--policy",
            str(SHIPPED_POLICY),
            "--as-of",
            "2021-10-08",
            "--out",
            str(tmp_path / "ok"),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "asic-miner-brands" in printed and "delist" in printed
    assert pq.read_table(tmp_path / "ok" / "findings.parquet").num_rows == 5

    code = main(
        [
            "sweep",
            "--snapshot",
            str(snapshot_file),
            "--policy",
            str(SHIPPED_POLICY),
            "--as-of",
            "2021-10-08",
            "--out",
            str(tmp_path / "bad"),
            "--map",
            "title=nope",
        ]
    )
    assert code == 3
    assert not (tmp_path / "bad" / "findings.parquet").exists()

    code = main(
        [
            "sweep",
            "--snapshot",
            str(snapshot_file),
            "--policy",
            str(SHIPPED_POLICY),
            "--as-of",
            "2021-10-01",
            "--out",
            str(tmp_path / "early"),
        ]
    )
    assert code == 0
    assert "nothing to act on" in capsys.readouterr().out
    assert pq.read_table(tmp_path / "early" / "findings.parquet").num_rows == 0


def test_values_from_the_policy_are_bound_not_pasted(tmp_path):
    hostile = "Toys > O'Brien'); DROP TABLE listings;--"
    policy_path = tmp_path / "p.yaml"
    policy_path.write_text(
        f"""\
id: hostile
version: 1
title: t
milestones: {{delisting_from: 2021-10-08, penalties_from: 2021-10-15}}
scope: {{countries: [US]}}
prohibited_categories: [{{path: "{hostile}"}}]
rules:
  - id: quoted
    description: d
    action: review
    terms: {{en: ["it's a 'miner' -- really"]}}
penalties: {{ladder: [{{id: warning, description: w}}]}}
""",
        encoding="utf-8",
    )
    policy = load_policy(policy_path)
    path = write_listings(
        tmp_path / "s.parquet",
        [
            listing("L-1", "plain", hostile + " > Sub"),
            listing("L-2", "it's a 'miner' -- really", "Home & Garden > Decor"),
            listing(
                "L-3", "it's a 'miner' -- really", "Home & Garden > Decor", country_of_sale="GB"
            ),
        ],
    )
    result = sweep(open_snapshot(str(path)), policy, as_of(policy))
    assert decisions(result.findings) == {"L-1": "delist", "L-2": "review"}


def test_a_corrupted_page_fails_the_sweep(policy, tmp_path):
    """The footer reads fine, a data page does not: the sweep must fail, not find less."""
    path = write_listings(
        tmp_path / "part.parquet",
        [listing(f"L-{i}", f"Antminer S{i % 20} unit {i} " + "x" * (i % 50)) for i in range(3000)],
    )
    title = pq.ParquetFile(path).metadata.row_group(0).column(2)
    data = bytearray(path.read_bytes())
    for i in range(title.data_page_offset + 40, title.data_page_offset + 400):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))
    snapshot = open_snapshot(str(path))  # only the footer is read here
    with pytest.raises(SnapshotError, match=r"cannot sweep .*part\.parquet"):
        sweep(snapshot, policy, as_of(policy))
    code = main(
        [
            "sweep",
            "--snapshot",
            str(path),
            "--policy",
            str(SHIPPED_POLICY),
            "--as-of",
            "2021-10-08",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert code == 3
    assert not (tmp_path / "out" / "findings.parquet").exists()


def test_a_sweep_sets_aside_duplicate_ids(policy, tmp_path):
    from catalogue_purge.cli import parse_as_of
    from catalogue_purge.detect.snapshot import open_snapshot
    from catalogue_purge.detect.sweep import sweep

    from .conftest import listing, write_listings

    miner = ("Antminer S19 Pro 110TH/s", "Computer & Office > Blockchain Miners")
    path = write_listings(
        tmp_path / "s.parquet",
        [listing("L-1", *miner), listing("L-1", *miner), listing("L-2", *miner)],
    )
    result = sweep(open_snapshot(str(path)), policy, parse_as_of("2021-10-08", policy))
    assert result.findings.column("listing_id").to_pylist() == ["L-2"]
    assert result.summary["quarantined"] == {"duplicate listing_id": 2}
    assert result.summary["duplicate_ids"] == ["L-1"]

from __future__ import annotations

import pyarrow.parquet as pq

from catalogue_purge.cli import parse_as_of
from catalogue_purge.detect.snapshot import open_snapshot
from catalogue_purge.detect.sweep import sweep
from catalogue_purge.synthetic import PROHIBITED_SHARE, generate_snapshot


def test_generated_snapshot_is_seeded_and_meets_the_contract(policy, tmp_path):
    first = generate_snapshot(tmp_path / "a", rows=20_000, files=2, row_group_size=4_000, seed=7)
    again = generate_snapshot(tmp_path / "b", rows=20_000, files=2, row_group_size=4_000, seed=7)
    other = generate_snapshot(tmp_path / "c", rows=20_000, files=2, row_group_size=4_000, seed=8)
    assert [
        pq.read_table(p).equals(pq.read_table(q)) for p, q in zip(first, again, strict=True)
    ] == [True, True]
    assert not pq.read_table(first[0]).equals(pq.read_table(other[0]))
    assert pq.ParquetFile(first[0]).metadata.num_row_groups == 3  # 10,000 rows in groups of 4,000

    snapshot = open_snapshot(str(tmp_path / "a"))
    assert snapshot.rows == 20_000
    titles = pq.read_table(first[0]).column("title").to_pylist()
    assert len(set(titles)) > 0.99 * len(titles)  # distinct, as real listings are

    findings = sweep(snapshot, policy, parse_as_of("2021-10-08", policy)).findings
    delisted = sum(d == "delist" for d in findings.column("decision").to_pylist())
    expected = PROHIBITED_SHARE * 20_000
    assert 0.6 * expected <= delisted <= 1.6 * expected
    assert any(findings.column("evasion").to_pylist())


def test_generation_reports_its_progress_in_rows(tmp_path):
    told: list[int] = []
    generate_snapshot(tmp_path / "s", rows=2_500, files=2, chunk=1_000, progress=told.append)
    assert told == [1_000, 250, 1_000, 250]

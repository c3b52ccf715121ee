"""Sweep benchmark: the sweep against the pure-scan limit and against its peers.

On one generated snapshot (default 5 million rows, zstd, row groups of 120k rows), each in a
fresh process after a warm-up read (warm page cache):

- scan      pure DuckDB scan of the text columns: the limit
- udf       the same scan calling a Python Arrow UDF that does nothing: what any matcher
            called from DuckDB pays before it matches anything
- screen    the same scan calling the sweep's first stage (the Hyperscan screen) as that UDF:
            the screen alone, without the precise match or the decisions
- sweep     catalogue-purge's sweep with the full shipped policy, normalisation included
- regexp    the obvious DuckDB implementation: one combined regexp_matches over
            lower(title || ' ' || description), plus the category test
- pandas    a naive pandas + re implementation, on a slice (rows/s scaled up)

Prints rows/s, text MB/s, CPU seconds (all threads) and their ratio to the scan's, peak memory
(RSS), and each time as a ratio to the scan ("x scan", the figure the targets are set in). The machines
are shared and noisy: every contender runs --repeat times, interleaved, and its median is
reported; compare the ratios within one run, not seconds across runs.

    uv run python bench/sweep.py --rows 5000000
    uv run python bench/sweep.py --rows 20000000 --only sweep   # memory stays flat
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
POLICY = ROOT / "policies" / "crypto-mining-2021.yaml"


def _reset_peak() -> None:
    """Forget the peak RSS so far (the warm-up read), where the kernel allows it."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _peak_mb() -> float:
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _clock() -> tuple[float, float]:
    return time.perf_counter(), _cpu_seconds()


def _elapsed(start: tuple[float, float]) -> dict:
    """Wall and CPU seconds (every thread of the process) since start."""
    return {"seconds": time.perf_counter() - start[0], "cpu": _cpu_seconds() - start[1]}


def _snapshot_glob(folder: Path) -> str:
    return str(folder / "*.parquet")


def run_scan(folder: Path) -> dict:
    import duckdb

    con = duckdb.connect()
    start = _clock()
    (count,) = con.execute(
        "SELECT count(*) FROM read_parquet($p) "
        "WHERE length(title) + length(coalesce(description, '')) > 0",
        {"p": _snapshot_glob(folder)},
    ).fetchone()
    return {**_elapsed(start), "rows": count}


def _udf_query(folder: Path, function) -> dict:
    import duckdb
    from duckdb.func import FunctionNullHandling, PythonUDFType

    con = duckdb.connect()
    con.create_function(
        "f",
        function,
        [duckdb.sqltype("VARCHAR")],
        duckdb.sqltype("BOOLEAN"),
        type=PythonUDFType.ARROW,
        null_handling=FunctionNullHandling.SPECIAL,
    )
    con.execute("SELECT f('')").fetchall()
    start = _clock()
    (count,) = con.execute(
        "SELECT count(*) FROM read_parquet($p) "
        "WHERE f(concat(title, chr(10), description, chr(10)))",
        {"p": _snapshot_glob(folder)},
    ).fetchone()
    return {**_elapsed(start), "rows_matched": count}


def run_udf(folder: Path) -> dict:
    import numpy as np
    import pyarrow as pa

    return _udf_query(folder, lambda texts: pa.array(np.zeros(len(texts), dtype=bool)))


def run_screen(folder: Path) -> dict:
    import pyarrow as pa

    from catalogue_purge.detect.matcher import Matcher
    from catalogue_purge.detect.policy import load_policy

    matcher = Matcher(load_policy(POLICY))
    return _udf_query(folder, lambda texts: pa.array(matcher.screen(texts)))


def run_sweep(folder: Path) -> dict:
    from catalogue_purge.cli import parse_as_of
    from catalogue_purge.detect.matcher import Matcher
    from catalogue_purge.detect.policy import load_policy
    from catalogue_purge.detect.snapshot import open_snapshot
    from catalogue_purge.detect.sweep import sweep

    policy = load_policy(POLICY)
    matcher = Matcher(policy)  # compiled once per run; timed separately
    snapshot = open_snapshot(str(folder))
    start = _clock()
    result = sweep(snapshot, policy, parse_as_of("2021-10-08", policy), matcher=matcher)
    return {
        **_elapsed(start),
        "rows": snapshot.rows,
        "findings": result.findings.num_rows,
        "screened_in": result.candidates,
    }


def _policy_regex() -> str:
    """Every term of the shipped policy as one alternation (the obvious implementation)."""
    from catalogue_purge.detect.policy import load_policy

    policy = load_policy(POLICY)
    terms = sorted(
        {t.rstrip("*").lower() for r in policy.document.rules for t in r.all_terms()},
        key=len,
        reverse=True,
    )
    return "|".join(re.escape(t) for t in terms)


def run_regexp(folder: Path) -> dict:
    import duckdb

    from catalogue_purge.detect.policy import load_policy

    policy = load_policy(POLICY)
    prefixes = [c.path + " > " for c in policy.document.prohibited_categories]
    con = duckdb.connect()
    start = _clock()
    (count,) = con.execute(
        "SELECT count(*) FROM read_parquet($p) WHERE "
        "len(list_filter($prefixes, lambda x: starts_with(category_path || ' > ', x))) > 0 "
        "OR regexp_matches(lower(title || ' ' || coalesce(description, '')), $re)",
        {"p": _snapshot_glob(folder), "prefixes": prefixes, "re": _policy_regex()},
    ).fetchone()
    return {**_elapsed(start), "rows_matched": count}


def run_pandas(folder: Path, rows: int) -> dict:
    import pyarrow.dataset as ds

    table = ds.dataset(str(folder)).head(rows, columns=["title", "description", "category_path"])
    frame = table.to_pandas()
    pattern = re.compile(_policy_regex())
    start = _clock()
    text = (frame["title"] + " " + frame["description"].fillna("")).str.lower()
    hits = text.map(lambda t: pattern.search(t) is not None)
    prohibited = frame["category_path"].str.startswith(
        (
            "Computer & Office > Blockchain Miners",
            "Consumer Electronics > Cryptocurrency Mining",
            "Digital Goods > Cryptocurrency",
        )
    )
    matched = int((hits | prohibited).sum())
    return {**_elapsed(start), "rows": len(frame), "rows_matched": matched}


def _warm_up(folder: Path) -> None:
    """Read the text columns once, so every contender reads from the page cache, and make
    DuckDB's first Python UDF call, which imports pandas when it is installed (about a
    second; the development environment has it for the pandas contender, the function
    image does not)."""
    import duckdb
    from duckdb.func import PythonUDFType

    con = duckdb.connect()
    con.create_function(
        "warm",
        lambda t: t,
        [duckdb.sqltype("VARCHAR")],
        duckdb.sqltype("VARCHAR"),
        type=PythonUDFType.ARROW,
    )
    con.execute("SELECT warm('')").fetchall()
    con.execute(
        "SELECT sum(length(title) + length(coalesce(description, ''))) FROM read_parquet($p)",
        {"p": _snapshot_glob(folder)},
    ).fetchall()


def child(kind: str, folder: Path, rows: int) -> None:
    _warm_up(folder)
    _reset_peak()
    runners = {
        "scan": lambda: run_scan(folder),
        "udf": lambda: run_udf(folder),
        "screen": lambda: run_screen(folder),
        "sweep": lambda: run_sweep(folder),
        "regexp": lambda: run_regexp(folder),
        "pandas": lambda: run_pandas(folder, rows),
    }
    result = runners[kind]()
    result["peak_mb"] = _peak_mb()
    print(json.dumps(result))


def text_megabytes(folder: Path) -> float:
    import duckdb

    (total,) = (
        duckdb.connect()
        .execute(
            "SELECT sum(strlen(title) + coalesce(strlen(description), 0)) FROM read_parquet($p)",
            {"p": _snapshot_glob(folder)},
        )
        .fetchone()
    )
    return total / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--files", type=int, default=0, help="default: one file per million rows")
    parser.add_argument("--pandas-rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each contender (median)")
    parser.add_argument(
        "--only", nargs="*", default=["scan", "udf", "screen", "sweep", "regexp", "pandas"]
    )
    parser.add_argument("--data", type=Path, default=ROOT / "build" / "bench")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()

    folder = args.data / f"snapshot-{args.rows}"
    if args.child:
        child(args.child, folder, args.pandas_rows)
        return

    if not folder.exists():
        from catalogue_purge.synthetic import generate_snapshot

        files = args.files or max(1, args.rows // 1_000_000)
        print(f"generating {args.rows:,} rows in {files} files under {folder} ...", flush=True)
        generate_snapshot(folder, rows=args.rows, files=files, row_group_size=120_000)
    megabytes = text_megabytes(folder)
    print(f"snapshot: {args.rows:,} rows, {megabytes:,.0f} MB of title + description text")

    kinds = ["scan", *[k for k in args.only if k != "scan"]]
    runs: dict[str, list[dict]] = {kind: [] for kind in kinds}
    # Interleave the contenders and keep each one's median: the machine is shared and noisy.
    for _ in range(args.repeat):
        for kind in kinds:
            proc = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--rows",
                    str(args.rows),
                    "--data",
                    str(args.data),
                    "--pandas-rows",
                    str(args.pandas_rows),
                    "--child",
                    kind,
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            runs[kind].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    results = {
        kind: sorted(r, key=lambda x: x["seconds"])[len(r) // 2]
        | {"peak_mb": max(x["peak_mb"] for x in r)}
        for kind, r in runs.items()
    }
    scan = results["scan"]["seconds"]
    print(
        f"\n{'':8} {'seconds':>9} {'rows/s':>12} {'text MB/s':>10} {'cpu s':>7} {'cpu x':>6} {'peak MB':>8} "
        f"{'x scan':>7}"
    )
    scan_cpu = results["scan"]["cpu"]
    for kind, r in results.items():
        rows = r.get("rows", args.rows)
        seconds = r["seconds"]
        scaled = seconds * args.rows / rows  # pandas runs on a slice
        print(
            f"{kind:8} {seconds:9.2f} {rows / seconds:12,.0f} "
            f"{megabytes * rows / args.rows / seconds:10,.0f} {r['cpu']:7.2f} "
            f"{r['cpu'] * args.rows / rows / scan_cpu:6.2f} "
            f"{r['peak_mb']:8.0f} {scaled / scan:7.2f}"
        )
    if "sweep" in results:
        s = results["sweep"]
        print(
            f"\nsweep: {s['findings']:,} findings, {s['screened_in']:,} rows screened in "
            f"({s['screened_in'] / s['rows']:.2%})"
        )


if __name__ == "__main__":
    main()

"""A/B of the sweep between checkouts: is a change to detection slower than the tree before it?

Each tree (a checkout of this repository, e.g. made with `git worktree add ../before HEAD~3`)
sweeps the same generated snapshot with its own code and its own shipped policy, in a fresh
process per run; the trees are interleaved --repeat times and each process sweeps --sweeps
times after one warm-up sweep. Prints, per tree, the median CPU and wall seconds of a sweep,
the rows it screened in and its findings, and each median as a ratio to the first tree's. The
machines are shared and noisy: read the ratios of one run, and run it twice.

    uv run python bench/ab.py ../before .
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(tree: Path, folder: Path, sweeps: int) -> None:
    sys.path.insert(0, str(tree / "src"))
    from catalogue_purge.cli import parse_as_of
    from catalogue_purge.detect.matcher import Matcher
    from catalogue_purge.detect.policy import load_policy
    from catalogue_purge.detect.snapshot import open_snapshot
    from catalogue_purge.detect.sweep import sweep

    policy = load_policy(tree / "policies" / "crypto-mining-2021.yaml")
    matcher = Matcher(policy)
    as_of = parse_as_of("2021-10-08", policy)
    runs = []
    for i in range(sweeps + 1):
        cpu, wall = time.process_time(), time.perf_counter()
        result = sweep(open_snapshot(str(folder)), policy, as_of, matcher=matcher)
        if i:  # the first sweep warms the page cache and the lazily compiled term patterns
            runs.append(
                {
                    "cpu": time.process_time() - cpu,
                    "wall": time.perf_counter() - wall,
                    "screened": result.candidates,
                    "findings": result.findings.num_rows,
                }
            )
    print(json.dumps(runs))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("trees", nargs="+", type=Path, help="checkouts; the first is the base")
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="processes per tree, interleaved")
    parser.add_argument("--sweeps", type=int, default=3, help="timed sweeps per process")
    parser.add_argument("--data", type=Path, default=ROOT / "build" / "bench")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    folder = args.data / f"snapshot-{args.rows}"
    if args.child:
        child(args.child, folder, args.sweeps)
        return
    for tree in args.trees:
        if not (tree / "src" / "catalogue_purge").is_dir():
            parser.error(f"{tree} is not a checkout of this repository")
    if not folder.exists():
        from catalogue_purge.synthetic import generate_snapshot

        print(f"generating {args.rows:,} rows under {folder} ...", flush=True)
        generate_snapshot(
            folder, rows=args.rows, files=max(1, args.rows // 1_000_000), row_group_size=120_000
        )

    runs: dict[Path, list[dict]] = {tree: [] for tree in args.trees}
    for _ in range(args.repeat):
        for tree in args.trees:
            proc = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    *map(str, args.trees),
                    "--rows",
                    str(args.rows),
                    "--sweeps",
                    str(args.sweeps),
                    "--data",
                    str(args.data),
                    "--child",
                    str(tree.resolve()),
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode:
                sys.exit(f"{tree}: the sweep failed:\n{proc.stderr[-2000:]}")
            runs[tree] += json.loads(proc.stdout.splitlines()[-1])

    base = args.trees[0]
    medians = {
        tree: {k: statistics.median(r[k] for r in rs) for k in ("cpu", "wall")}
        for tree, rs in runs.items()
    }
    print(
        f"{'tree':30s} {'cpu s':>7s} {'x base':>7s} {'wall s':>7s} {'x base':>7s}  screened  findings"
    )
    for tree, rs in runs.items():
        m, b = medians[tree], medians[base]
        print(
            f"{str(tree)[-30:]:30s} {m['cpu']:7.2f} {m['cpu'] / b['cpu']:7.3f} "
            f"{m['wall']:7.2f} {m['wall'] / b['wall']:7.3f}  {rs[0]['screened']:8,d}  "
            f"{rs[0]['findings']:8,d}"
        )


if __name__ == "__main__":
    main()

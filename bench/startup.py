"""Start-up benchmark: compiling the shipped policy into its matcher, in a fresh process.

A cold Lambda or a CLI call pays this before it matches anything. Three ways, each in a fresh
process, interleaved, --repeat times (median):

- compile    no cache ($CATALOGUE_PURGE_CACHE=off): every Hyperscan database compiled
- first      an empty cache: compiled, then written to the cache
- cached     the cache the first run wrote: the databases loaded from disk

Prints CPU and wall seconds and each as a ratio to `compile`. The machines are shared and
noisy: compare the ratios within one run.

    uv run python bench/startup.py --repeat 5
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
POLICY = ROOT / "policies" / "crypto-mining-2021.yaml"


def child() -> None:
    from catalogue_purge.detect.matcher import Matcher
    from catalogue_purge.detect.policy import load_policy

    policy = load_policy(POLICY)
    wall, cpu = time.perf_counter(), time.process_time()
    matcher = Matcher(policy)
    print(
        json.dumps(
            {
                "cpu_s": time.process_time() - cpu,
                "wall_s": time.perf_counter() - wall,
                "patterns": len(matcher.patterns),
                "screen_patterns": matcher.screen_pattern_count,
            }
        )
    )


def run(cache: str) -> dict:
    env = {**os.environ, "CATALOGUE_PURGE_CACHE": cache}
    out = subprocess.run(
        [sys.executable, __file__, "--child"], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child()
        return
    results: dict[str, list[dict]] = {"compile": [], "first": [], "cached": []}
    for _ in range(args.repeat):
        folder = tempfile.mkdtemp(prefix="catalogue-purge-cache-")
        try:
            results["compile"].append(run("off"))
            results["first"].append(run(folder))
            results["cached"].append(run(folder))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    sample = results["compile"][0]
    print(
        f"shipped policy: {sample['patterns']:,} patterns, "
        f"{sample['screen_patterns']:,} screen anchors; median of {args.repeat}"
    )
    base = {k: statistics.median(r[k] for r in results["compile"]) for k in ("cpu_s", "wall_s")}
    print(f"{'':10} {'CPU s':>8} {'x compile':>10} {'wall s':>8} {'x compile':>10}")
    for name, runs in results.items():
        cpu = statistics.median(r["cpu_s"] for r in runs)
        wall = statistics.median(r["wall_s"] for r in runs)
        print(
            f"{name:10} {cpu:8.2f} {cpu / base['cpu_s']:10.2f} "
            f"{wall:8.2f} {wall / base['wall_s']:10.2f}"
        )


if __name__ == "__main__":
    main()

"""Does what deploy/Dockerfile installs fit Lambda? Installs the locked runtime dependencies
the way the image does (wheels for python3.12 on Lambda's Linux, for the functions'
architecture) into a temporary folder, adds the package, and measures the unzipped size against
Lambda's limits: 250 MB for a zip package (with its layers), 10 GB for a container image.

    uv run python deploy/check_package.py [--arch arm64|x86_64] [--json]

Exit status 0 when the image fits; the zip verdict is printed, as the reason for the image.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MB = 1024 * 1024
ZIP_LIMIT = 250 * MB  # unzipped: function code and all its layers
IMAGE_LIMIT = 10 * 1024 * MB  # uncompressed, base image included
PLATFORMS = {"arm64": "aarch64-manylinux_2_28", "x86_64": "x86_64-manylinux_2_28"}


def folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def install(target: Path, arch: str) -> None:
    uv = os.environ.get("UV") or shutil.which("uv")
    command = [uv] if uv else [sys.executable, "-m", "uv"]
    subprocess.run(  # noqa: S603 (fixed arguments)
        [
            *command,
            "pip",
            "install",
            "--quiet",
            "--target",
            str(target),
            "--python-platform",
            PLATFORMS[arch],
            "--python-version",
            "3.12",
            "--only-binary",
            ":all:",
            "--no-deps",
            "--require-hashes",
            "-r",
            str(ROOT / "deploy" / "requirements.txt"),
        ],
        check=True,
    )


def measure(arch: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="lambda-package-") as tmp:
        target = Path(tmp) / "task"
        install(target, arch)
        packages = {
            p.name: folder_size(p) if p.is_dir() else p.stat().st_size for p in target.iterdir()
        }
    code = sum(
        folder_size(ROOT / d) for d in ("src", "sql", "policies", "functions", "statemachine")
    )
    total = sum(packages.values()) + code
    largest = sorted(packages.items(), key=lambda kv: -kv[1])[:8]
    return {
        "arch": arch,
        "dependencies_bytes": sum(packages.values()),
        "code_bytes": code,
        "total_bytes": total,
        "largest": [{"name": n, "bytes": b} for n, b in largest],
        "fits_zip": total <= ZIP_LIMIT,
        "fits_image": total <= IMAGE_LIMIT,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", choices=sorted(PLATFORMS), default="arm64")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    figures = measure(args.arch)
    if args.json:
        print(json.dumps(figures))
    else:
        print(f"Lambda package for python3.12 on {args.arch}, unzipped:")
        for item in figures["largest"]:
            print(f"  {item['name']:<32} {item['bytes'] / MB:8.1f} MB")
        print(
            f"  dependencies {figures['dependencies_bytes'] / MB:.1f} MB, "
            f"code {figures['code_bytes'] / MB:.2f} MB, total {figures['total_bytes'] / MB:.1f} MB"
        )
        print(f"  zip package (limit 250 MB): {'fits' if figures['fits_zip'] else 'does NOT fit'}")
        print(
            f"  container image (limit 10 GB with the base image): "
            f"{'fits' if figures['fits_image'] else 'does NOT fit'}, "
            f"{figures['total_bytes'] / IMAGE_LIMIT:.1%} of it"
        )
    return 0 if figures["fits_image"] else 1


if __name__ == "__main__":
    sys.exit(main())

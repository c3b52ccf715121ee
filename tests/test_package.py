"""The deployed package: its locked requirements and its size against Lambda's limits."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from .conftest import ROOT


def uv() -> list[str]:
    return [os.environ["UV"]] if os.environ.get("UV") else [sys.executable, "-m", "uv"]


def test_the_image_requirements_are_the_locked_ones():
    exported = subprocess.run(
        [
            *uv(),
            "export",
            "--frozen",
            "--no-dev",
            "--no-emit-project",
            "--format",
            "requirements-txt",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout

    def body(text: str) -> list[str]:
        return [line for line in text.splitlines() if not line.startswith("#")]

    written = (ROOT / "deploy" / "requirements.txt").read_text()
    assert body(exported) == body(written), "run `make requirements` after changing uv.lock"
    assert any(line.startswith("duckdb==") for line in body(written))


def test_the_package_fits_lambda_as_an_image_not_as_a_zip():
    result = subprocess.run(
        [sys.executable, str(ROOT / "deploy" / "check_package.py"), "--json"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    names = {item["name"] for item in figures["largest"]}
    assert "pyarrow" in names
    assert figures["fits_image"]
    # The reason for the image: the dependencies alone exceed the zip limit.
    assert not figures["fits_zip"]
    assert figures["total_bytes"] > 250 * 1024 * 1024

"""The code stays ruff clean and ``mypy --strict`` clean over every package."""

import shutil
import subprocess
from pathlib import Path

import pytest
from typecheck import run_mypy

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_clean() -> None:
    if shutil.which("ruff") is None:
        pytest.fail("ruff is not installed: pip install -e '.[test]'")
    result = subprocess.run(["ruff", "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_clean_on_every_package() -> None:
    result = run_mypy()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "source files" in result.stdout, result.stdout  # (it did check something)

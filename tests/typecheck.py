"""Run ``mypy --strict`` over the whole installed package, as its importers see it.

The repository maps ``impfactory.cloud`` to ``cloud/`` and so on (pyproject's
``package-dir``), which mypy cannot follow from the source tree: checked in place,
``impfactory.*`` imports would resolve to nothing and every cross-module type would
be ``Any``. This builds the package's layout from symlinks in a temporary folder and
checks it there, so types flow between modules exactly as they do when installed.

    python tests/typecheck.py        # what tests/test_lint.py runs
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def package_view(into: Path) -> Path:
    """Lay ``impfactory`` out under ``into`` as setuptools installs it; return its root."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    dirs: dict[str, str] = config["tool"]["setuptools"]["package-dir"]
    top = into / "impfactory"
    top.mkdir()
    for entry in (ROOT / dirs["impfactory"]).iterdir():
        (top / entry.name).symlink_to(entry)
    for name, folder in dirs.items():
        parts = name.split(".")
        if len(parts) == 2:  # subpackages of subpackages come with their parent's folder
            (top / parts[1]).symlink_to(ROOT / folder, target_is_directory=True)
    return into


def run_mypy() -> subprocess.CompletedProcess[str]:
    """``mypy --strict -p impfactory`` with the project's configuration."""
    with tempfile.TemporaryDirectory(prefix="impfactory-mypy-") as tmp:
        root = package_view(Path(tmp))
        env = {**os.environ, "MYPYPATH": str(root)}
        return subprocess.run(
            [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
             "--cache-dir", str(ROOT / ".mypy_cache"), "-p", "impfactory"],
            cwd=root, env=env, capture_output=True, text=True, check=False)


if __name__ == "__main__":
    result = run_mypy()
    sys.stdout.write(result.stdout + result.stderr)
    sys.exit(result.returncode)

"""The command line works after ``pip install -e .`` alone: no test extras needed.

The README's first command installs the package without ``.[test]`` and runs
``impfactory demo``. This suite has pytest, hypothesis and matplotlib installed,
so each check runs in a subprocess that cannot import any of them
(``without_extras.py``): the whole import graph of the command line, every
subcommand's parser, and the demo itself. Only the pytest plugin modules
(``tools/plugin_*.py``, ``tools/pytest_plugin.py``) may import pytest at all.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from without_extras import env_without_test_extras

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "impfactory.tools.cli"]
TEST_ONLY = {"pytest", "_pytest", "hypothesis"}


def package_dirs() -> dict[str, Path]:
    """Import package name → folder, as pyproject.toml maps them."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return {name: ROOT / folder
            for name, folder in config["tool"]["setuptools"]["package-dir"].items()}


def plugin_module(path: Path) -> bool:
    return path.parent == ROOT / "tools" and (path.name.startswith("plugin_")
                                              or path.name == "pytest_plugin.py")


def test_only_the_pytest_plugin_imports_pytest() -> None:
    offenders = []
    for folder in package_dirs().values():
        for path in sorted(folder.glob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
            for node in ast.walk(tree):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                         [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                if any(n.partition(".")[0] in TEST_ONLY for n in names) and \
                        not plugin_module(path):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, f"test-only imports outside the pytest plugin: {offenders}"


IMPORT_EVERYTHING = """
import argparse, importlib, pkgutil, sys
from impfactory.tools.cli import build_parser

packages = {packages!r}
count = 0
for name, folder in packages.items():
    for info in pkgutil.iter_modules([folder]):
        module = f"{{name}}.{{info.name}}"
        if info.ispkg or module in packages:
            continue  # a subpackage is walked as its own entry
        if name == "impfactory.firmware.examples":
            continue  # device code run by the emulated imp, not modules to import
        if name == "impfactory.tools" and info.name.startswith(("plugin_", "pytest_plugin")):
            continue
        importlib.import_module(module)
        count += 1
parser = build_parser()
commands = parser._subparsers._group_actions[0].choices
for command in commands.values():
    command.format_help()
    for action in command._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                sub.format_help()
hidden = sorted(m for m in sys.modules if m.partition(".")[0] in {hidden!r})
assert not hidden, hidden
print("imported", count, "modules;", len(commands), "commands")
"""


def test_every_module_of_the_command_line_imports_without_test_extras(tmp_path: Path) -> None:
    packages = {name: str(folder) for name, folder in package_dirs().items()}
    script = IMPORT_EVERYTHING.format(packages=packages, hidden=sorted(TEST_ONLY))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env=env_without_test_extras(tmp_path / "site"), timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("imported "), result.stdout


def test_the_blocker_hides_what_it_says(tmp_path: Path) -> None:
    """The check above can fail: pytest really is unimportable in that environment."""
    result = subprocess.run([sys.executable, "-c", "import pytest"], capture_output=True,
                            text=True, env=env_without_test_extras(tmp_path / "site"),
                            timeout=60)
    assert result.returncode == 1 and "ModuleNotFoundError" in result.stderr


def test_the_demo_runs_without_test_extras(tmp_path: Path) -> None:
    """``pip install -e . && impfactory demo``: the report comes without charts."""
    result = subprocess.run([*CLI, "demo", "--fixtures", "1", "--duts", "3"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300,
                            env=env_without_test_extras(tmp_path / "site"))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    html = (tmp_path / "impfactory-report" / "report.html").read_text(encoding="utf-8")
    assert "Charts need matplotlib" in html


@pytest.mark.parametrize("argv", [
    ["device", "life", "--png", "led.png"],
    ["blinkup", "plot", "0000002a0207001d41", "-o", "x.png"],
])
def test_a_picture_without_matplotlib_is_a_one_line_error(argv: list[str],
                                                          tmp_path: Path) -> None:
    result = subprocess.run([*CLI, *argv], cwd=tmp_path, capture_output=True, text=True,
                            timeout=120, env=env_without_test_extras(tmp_path / "site"))
    assert result.returncode == 2, result.stderr
    assert "matplotlib" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("argv", [
    ["cloud", "serve", "--db", "postgresql://me:secret@127.0.0.1:1/impfactory"],
    ["line", "run", "--db", "postgresql://me:secret@127.0.0.1:1/impfactory"],
])
def test_postgres_without_its_extra_is_a_one_line_error(argv: list[str], tmp_path: Path) -> None:
    result = subprocess.run([*CLI, *argv], cwd=tmp_path, capture_output=True, text=True,
                            timeout=120, env=env_without_test_extras(tmp_path / "site"))
    assert result.returncode == 2, result.stderr
    assert "'postgres' extra" in result.stderr and "impfactory[postgres]" in result.stderr
    assert "secret" not in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1

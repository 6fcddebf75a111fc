"""Run impfactory the way ``pip install -e .`` leaves it: without the test extras.

``pip install -e .`` installs the runtime dependencies only; pytest, hypothesis,
matplotlib, ruff, mypy, openapi-spec-validator and psycopg (the ``postgres`` extra)
come with ``.[test]``. This
suite runs with all of them installed, so a command that needs one of them by
accident would pass here and fail for a new user. ``env_without_test_extras``
gives a subprocess environment whose ``sitecustomize`` hides them: importing one
raises ``ModuleNotFoundError`` exactly as in an environment that lacks it.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Top-level import names of the ``test`` extra (and of pytest's own parts).
TEST_EXTRAS = ("pytest", "_pytest", "pluggy", "pytest_timeout", "hypothesis", "matplotlib",
               "mpl_toolkits", "ruff", "mypy", "openapi_spec_validator", "psycopg",
               "psycopg_binary")

SITECUSTOMIZE = f'''"""Hide the test extras (written by tests/without_extras.py)."""
import sys

HIDDEN = {set(TEST_EXTRAS)!r}


class _HideTestExtras:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in HIDDEN:
            raise ModuleNotFoundError(f"No module named {{name!r}} (hidden: a test extra)",
                                      name=name)
        return None


sys.meta_path.insert(0, _HideTestExtras())
'''


def env_without_test_extras(where: Path) -> dict[str, str]:
    """Environment for a subprocess that cannot import any test extra.

    Writes ``sitecustomize.py`` into ``where`` (a directory of its own) and puts
    that directory first on ``PYTHONPATH``.
    """
    where.mkdir(parents=True, exist_ok=True)
    (where / "sitecustomize.py").write_text(SITECUSTOMIZE, encoding="utf-8")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(where), env.get("PYTHONPATH")) if p)
    return env

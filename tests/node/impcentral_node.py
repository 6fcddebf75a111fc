"""Python's handle on Electric Imp's own ``imp-central-api`` client, run under node.

``NodeClient(endpoint)`` starts ``node drive.js ENDPOINT`` and sends it one call
per line; each call runs inside the real npm library, which validates the
arguments and builds the HTTP request, so the emulated cloud sees exactly what
Electric Imp's client (and ``impt``, built on it) sends.

    with NodeClient(api.endpoint) as imp:
        imp("auth.login", "owner", "secret")
        product = imp("products.create", {"name": "P"})["data"]
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from impfactory.cloud.api_thread import ApiThread

HERE = Path(__file__).resolve().parent
DRIVER = HERE / "drive.js"
INSTALL_HINT = "cd tests/node && npm ci"


class NodeCallError(Exception):
    """A call the client rejected: its HTTP status (0 = client-side) and message."""

    def __init__(self, call: str, status: int, message: str, body: Any) -> None:
        super().__init__(f"{call}: HTTP {status}: {message}")
        self.status = status
        self.message = message
        self.body = body


def in_ci() -> bool:
    """``CI`` is set (hosted runners set it; ``.ci/run`` should): CI installs node,
    Mosquitto and the npm package, so there a missing one must fail, never skip."""
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def node_missing() -> str | None:
    """Why the node client cannot run here (so its tests skip), or ``None`` when it can.

    Always ``None`` in CI: without node the tests then run and fail, as they should.
    """
    if shutil.which("node") is None and not in_ci():
        return "node is not installed (CI installs it; apt-get install nodejs)"
    return None


def library_missing() -> str | None:
    """Why the npm package is absent, or ``None``.

    On a fresh clone the package is installed here from the lock file first
    (``npm ci``, from the npm registry), so the README's one test command is
    enough; CI runs the same ``npm ci`` beforehand.
    """
    if (HERE / "node_modules" / "imp-central-api").is_dir():
        return None
    if shutil.which("npm") is None:
        return f"imp-central-api is not installed and npm is missing: run `{INSTALL_HINT}`"
    result = subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund"], cwd=HERE, capture_output=True, text=True,
        timeout=300, check=False)
    if result.returncode != 0 or not (HERE / "node_modules" / "imp-central-api").is_dir():
        return f"`{INSTALL_HINT}` failed: {result.stderr.strip()[-500:]}"
    return None


class NodeClient:
    """One node process running ``drive.js`` against ``endpoint``."""

    def __init__(self, endpoint: str, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self._seq = 0
        self.proc = subprocess.Popen(
            ["node", str(DRIVER), endpoint], cwd=HERE, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)

    def call(self, name: str, *args: Any) -> Any:
        """Run ``api.<name>(*args)`` in node; return the resolved value or raise."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._seq += 1
        self.proc.stdin.write(json.dumps({"id": self._seq, "call": name, "args": args}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise RuntimeError(f"the node driver died during {name}: {err}")
        answer = json.loads(line)
        assert answer["id"] == self._seq, answer
        if not answer["ok"]:
            raise NodeCallError(name, answer["status"], answer["message"], answer.get("body"))
        return answer["result"]

    __call__ = call

    def close(self) -> None:
        """End the node process."""
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream:
                stream.close()

    def __enter__(self) -> NodeClient:
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


@contextlib.contextmanager
def api_cloud(db: Path, broker_url: str, user: str, password: str) -> Iterator[ApiThread]:
    """A cloud with its REST API and one account, for the node client to drive; a
    missing imp-central-api fails the test (the suite installs it from the lock file)."""
    missing = library_missing()
    if missing:
        pytest.fail(missing)
    with ApiThread(db, broker_url=broker_url) as running:
        running.call(running.service.accounts.create, user, password)
        yield running

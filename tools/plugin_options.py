"""pytest options: point the same tests at an outside broker, a real bench, your libraries.

``pytest --impfactory-broker mqtt://10.0.0.5:1883`` runs every broker test against
that broker instead of one the session starts (``auto`` by default: Mosquitto when
installed, else the embedded amqtt broker; ``mosquitto`` or ``embedded`` choose);
``--impfactory-bench /dev/ttyACM0`` gives ``bench_port`` and ``bench`` a real bench
controller (or the pty of ``impfactory bench emulate``, or any pyserial URL)
instead of an emulated one; ``--impfactory-lib DIR`` (repeatable) adds folders of
Squirrel libraries for ``#require``, for the whole session. The environment
variables the plugin read before these options existed (``IMPFACTORY_BROKER``,
``IMPFACTORY_BENCH_PORT``) still work; an option wins over its variable.

A test never asks which it got: the swap happens outside it, as OpenHTF swaps
plugs (STYLE.md).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

from impfactory.cloud.broker import find_mosquitto
from impfactory.tools.cli import lib_path_restored
from impfactory.tools.firmware_input import apply_lib_dirs

BROKER_ENV = "IMPFACTORY_BROKER"
BENCH_PORT_ENV = "IMPFACTORY_BENCH_PORT"
#: Every broker this machine can start, for ``any_broker_url``.
BROKER_KINDS = [*(["mosquitto"] if find_mosquitto() else []), "embedded"]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("impfactory", "impfactory: emulated imps, fixtures and cloud")
    group.addoption("--impfactory-broker", metavar="URL", default=None,
                    help="the MQTT broker for broker_url (mqtt://HOST:PORT, auto, mosquitto "
                         f"or embedded; default ${BROKER_ENV}, else auto)")
    group.addoption("--impfactory-bench", metavar="PORT", default=None,
                    help="a bench controller for bench_port and bench (/dev/ttyACM0, a pty, "
                         f"socket://H:P ...; default ${BENCH_PORT_ENV}, else an emulated bench)")
    group.addoption("--impfactory-lib", metavar="DIR", action="append", default=[],
                    help="a folder of Squirrel libraries for #require (repeatable)")


def broker_spec(config: pytest.Config) -> str:
    """The broker the session's tests use: the option, else the variable, else ``auto``."""
    return str(config.getoption("impfactory_broker") or os.environ.get(BROKER_ENV) or "auto")


def outside_broker(config: pytest.Config) -> bool:
    """Whether the tests were pointed at a broker someone else runs."""
    return broker_spec(config).startswith("mqtt://")


def broker_kinds(config: pytest.Config) -> list[str]:
    """What ``any_broker_url`` runs over: every broker this machine can start, or only the
    outside one when the session was pointed at one."""
    if outside_broker(config):
        return [broker_spec(config)]
    return list(BROKER_KINDS)


def bench_spec(config: pytest.Config) -> str | None:
    """The real bench's port (option, else variable), or ``None`` for an emulated one."""
    return config.getoption("impfactory_bench") or os.environ.get(BENCH_PORT_ENV) or None


_LIB_PATH = pytest.StashKey[contextlib.ExitStack]()


def pytest_configure(config: pytest.Config) -> None:
    """``--impfactory-lib`` folders go first on ``IMPFACTORY_LIB_PATH`` for the session."""
    dirs = [Path(d) for d in config.getoption("impfactory_lib", None) or []]
    missing = [str(d) for d in dirs if not d.is_dir()]
    if missing:
        raise pytest.UsageError(f"--impfactory-lib: not a folder: {', '.join(missing)}")
    if dirs:
        stack = config.stash[_LIB_PATH] = contextlib.ExitStack()
        stack.enter_context(lib_path_restored())
        apply_lib_dirs(dirs)


def pytest_unconfigure(config: pytest.Config) -> None:
    stack = config.stash.get(_LIB_PATH, None)
    if stack is not None:
        stack.close()

"""Putting the controller firmware on a Raspberry Pi Pico, with mpremote.

``impfactory bench flash --port /dev/ttyACM0`` runs one mpremote command::

    mpremote connect PORT fs cp wire.py lightout.py config.py controller.py usb.py main.py :
             + fs cp bench_config.json :bench_config.json + reset

mpremote interrupts whatever runs (the controller gives the REPL back when it sees
mpremote's ``\\r\\x03`` at a frame start), copies the files, and resets the board,
which then runs ``main.py``: the controller, on USB serial. ``bench_config.json``
holds the settings given with ``--config`` (pins for a board wired differently,
the colour calibration; ``firmware/config.py`` lists them); without one an empty
``{}`` goes over, so an earlier board's settings never linger.

mpremote is a PyPI package (``pip install 'impfactory[bench]'``); without it this
is a :class:`MpremoteMissingError`, never a traceback.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from impfactory.errors import ImpFactoryError

from . import FIRMWARE_DIR, FIRMWARE_FILES
from .sim import SimBoard, load_firmware

CONFIG_NAME = "bench_config.json"
GPIO_KEYS = ("led_pin", "sda_pin", "scl_pin", "power_pin", "button_pin", "uart_tx_pin",
             "uart_rx_pin")


class FlashError(ImpFactoryError):
    """The firmware could not be put on the board (bad settings, mpremote failed)."""


class MpremoteMissingError(FlashError, FileNotFoundError):
    """mpremote, which copies files to a MicroPython board, is not installed."""


class MpremoteFailedError(FlashError):
    """mpremote ran and failed (no board on the port, a board without MicroPython)."""

    exit_code = 1


def firmware_defaults() -> dict[str, Any]:
    """The firmware's own settings (``firmware/config.py``), read from the firmware."""
    from impfactory.clock import RealClock

    return dict(load_firmware(SimBoard(RealClock()))["config"].DEFAULTS)


def load_config(path: str | Path) -> dict[str, Any]:
    """A ``bench_config.json``'s settings, checked against what the firmware knows."""
    try:
        given = json.loads(Path(path).read_text())
    except OSError as err:
        raise FlashError(f"cannot read controller settings {path}: {err.strerror}") from err
    except ValueError as err:
        raise FlashError(f"controller settings {path} are not JSON: {err}") from err
    return check_config(given, str(path))


def check_config(given: Any, where: str = "settings") -> dict[str, Any]:
    if not isinstance(given, dict):
        raise FlashError(f"{where}: expected a JSON object of settings")
    defaults = firmware_defaults()
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise FlashError(f"{where}: unknown setting {', '.join(unknown)}; known: "
                         f"{', '.join(sorted(defaults))}")
    for key, value in given.items():
        want = type(defaults[key])
        if type(value) is not want:
            raise FlashError(f"{where}: {key} must be a {want.__name__}, got {value!r}")
        if key in GPIO_KEYS and not 0 <= value <= 29:
            raise FlashError(f"{where}: {key} {value} is not an RP2040 GPIO (0..29)")
    pins = [given.get(k, defaults[k]) for k in GPIO_KEYS]
    clash = sorted({p for p in pins if pins.count(p) > 1})
    if clash:
        raise FlashError(f"{where}: GPIO {', '.join(map(str, clash))} is given two jobs")
    return dict(given)


def find_mpremote() -> list[str]:
    """How to run mpremote: the ``mpremote`` on PATH, else ``python -m mpremote``."""
    found = shutil.which("mpremote")
    if found:
        return [found]
    if _module_available():
        return [sys.executable, "-m", "mpremote"]
    raise MpremoteMissingError(
        "mpremote is not installed (it copies the firmware to the board): "
        "pip install 'impfactory[bench]'")


def _module_available() -> bool:
    return importlib.util.find_spec("mpremote") is not None


def flash_command(mpremote: list[str], port: str, config_file: Path,
                  firmware_dir: Path = FIRMWARE_DIR) -> list[str]:
    """The mpremote command line that flashes ``firmware_dir`` and ``config_file``."""
    files = [str(firmware_dir / name) for name in FIRMWARE_FILES]
    return [*mpremote, "connect", port, "fs", "cp", *files, ":",
            "+", "fs", "cp", str(config_file), f":{CONFIG_NAME}", "+", "reset"]


def flash(port: str, config: dict[str, Any] | None = None, *, dry_run: bool = False,
          timeout: float = 120.0) -> list[str]:
    """Copy the firmware (and its settings) to the board on ``port``; returns the command.

    With ``dry_run`` the command is only built (mpremote need not be installed).
    """
    if not port:
        raise FlashError("--port names the board's serial port, e.g. /dev/ttyACM0")
    settings = check_config(config or {})
    with tempfile.TemporaryDirectory(prefix="impfactory-flash-") as tmp:
        config_file = Path(tmp) / CONFIG_NAME
        config_file.write_text(json.dumps(settings, indent=1) + "\n")
        mpremote = ["mpremote"] if dry_run else find_mpremote()
        command = flash_command(mpremote, port, config_file)
        if dry_run:
            return command
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as err:
            raise MpremoteFailedError(f"mpremote did not finish flashing {port} within "
                                      f"{timeout:g} s") from err
        except OSError as err:
            raise MpremoteMissingError(f"cannot run mpremote: {err}") from err
    if result.returncode != 0:
        said = (result.stderr or result.stdout).strip().splitlines()
        raise MpremoteFailedError(f"mpremote could not flash {port}: "
                                  f"{said[-1] if said else f'exit status {result.returncode}'}")
    return command

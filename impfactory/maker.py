"""The module maker's secret: what makes an emulated imp a real module.

Electric Imp keys every module when it makes it, and impCloud knows those keys,
so a device ID nobody made cannot join. impfactory plays both parts: one secret
(32 bytes) derives every emulated module's key (``protocol.linksec.module_key``),
and the emulated impCloud holds the same secret to check them. Devices and the
cloud must therefore share it; it comes from, in order:

1. ``IMPFACTORY_MODULE_SECRET`` (64 hex digits), e.g. to run devices on another
   machine than the cloud, or one secret per test session;
2. the file ``$XDG_STATE_HOME/impfactory/module-secret`` (``~/.local/state/...``),
   created on first use with mode 0600, so every process of one user on one
   machine (a ``cloud serve``, a ``floor``, line workers) agrees without set-up.

Anyone who reads it can make modules, as anyone who stole Electric Imp's keys could;
a stranger on the factory network cannot.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
from pathlib import Path

from impfactory.errors import ImpFactoryError

ENV = "IMPFACTORY_MODULE_SECRET"
_SIZE = 32


class MakerSecretError(ImpFactoryError, ValueError):
    """The module maker's secret is malformed or cannot be read or created."""


def secret_path() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "impfactory" / "module-secret"


def maker_secret() -> bytes:
    """The secret every emulated module's key derives from (see the module docstring)."""
    text = os.environ.get(ENV)
    if text is not None:
        return _parse(text, f"${ENV}")
    path = secret_path()
    with contextlib.suppress(FileNotFoundError):
        return _parse(path.read_text(), str(path))
    return _create(path)


def new_secret() -> str:
    """A fresh secret as ``IMPFACTORY_MODULE_SECRET`` takes it."""
    return secrets.token_hex(_SIZE)


@functools.lru_cache(maxsize=8)
def _parse(text: str, where: str) -> bytes:
    try:
        value = bytes.fromhex(text.strip())
    except ValueError:
        value = b""
    if len(value) != _SIZE:
        raise MakerSecretError(f"{where} must hold {2 * _SIZE} hex digits")
    return value


def _create(path: Path) -> bytes:
    """Create the secret file once; a process that loses the race reads the winner's."""
    text = new_secret()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text + "\n")
        try:
            os.link(tmp, path)  # atomic, and refuses to replace a file another process made
        except FileExistsError:
            return _parse(path.read_text(), str(path))
    except OSError as err:
        raise MakerSecretError(f"cannot create {path}: {err}; set ${ENV}") from err
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    return bytes.fromhex(text)

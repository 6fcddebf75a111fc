"""Settings that survive a restart of the emulated imp.

What an imp keeps in flash across power cycles: WiFi credentials, enrolment
tokens (plan ID and token), static network and proxy settings, the impOS version
and the last code it ran, and its broker identity: the password of its own broker
account and its link key (firmware/registration.py). The identity belongs to the
module, not to its configuration: ``imp.clearconfiguration`` and a clearing
BlinkUp leave it, as an imp keeps its device keys; a blessed device shipped to an
end user reconnects with it. The caller chooses where they live: ``MemoryStore``
(a dict, cheap for thousands of devices on one loop) or ``JsonFileStore`` (one
JSON file per device, for a device that must survive its own process).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

from impfactory.firmware.errors import SettingsError

DEFAULT_IMPOS_VERSION = "43.0.0"


@dataclass
class Settings:
    """One device's persistent configuration (all strings, empty when unset)."""

    ssid: str = ""
    password: str = ""
    plan_id: str = ""
    enrol_token: str = ""
    static_network: dict[str, Any] | None = None
    proxy: dict[str, Any] | None = None
    impos_version: str = DEFAULT_IMPOS_VERSION
    code_sha: str = ""
    device_code: str = ""
    deployment_id: str = ""
    broker_password: str = ""
    link_key: str = ""  # hex
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def has_network(self) -> bool:
        """True when BlinkUp (or code) left WiFi settings to join."""
        return bool(self.ssid)

    @property
    def registered(self) -> bool:
        """True when the device holds its broker account and link key."""
        return bool(self.broker_password and self.link_key)

    @property
    def enrolled(self) -> bool:
        """True when the device holds enrolment tokens."""
        return bool(self.plan_id and self.enrol_token)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Settings:
        """Settings from stored JSON; unknown keys are an error, not silently dropped."""
        if not isinstance(data, dict):
            raise SettingsError(f"settings must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise SettingsError(f"unknown settings keys: {sorted(unknown)}")
        return cls(**data)


class SettingsStore(Protocol):
    """Where a device keeps its ``Settings``."""

    def load(self) -> Settings: ...

    def save(self, settings: Settings) -> None: ...


class MemoryStore:
    """Settings kept in memory: survive an emulated power cycle, not the process.

    What is kept is what a JSON file would keep (a JSON round trip), except the
    device code: the one large value, the same for every device of a deployment,
    is shared (a ``str`` cannot change), not copied into every device's store."""

    def __init__(self, initial: Settings | None = None) -> None:
        self._data = (initial or Settings()).to_dict()

    def load(self) -> Settings:
        return Settings.from_dict(_json_copy(self._data))

    def save(self, settings: Settings) -> None:
        self._data = _json_copy(settings.to_dict())


def _json_copy(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` through JSON and back, its ``device_code`` string shared, not copied."""
    code = data.get("device_code")
    copy: dict[str, Any] = json.loads(json.dumps(
        {k: v for k, v in data.items() if k != "device_code"}))
    if "device_code" in data:
        copy["device_code"] = code if isinstance(code, str) else json.loads(json.dumps(code))
    return copy


class JsonFileStore:
    """Settings in one JSON file, replaced atomically so a crash never leaves half a file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def load(self) -> Settings:
        if not self.path.exists():
            return Settings()
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise SettingsError(f"cannot read settings {self.path}: {err}") from err
        return Settings.from_dict(data)

    def save(self, settings: Settings) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".settings-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(settings.to_dict(), handle, indent=1, sort_keys=True)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

"""Errors the emulated imp raises on purpose.

Every one is an ``ImpFactoryError`` (so the command line prints one line, exit 2)
and also the built-in it resembles, so callers may catch either.
"""

from __future__ import annotations

from impfactory.errors import ImpFactoryError


class DeviceError(ImpFactoryError):
    """Root of the emulated imp's errors."""


class LedEventError(DeviceError, ValueError):
    """An event arrived that the status-LED state machine has no row for."""


class SettingsError(DeviceError, ValueError):
    """Stored settings are unreadable or a value is out of its range."""


class IdentityError(DeviceError, ValueError):
    """A MAC address or device ID is malformed."""


class ConnectionFailed(DeviceError, ConnectionError):
    """The connection manager gave up on one attempt; ``reason`` is the imp reason code."""

    def __init__(self, reason: int, detail: str) -> None:
        super().__init__(f"{detail} (reason {reason})")
        self.reason = reason


class FirmwareImageError(DeviceError, ValueError):
    """A downloaded impOS or firmware image is short, corrupt or fails its SHA-256."""


class DeviceCodeError(DeviceError, RuntimeError):
    """Device code could not be compiled or started."""


class ImpApiError(DeviceError, ValueError):
    """Device code called the imp API with bad arguments (a Squirrel runtime error)."""


class CloudClientError(DeviceError, ConnectionError):
    """The cloud link answered something the device cannot use."""

"""A device's stable identity: its MAC address and device ID.

Electric Imp MACs lie under the company's OUI ``0c:2a:69``; the device ID printed
in impCentral is 16 hex characters, on most imps 4 hex characters followed by the
12-hex MAC (IMP_FACTS §4). Both are derived here from one serial number so a line
of emulated devices gets distinct, reproducible identities::

    serial 0x00012345  ->  MAC 0c2a69012345  ->  device ID 2345 0c2a69012345
                                                 (prefix: low 16 bits of a hash)
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from impfactory.firmware.errors import IdentityError

ELECTRIC_IMP_OUI = "0c2a69"
_MAC_RE = re.compile(r"^[0-9a-f]{12}$")
_ID_RE = re.compile(r"^[0-9a-f]{16}$")


@dataclass(frozen=True)
class DeviceIdentity:
    """The MAC (12 lower-case hex, no separators) and the 16-hex device ID."""

    mac: str
    device_id: str

    def __post_init__(self) -> None:
        if not _MAC_RE.match(self.mac):
            raise IdentityError(f"MAC must be 12 lower-case hex characters, got {self.mac!r}")
        if not _ID_RE.match(self.device_id):
            raise IdentityError(f"device ID must be 16 hex characters, got {self.device_id!r}")

    @classmethod
    def from_serial(cls, serial: int) -> DeviceIdentity:
        """The identity of the ``serial``-th device made (0 <= serial < 2**24)."""
        if not 0 <= serial < 1 << 24:
            raise IdentityError(f"serial must be in [0, 2**24), got {serial}")
        mac = f"{ELECTRIC_IMP_OUI}{serial:06x}"
        return cls.from_mac(mac)

    @classmethod
    def from_mac(cls, mac: str) -> DeviceIdentity:
        """The identity of the device with ``mac`` (separators and case are ignored)."""
        clean = re.sub(r"[:\-.]", "", mac).lower()
        if not _MAC_RE.match(clean):
            raise IdentityError(f"not a MAC address: {mac!r}")
        prefix = hashlib.sha256(clean.encode()).hexdigest()[:4]
        return cls(mac=clean, device_id=prefix + clean)

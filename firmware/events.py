"""Stage events a device announces, for line runners, reports and tests to observe.

Each is recorded as ``DeviceRecord(time, kind, detail)`` on the device clock, kept
in ``device.events`` and passed to every subscriber as it happens; ``wait_for``
lets async code await the next one of a kind.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any


class DeviceEvent(enum.StrEnum):
    """What happened to a device (``detail`` says more where noted)."""

    POWERED_ON = "powered_on"
    POWERED_OFF = "powered_off"
    POWER_PROBLEM = "power_problem"  # detail: supply voltage
    BLINKUP_STARTED = "blinkup_started"
    BLINKUP_OK = "blinkup_ok"  # detail: the decoded BlinkUpConfig
    BLINKUP_FAILED = "blinkup_failed"  # detail: the error text
    BLINKUP_WINDOW_CLOSED = "blinkup_window_closed"
    CONNECT_FAILED = "connect_failed"  # detail: imp reason code (int)
    ONLINE = "online"
    REGISTERED = "registered"  # got its own broker account (detail: slots tried)
    IGNORED = "ignored"  # a message not acted on (detail: what and why)
    ENROLLED = "enrolled"  # detail: plan ID
    ENROL_REFUSED = "enrol_refused"  # detail: cloud error code
    ASSIGNED = "assigned"  # detail: device group type
    IMPOS_UPDATING = "impos_updating"  # detail: version
    IMPOS_UPDATED = "impos_updated"  # detail: version
    IMAGE_FAILED = "image_failed"  # detail: the error text
    BLOCK_REFETCHED = "block_refetched"  # a corrupt or short block (detail: (sha, index, why))
    CODE_STARTED = "code_started"  # detail: deployment ID
    TESTING = "testing"  # DUT firmware started (detail: deployment ID)
    CODE_ERROR = "code_error"  # detail: the runtime error line
    BLESSED = "blessed"
    TEST_FAILED = "test_failed"  # server.bless(false)
    BLESS_REFUSED = "bless_refused"  # detail: the server's reason
    BLINKUP_SENT = "blinkup_sent"  # fixture only; detail: the FixtureFlash
    FACTORY_REFUSED = "factory_refused"
    OFFLINE = "offline"
    LOG = "log"  # detail: the line
    AGENT_MESSAGE = "agent_message"  # detail: (name, data)


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """One event: when (device clock), what, and the detail."""

    time: float
    kind: DeviceEvent
    detail: Any = None

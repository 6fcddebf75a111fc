"""Serial ports by URL: the one way impfactory reaches a serial device.

pyserial picks the back end from the URL, so the code above never knows whether
it talks to a USB adapter, a pty served by the emulated bench controller, a TCP
bridge or a software loopback:

=====================  ===============================================
``/dev/ttyUSB0``       a USB serial adapter (any device path)
``/dev/pts/7``         a pty, e.g. the one ``impfactory bench emulate`` prints
``loop://``            pyserial's software loopback (everything sent comes back)
``socket://host:port`` raw TCP (ser2net, an ESP-Link, ...)
``rfc2217://host:port`` a Telnet COM-port server (RFC 2217)
``spy://URL``          any of the above, with its traffic hex-dumped to stderr
=====================  ===============================================
"""

from __future__ import annotations

from typing import Any

import serial

from impfactory.errors import ImpFactoryError

DEFAULT_BAUD = 115200


class SerialPortError(ImpFactoryError, OSError):
    """A serial port could not be opened, or failed while in use."""


def open_port(url: str, baudrate: int = DEFAULT_BAUD, timeout: float = 0.05) -> Any:
    """Open ``url`` as a raw 8N1 port whose reads wait at most ``timeout`` seconds.

    Returns a pyserial ``SerialBase``; every failure, including a URL scheme
    pyserial does not know, is a :class:`SerialPortError` that names the URL.
    """
    if not url:
        raise SerialPortError("no serial port given (a path or a URL such as loop://)")
    options: dict[str, Any] = {"baudrate": baudrate, "timeout": timeout}
    if not url.startswith("rfc2217://"):  # pyserial's RFC 2217 client has no write timeout
        options["write_timeout"] = max(1.0, timeout * 20)
    try:
        port = serial.serial_for_url(url, **options)
    except (serial.SerialException, ValueError, OSError, NotImplementedError) as err:
        raise SerialPortError(f"cannot open serial port {url}: {err}") from err
    return port

"""Errors of the virtual peripherals, one small tree under ``ImpFactoryError``.

Two kinds of mistake reach this package and they are kept apart:

* ``PeripheralConfigError``: a board description or a model's parameters make no
  sense (unknown model type, a bus name the board lacks, a fault the model does not
  know). That is the user's configuration: one line on the command line, exit 2.
* ``PeripheralUsageError``: device code used a bus or pin the way the imp refuses
  (reading a pin that is not configured, resizing a UART FIFO while it is enabled,
  a baud rate the UART cannot make). On an imp that is a Squirrel runtime error;
  the host turns it into one with the same message.

Neither is raised for what the imp reports through return values: an I²C NACK is
``read() -> None`` plus ``readerror()``, never an exception.
"""

from __future__ import annotations

from impfactory.errors import ImpFactoryError


class PeripheralError(ImpFactoryError):
    """Root of the virtual peripherals' errors."""


class PeripheralConfigError(PeripheralError, ValueError):
    """A board description, model parameter or fault flag is malformed or unknown."""


class PeripheralUsageError(PeripheralError, RuntimeError):
    """Device code called a bus or pin in a way the imp refuses (a Squirrel error there)."""

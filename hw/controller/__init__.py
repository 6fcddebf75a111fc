"""The bench controller: the Pico's MicroPython firmware and what runs it off the board.

* ``firmware/``: the controller's MicroPython sources (package data), the files
  ``impfactory bench flash`` copies to a Raspberry Pi Pico.
* ``sim``: the RP2040 as those sources see it under CPython: ``machine`` (pins,
  PWM, ADC, I²C, UART, timers on the injected clock), ``time``, ``micropython``
  and ``rp2``, injected into the firmware's own namespace only.
* ``wiring``: which bench parts (an emulated DUT and fixture, a TCS34725 model)
  hang on which simulated pins and buses.
* ``flash``: the mpremote command that puts the firmware on a board.
"""

from __future__ import annotations

from pathlib import Path

FIRMWARE_DIR = Path(__file__).resolve().parent / "firmware"
#: The firmware files, in the order they are loaded (main.py last: it runs at boot).
FIRMWARE_FILES = ("wire.py", "lightout.py", "config.py", "controller.py", "usb.py", "main.py")

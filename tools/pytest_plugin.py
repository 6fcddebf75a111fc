"""impfactory's pytest plugin: test your own factory firmware the way this project tests itself.

Installed with the package as the ``impfactory`` pytest11 entry point, so any
pytest suite gets these fixtures without a ``conftest.py`` (docs/pytest-plugin.md
lists each one with an example). The public surface, stable from release to
release, is what ``__all__`` names plus the fixtures:

=====================  =======  ==================================================
fixture                scope    what it gives
=====================  =======  ==================================================
``broker_url``         session  the MQTT broker (``--impfactory-broker``)
``any_broker_url``     session  each broker this machine runs, in turn
``imp_product``        test     ``make(factory, app, ...) -> Product``: a cloud, its
                                REST API and your product's Test Zone
``webhook_receiver``   test     an HTTP endpoint that keeps the webhooks it gets
``factory_line``       test     ``run(firmware=, app=, duts=, ...) -> LineResult``
``bench_port``         test     a bench controller's port (``--impfactory-bench``)
``bench``              test     that controller opened, as a ``Bench``
``impcloud``           test     a bare ``CloudThread`` (lower level)
``cloud_factory``      test     ``async with cloud_factory() as cloud`` (lower level)
``factory_setup``      test     a Test Zone in ``impcloud`` (lower level)
``fake_device``        test     a scripted cloud-link device (lower level)
``imp_fleet_factory``  test     ``make(url) -> Fleet`` of emulated imps (lower level)
``factory_firmware``,  test     the example firmware's text
``application_firmware``
=====================  =======  ==================================================

Options: ``--impfactory-broker URL``, ``--impfactory-bench PORT``,
``--impfactory-lib DIR`` (plugin_options). Helpers to import::

    from impfactory.tools.pytest_plugin import assert_led_sequence, assert_measurement

The fixtures live in topic modules ``plugin_<topic>.py`` beside this one (the only
modules of impfactory that import pytest); this module gathers them, each after
the ones it imports, so pytest can rewrite their assertions.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from typing import Any

#: Where each public name lives (imported on first use: importing the plugin modules
#: here, before pytest registers them, would keep pytest from rewriting their asserts).
PUBLIC = {
    "plugin_asserts": ("LED_STATES", "Reading", "assert_led_sequence", "assert_measurement",
                       "led_states", "measurements"),
    "plugin_bench": ("Bench",),
    "plugin_product": ("GROUP_TYPES", "Product", "Zone"),
    "plugin_station": ("EVENTS", "Dut", "Fixture", "WaitTimeout"),
    "plugin_webhooks": ("WebhookReceiver",),
}
__all__ = sorted(name for names in PUBLIC.values() for name in names)


def __getattr__(name: str) -> Any:
    for module, names in PUBLIC.items():
        if name in names:
            return getattr(importlib.import_module(f"impfactory.tools.{module}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: Modules other plugin modules import come first (pytest rewrites a plugin's
#: assertions only when it is registered before anything imports it).
FIRST = ("plugin_options", "plugin_asserts", "plugin_station")

pytest_plugins = [
    f"impfactory.tools.{name}"
    for name in sorted((info.name for info in pkgutil.iter_modules([str(Path(__file__).parent)])
                        if info.name.startswith("plugin_")),
                       key=lambda n: (FIRST.index(n) if n in FIRST else len(FIRST), n))
]

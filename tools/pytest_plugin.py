"""pytest plugin: fixtures users need to test their own factory firmware.

Installed as the ``impfactory`` pytest11 entry point, so a user's own test suite
gets the same fixtures this project's suite uses (a broker, a cloud, fixtures and
DUTs). The fixtures are defined in topic modules ``plugin_<topic>.py`` beside this
one; this module only gathers them.
"""

from __future__ import annotations

import pkgutil
from pathlib import Path

pytest_plugins = [
    f"impfactory.tools.{info.name}"
    for info in sorted(pkgutil.iter_modules([str(Path(__file__).parent)]), key=lambda i: i.name)
    if info.name.startswith("plugin_")
]

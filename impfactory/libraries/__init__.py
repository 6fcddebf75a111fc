"""Electric Imp's libraries that the emulated impCloud offers to ``#require``.

impCloud resolves ``#require "FactoryTools.lib.nut:2.2.0"`` from Electric Imp's own
library repository, so firmware names a library and never ships it. The emulator
does the same from this folder: Electric Imp's FactoryTools (2.2.0), HTS221
(2.0.2) and CFAx33KL (2.0.0) device libraries, unchanged, under their MIT licences
(``LICENSE.<name>`` beside each). A user's own ``--lib`` folders come first, so a
company can pin or patch a library without touching these.
"""

from __future__ import annotations

from pathlib import Path

LIBRARY_DIR = Path(__file__).resolve().parent
"""The folder the built-in libraries live in (searched after the user's ``--lib``)."""

"""The project's own test session: one module maker's secret for every process it starts.

Devices and clouds must agree on the maker's secret (impfactory/maker.py); a fresh
one per session keeps the suite away from the user's own secret file.
"""

from __future__ import annotations

import os

from impfactory.maker import ENV, new_secret

os.environ.setdefault(ENV, new_secret())

"""The project's own test session: one module maker's secret for every process it starts.

Devices and clouds must agree on the maker's secret (impfactory/maker.py); a fresh
one per session keeps the suite away from the user's own secret file.
"""

from __future__ import annotations

import os

import pytest

from impfactory.maker import ENV, new_secret

os.environ.setdefault(ENV, new_secret())


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--fuzz-cases", type=int, default=3000, metavar="N",
                     help="cases per decoder in tests/test_fuzz.py (3000; issue 13 asks "
                          "100000 for a soak)")

"""``impfactory perf``: benchmarks, each printing the figures it measured.

Benchmarks are commands, not timed tests: the suite proves behaviour, these prove
speed. Each benchmark lives in a module ``perf_<name>.py`` beside this one that
exposes ``register(subparsers)``, so ``perf decoder`` and ``perf line`` grow
independently.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
from typing import Any


def register(sub: Any) -> None:
    parser = sub.add_parser("perf", help="run a benchmark and print its figures")
    perf_sub = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK")
    package = importlib.import_module("impfactory.tools")
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        if info.name.startswith("perf_"):
            importlib.import_module(f"impfactory.tools.{info.name}").register(perf_sub)
    parser.set_defaults(func=lambda args: _no_benchmark(parser, args))


def _no_benchmark(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    parser.print_help()
    return 2

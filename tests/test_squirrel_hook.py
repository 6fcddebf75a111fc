"""The Squirrel watchdog's C hook (impfactory/squirrel/_hook.c) as Python calls it:
what it refuses. What it does is tested with every watchdog test
(tests/test_squirrel_watchdog.py runs each on the C hook and on the Python one)."""

from __future__ import annotations

import pytest
from conftest import IN_CI

from impfactory.squirrel import watchdog


def test_the_c_hooks_calls_refuse_what_they_cannot_use() -> None:
    """Typed errors, never a crash: an address no VM is watched at, a count below 1, a
    slow path that cannot be called."""
    native = watchdog._native
    if native is None:
        if IN_CI:
            pytest.fail("impfactory/squirrel/_hook.c was not built")
        pytest.skip("the C hook was not built")
    with pytest.raises(KeyError):
        native.arm(0x1000, 32)
    with pytest.raises(KeyError):
        native.set_depth(0x1000, 3)
    with pytest.raises(ValueError):
        native.watch(0, 10, 32)
    with pytest.raises(ValueError):
        native.watch(0x1000, 10, 0)
    with pytest.raises(TypeError):
        native.set_slow(5)
    assert native.forget(0x1000) is False
    watched = native.watched()
    native.watch(0x1000, 10, 32)
    with pytest.raises(ValueError):
        native.arm(0x1000, 0)
    assert native.state(0x1000) == (0, 10, 32, 32)
    assert native.forget(0x1000) is True and native.watched() == watched

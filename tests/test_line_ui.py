"""The live progress view: counts per stage follow the DUTs as they move and finish."""

from __future__ import annotations

import pytest

from impfactory.fixture.record import BLESSED, DutRecord
from impfactory.tools.line_ui import LineProgress


def test_counts_follow_the_duts() -> None:
    with LineProgress(3, quiet=True) as view:
        view.stage(0, "blinkup")
        view.stage(1, "blinkup")
        view.stage(0, "testing")
        assert view.description() == "blinkup 1 · testing 1 · blessed 0 · failed 0"
        view.done(DutRecord("d0", "f", 0, final_state=BLESSED))
        view.done(DutRecord("d1", "f", 1, final_state="red", failure_reason="test_failed"))
        view.done(DutRecord("d2", "f", 2, final_state="red"))  # finished before any stage
        assert view.description() == "blessed 1 · failed 2"
        assert not view.active and not view.where


def test_drawn_on_stderr_only(capsys: pytest.CaptureFixture[str]) -> None:
    with LineProgress(1) as view:
        view.stage(0, "blinkup")
        view.done(DutRecord("d0", "f", 0, final_state=BLESSED))
    out = capsys.readouterr()
    assert out.out == "" and "blessed 1" in out.err

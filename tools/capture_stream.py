"""Light captures read in chunks: a capture of any length decodes in bounded memory.

``open_capture(path)`` reads what ``impfactory blinkup`` writes (cmd_blinkup's
docstring has the formats) and returns a ``Capture``: its sample rate, the
``key=value`` words of its comment lines, and ``chunks()``, the samples as numpy
arrays of at most ``CHUNK`` samples, read from the file as they are asked for. A
WAV is read ``CHUNK`` frames at a time; a CSV line by line, and its sample rate
must be known before its samples begin (a ``sample_rate=`` comment above them, or
the first two rows' times), as ``write_capture`` writes it. ``decode_capture``
feeds the chunks to one streaming decoder per line code at once, so the file is
read once whatever ``--line-code`` is, and stops reading at the first bi-level
BlinkUp (the answer ``auto`` prefers). Memory is a chunk plus the decoders'
bounded history, whatever the capture's length.
"""

from __future__ import annotations

import contextlib
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

import numpy as np

from impfactory.errors import ImpFactoryError
from impfactory.protocol.decoder import BlinkUpDecodeError, BlinkUpDecoder, DecodeResult

WAV_FULL_SCALE = 32767
CHUNK = 1 << 16
"""Samples per chunk: 512 KiB of float64."""


class CaptureError(ImpFactoryError, ValueError):
    """A capture file that cannot be read as light samples."""


class NoBlinkUpError(BlinkUpDecodeError):
    """A capture in which no sync run (and so no BlinkUp) was found."""


@dataclass
class Capture:
    """An open capture: its rate and metadata now, its samples as they are read."""

    path: Path
    sample_rate: float
    meta: dict[str, str]
    _chunks: Iterator[np.ndarray]
    samples_read: int = 0

    def chunks(self) -> Iterator[np.ndarray]:
        """The samples, ``CHUNK`` at a time (once: the file is read as they come)."""
        for chunk in self._chunks:
            self.samples_read += len(chunk)
            yield chunk

    @property
    def duration(self) -> float:
        """Seconds of samples read so far."""
        return self.samples_read / self.sample_rate


@contextlib.contextmanager
def open_capture(path: Path, chunk: int = CHUNK) -> Iterator[Capture]:
    """Open ``path`` (``.wav`` by extension, else CSV); raises ``CaptureError``."""
    if path.suffix.lower() == ".wav":
        try:
            src = wave.open(str(path), "rb")  # noqa: SIM115 - closed by the with below
        except (wave.Error, EOFError) as err:
            raise CaptureError(f"{path}: not a readable WAV file: {err}") from err
        with src:
            if src.getnchannels() != 1 or src.getsampwidth() != 2:
                raise CaptureError(f"{path}: need a mono 16-bit WAV")
            yield Capture(path, float(src.getframerate()), {}, _wav_chunks(path, src, chunk))
        return
    try:
        text = path.open(encoding="utf-8")
    except OSError as err:
        raise CaptureError(f"{path}: cannot read: {err}") from err
    with text:
        yield _csv(path, text, chunk)


def _wav_chunks(path: Path, src: wave.Wave_read, chunk: int) -> Iterator[np.ndarray]:
    while True:
        try:
            raw = src.readframes(chunk)
        except (wave.Error, EOFError) as err:
            raise CaptureError(f"{path}: not a readable WAV file: {err}") from err
        if not raw:
            return
        pcm = np.frombuffer(raw[: len(raw) - len(raw) % 2], dtype="<i2")
        yield pcm.astype(np.float64) / WAV_FULL_SCALE


def _rows(path: Path, text: IO[str], meta: dict[str, str]
          ) -> Iterator[tuple[int, float | None, float]]:
    """(line number, time or None, level) of each data row; comment words go to ``meta``."""
    seen = False
    try:
        for number, line in enumerate(text, 1):
            line = line.strip()
            if not line:
                continue
            if line.startswith("#"):
                _comment(line, meta)
                continue
            cells = [c.strip() for c in line.split(",")]
            try:
                numbers = [float(c) for c in cells]
            except ValueError:
                if not seen:  # a header row
                    continue
                raise CaptureError(f"{path}:{number}: not a number: {line[:40]!r}") from None
            seen = True
            yield number, (numbers[0] if len(numbers) > 1 else None), numbers[-1]
    except UnicodeDecodeError as err:
        raise CaptureError(f"{path}: not a text capture (CSV) or a .wav file") from err


def _comment(line: str, meta: dict[str, str]) -> None:
    """The ``key=value`` words of a ``#`` line, into ``meta``."""
    for word in line[1:].split():
        if "=" in word:
            key, _, value = word.partition("=")
            meta[key] = value


def _csv(path: Path, text: IO[str], chunk: int) -> Capture:
    meta: dict[str, str] = {}
    rows = _rows(path, text, meta)
    head = []
    for row in rows:
        head.append(row)
        if "sample_rate" in meta or len(head) == 2:
            break
    if not head:
        raise CaptureError(f"{path}: no samples")
    rate = _rate(path, meta, head)

    def chunks() -> Iterator[np.ndarray]:
        # the rows after the head, parsed as ``_rows`` does, inline: this loop is the
        # command's time on a big capture
        values = [level for _, _, level in head]
        number = head[-1][0]
        append = values.append
        try:
            for line in text:
                number += 1
                line = line.strip()
                if not line:
                    continue
                if line[0] == "#":
                    _comment(line, meta)
                    continue
                cells = line.split(",")
                try:
                    for cell in cells[:-1]:
                        float(cell)
                    append(float(cells[-1]))
                except ValueError:
                    raise CaptureError(f"{path}:{number}: not a number: {line[:40]!r}"
                                       ) from None
                if len(values) >= chunk:
                    yield _finite(path, values)
                    values = []
                    append = values.append
        except UnicodeDecodeError as err:
            raise CaptureError(f"{path}: not a text capture (CSV) or a .wav file") from err
        if values:
            yield _finite(path, values)

    return Capture(path, rate, meta, chunks())


def _rate(path: Path, meta: dict[str, str], head: list[tuple[int, float | None, float]]
          ) -> float:
    rate: float
    if "sample_rate" in meta:
        try:
            rate = float(meta["sample_rate"])
        except ValueError:
            raise CaptureError(f"{path}: bad sample_rate {meta['sample_rate']!r}") from None
    elif len(head) == 2 and head[0][1] is not None and head[1][1] is not None \
            and head[1][1] > head[0][1]:
        rate = 1.0 / (head[1][1] - head[0][1])
    else:
        raise CaptureError(f"{path}: no sample_rate comment above the samples and no time "
                           "column")
    if not np.isfinite(rate) or not rate > 0:
        raise CaptureError(f"{path}: samples and sample rate must be finite numbers")
    return rate


def _finite(path: Path, values: list[float]) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(array)):
        raise CaptureError(f"{path}: samples and sample rate must be finite numbers")
    return array


LineCode = Literal["auto", "bilevel", "trilevel"]
Code = Literal["bilevel", "trilevel"]


def decode_capture(capture: Capture, line_code: LineCode = "auto",
                   symbol_rate: float | None = None) -> DecodeResult | BlinkUpDecodeError:
    """The first BlinkUp in ``capture`` (bi-level before tri-level with ``auto``), else
    the first failure (bi-level's first), else ``NoBlinkUpError``."""
    codes: tuple[Code, ...] = ("bilevel", "trilevel") if line_code == "auto" else (line_code,)
    decoders = {code: BlinkUpDecoder(capture.sample_rate, code, symbol_rate) for code in codes}
    found: dict[Code, DecodeResult] = {}
    failed: dict[Code, BlinkUpDecodeError] = {}

    def take(code: Code, outcomes: list[DecodeResult | BlinkUpDecodeError]) -> None:
        for outcome in outcomes:
            if isinstance(outcome, DecodeResult):
                found.setdefault(code, outcome)
                decoders.pop(code, None)  # its answer is in: read no more for it
                return
            failed.setdefault(code, outcome)

    for chunk in capture.chunks():
        for code, decoder in list(decoders.items()):
            take(code, decoder.feed(chunk))
        if codes[0] in found or not decoders:
            break
    for code, decoder in list(decoders.items()):
        take(code, decoder.flush())
    for code in codes:
        if code in found:
            return found[code]
    for code in codes:
        if code in failed:
            return failed[code]
    return NoBlinkUpError(f"no BlinkUp sync run found in {capture.duration:.4g} s of signal")

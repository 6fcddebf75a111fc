"""Two fixes to freshly compiled bytecode: true caller lines, fewer hook events.

A compiled top-level closure is written out with ``sq_writeclosure``, patched,
and read back with ``sq_readclosure``. The stream is Squirrel 3.0.5's
(``SQFunctionProto::Save``), for this 32-bit build::

    FAFA  'SQIR' 1 4 4                      stream tag, head, sizes of char/int/float
    proto: 'PART' name-objects 'PART' 8 x int32 counts
           'PART' literals 'PART' parameters 'PART' outer values 'PART' locals
           'PART' line infos (int32 line, int32 op)*   <- patched
           'PART' default params 'PART' instructions (int32 arg1, u8 op, arg0, arg2, arg3)*
           'PART' nested protos...   stacksize int32, generator u8, varparams int32
    'TAIL'
    object: u32 type, then int32 (integer, bool), float32, or int32 length + bytes (string)

1. **Lines.** Each line info points at its line's ``OP_LINE``; a caller's saved
   instruction pointer is just past its call, which is that same index when the
   call ends its line, so Squirrel 3.0.5 names the *next* line for every caller
   frame whose call is the last thing on its line (3.1 fixed ``GetLine``). Line
   infos are moved one instruction on, past their ``OP_LINE``: a frame stopped
   anywhere in line *n*, or just after it, reports *n*.
2. **Events.** Every ``OP_LINE`` is a debug-hook event, a ~0.15 µs Python call.
   The watchdog needs one per loop iteration, not one per statement: in each
   loop (the span from a backward jump's target to the jump) the first
   ``OP_LINE``, the body's first statement, is kept, and every other ``OP_LINE``
   becomes ``JMP +0``. Straight-line code then costs no line events at all;
   every call is still an event.

If the stream is not what this module expects, ``reshape`` leaves the closure
as the compiler made it.
"""

from __future__ import annotations

import ctypes
import itertools
import struct
from ctypes import c_int, c_void_p
from typing import Any

from impfactory.squirrel import capi

STREAM_TAG = 0xFAFA
HEAD = 0x53514952  # 'SQIR'
PART = 0x50415254  # 'PART'
TAIL = 0x5441494C  # 'TAIL'
OP_LINE = 0x00
OP_JMP = 0x1C

_T_NULL, _T_INTEGER, _T_FLOAT, _T_BOOL, _T_STRING = (
    capi.OT_NULL, capi.OT_INTEGER, capi.OT_FLOAT, capi.OT_BOOL, capi.OT_STRING)


class BytecodeError(ValueError):
    """The stream is not the layout this module knows."""


def patch(data: bytes) -> bytes:
    """The closure stream ``data`` with both fixes applied (see the module doc)."""
    buf = bytearray(data)
    if struct.unpack_from("<H", buf, 0)[0] != STREAM_TAG:
        raise BytecodeError("no bytecode stream tag")
    if struct.unpack_from("<4I", buf, 2) != (HEAD, 1, 4, 4):
        raise BytecodeError("not a 32-bit Squirrel 3.0 closure stream")
    pos = _proto(buf, 18)
    if struct.unpack_from("<I", buf, pos)[0] != TAIL or pos + 4 != len(buf):
        raise BytecodeError("the stream does not end where expected")
    return bytes(buf)


def _tag(buf: bytearray, pos: int) -> int:
    if struct.unpack_from("<I", buf, pos)[0] != PART:
        raise BytecodeError(f"no part tag at {pos}")
    return pos + 4


def _object(buf: bytearray, pos: int) -> int:
    kind = struct.unpack_from("<I", buf, pos)[0]
    pos += 4
    if kind == _T_NULL:
        return pos
    if kind in (_T_INTEGER, _T_BOOL, _T_FLOAT):
        return pos + 4
    if kind == _T_STRING:
        length: int = struct.unpack_from("<i", buf, pos)[0]
        return pos + 4 + length
    raise BytecodeError(f"object of type {kind:#x} at {pos}")


def _proto(buf: bytearray, pos: int) -> int:
    pos = _tag(buf, pos)
    pos = _object(buf, _object(buf, pos))
    pos = _tag(buf, pos)
    (nliterals, nparameters, nouters, nlocals, nlines, ndefaults, ninstructions,
     nfunctions) = struct.unpack_from("<8i", buf, pos)
    pos = _tag(buf, pos + 32)
    for _ in range(nliterals):
        pos = _object(buf, pos)
    pos = _tag(buf, pos)
    for _ in range(nparameters):
        pos = _object(buf, pos)
    pos = _tag(buf, pos)
    for _ in range(nouters):
        pos = _object(buf, _object(buf, pos + 4))
    pos = _tag(buf, pos)
    for _ in range(nlocals):
        pos = _object(buf, pos) + 12
    pos = _tag(buf, pos)
    lines_at = pos
    pos = _tag(buf, pos + 8 * nlines)
    pos = _tag(buf, pos + 4 * ndefaults)
    code_at = pos
    pos = _tag(buf, pos + 8 * ninstructions)
    _fix(buf, lines_at, nlines, code_at, ninstructions)
    for _ in range(nfunctions):
        pos = _proto(buf, pos)
    return pos + 9


def _fix(buf: bytearray, lines_at: int, nlines: int, code_at: int, n: int) -> None:
    ops = [buf[code_at + 8 * i + 4] for i in range(n)]
    for i in range(nlines):
        at = lines_at + 8 * i + 4
        op = struct.unpack_from("<i", buf, at)[0]
        if 0 <= op < n and ops[op] == OP_LINE:
            struct.pack_into("<i", buf, at, op + 1)
    keep: set[int] = set()
    for j, op in enumerate(ops):
        if op != OP_JMP:
            continue
        offset = struct.unpack_from("<i", buf, code_at + 8 * j)[0]
        if offset >= 0:
            continue
        for k in range(j + 1 + offset, j + 1):
            if ops[k] == OP_LINE:
                keep.add(k)
                break
    for k, op in enumerate(ops):
        if op == OP_LINE and k not in keep:
            struct.pack_into("<iBBBB", buf, code_at + 8 * k, 0, OP_JMP, 0, 0, 0)


# --- reading and writing closures through the C API --------------------------------
#
# The VM writes and reads a closure a few bytes at a time through a callback. The
# fast path hands it the standard library's own ``file_write``/``file_read``
# (exported by the binding) with an in-memory ``FILE*`` (``open_memstream``,
# ``fmemopen``), so no Python runs per field; ctypes callbacks are the fallback.

SQWRITEFUNC = ctypes.CFUNCTYPE(c_int, c_void_p, c_void_p, c_int)
_sq_writeclosure = capi._fn("sq_writeclosure", c_int, c_void_p, c_void_p, c_void_p)
_sq_readclosure = capi._fn("sq_readclosure", c_int, c_void_p, c_void_p, c_void_p)


def _native_io() -> tuple[int, int, Any, Any, Any, Any] | None:
    try:
        lib = ctypes.CDLL(capi.LIBRARY_PATH)
        libc = ctypes.CDLL(None)
        read = ctypes.cast(lib._Z9file_readPvS_i, c_void_p).value
        write = ctypes.cast(lib._Z10file_writePvS_i, c_void_p).value
        memstream = libc.open_memstream
        fmemopen = libc.fmemopen
        fclose = libc.fclose
        free = libc.free
    except (OSError, AttributeError):  # pragma: no cover - another platform
        return None
    memstream.restype = c_void_p
    memstream.argtypes = [ctypes.POINTER(c_void_p), ctypes.POINTER(ctypes.c_size_t)]
    fmemopen.restype = c_void_p
    fmemopen.argtypes = [c_void_p, ctypes.c_size_t, ctypes.c_char_p]
    fclose.argtypes = [c_void_p]
    free.argtypes = [c_void_p]
    if not read or not write:  # pragma: no cover
        return None
    return read, write, memstream, fmemopen, fclose, free


_NATIVE = _native_io()


def dump(v: int) -> bytes | None:
    """The closure on top of ``v``'s stack as a stream (``None`` if it cannot be)."""
    if _NATIVE is not None:
        _read_fn, write_fn, memstream, _fmemopen, fclose, free = _NATIVE
        ptr, size = c_void_p(), ctypes.c_size_t()
        stream = memstream(ctypes.byref(ptr), ctypes.byref(size))
        if stream:
            ok = _sq_writeclosure(v, write_fn, stream) >= 0
            fclose(stream)
            data = ctypes.string_at(ptr.value, size.value) if ok and ptr.value else None
            free(ptr)
            return data
    token = next(_tokens)  # pragma: no cover - the fallback
    _streams[token] = []
    try:
        if _sq_writeclosure(v, ctypes.cast(_WRITE, c_void_p), token) < 0:
            return None
        return b"".join(c for c in _streams[token] if isinstance(c, bytes))
    finally:
        del _streams[token]


def load(v: int, data: bytes) -> bool:
    """Push the closure ``data`` holds; ``False`` (nothing pushed) if it is refused."""
    if _NATIVE is not None:
        read_fn, _write_fn, _memstream, fmemopen, fclose, _free = _NATIVE
        buffer = ctypes.create_string_buffer(data, len(data))
        stream = fmemopen(buffer, len(data), b"rb")
        if stream:
            try:
                return bool(_sq_readclosure(v, read_fn, stream) >= 0)
            finally:
                fclose(stream)
    token = next(_tokens)  # pragma: no cover - the fallback
    _streams[token] = [data, 0]
    try:
        return bool(_sq_readclosure(v, ctypes.cast(_READ, c_void_p), token) >= 0)
    finally:
        del _streams[token]


_streams: dict[int, list[bytes | int]] = {}  # token -> chunks, or [data, read position]
_tokens = itertools.count(1)


def _write(up: int | None, data: int | None, size: int) -> int:  # pragma: no cover
    stream = _streams.get(up or 0)
    if stream is None or not data:
        return -1
    stream.append(ctypes.string_at(data, size))
    return size


def _read(up: int | None, dest: int | None, size: int) -> int:  # pragma: no cover
    stream = _streams.get(up or 0)
    if stream is None or not dest:
        return -1
    data, at = stream[0], stream[1]
    assert isinstance(data, bytes) and isinstance(at, int)
    if at + size > len(data):
        return -1
    ctypes.memmove(dest, data[at:at + size], size)
    stream[1] = at + size
    return size


_WRITE = SQWRITEFUNC(_write)
_READ = SQWRITEFUNC(_read)


def reshape(v: int) -> bytes | None:
    """Replace the closure on top of ``v``'s stack with its patched twin and return
    the patched stream (for ``load`` into other VMs); ``None``, closure untouched,
    if it cannot be written, patched or read back."""
    data = dump(v)
    if data is None:
        return None
    try:
        patched = patch(data)
    except (BytecodeError, struct.error):
        return None
    if not load(v, patched):
        return None
    capi.sq_remove(v, -2)
    return patched

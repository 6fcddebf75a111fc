"""What a VM costs in memory, measured at the process's allocator.

Squirrel 3.0.5 allocates through ``malloc`` and has no allocator hook, and the
binding gives no per-VM count. So the memory of one VM is measured from outside:
glibc's ``mallinfo2()`` says how many bytes the process has allocated right now
(``uordblks``: in use from the heap arenas, ``hblkhd``: in blocks of their own).
A reading walks the allocator's free lists: half a microsecond in a small
process, up to ~0.15 ms in a large, busy one (a cloud with a line of devices), so
only VMs with a memory limit are measured. ``Vm`` reads it before and after
everything such a VM runs (creation, compiles, every entry, ``collect``) and adds
the difference to the VM's ``heap_bytes``: the net bytes its own work left
allocated. The watchdog reads it every ``MEMORY_CHECK_S`` of an entry's time
while Squirrel runs, so a loop that allocates is stopped inside the entry, not
after it.

What this counts, plainly:

* everything Squirrel allocates and frees while the VM runs, freed cycles
  included once ``collect`` has run;
* Python objects a native leaves behind *that glibc allocates* (over 512 bytes;
  small Python objects come from Python's own arenas and are not seen) — a host
  that caches large values for its VM is charged for them;
* allocations of other threads that happen while the VM runs (the GIL is held,
  so only threads outside Python): noise, small for short entries.

It does not see memory freed outside the VM's entries (a handle released by the
host between calls lowers nothing until the VM's next entry flushes it), so the
figure errs high, never low. Where the C library is not glibc ≥ 2.33 there is no
meter (``allocated()`` is ``None``) and no memory limit can be enforced;
``Vm`` then reports ``heap_bytes`` as 0.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def _glibc_meter() -> Callable[[], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallinfo2 = libc.mallinfo2
    except (OSError, AttributeError):
        return None
    mallinfo2.restype = _MallInfo2
    mallinfo2.argtypes = []

    def allocated() -> int:
        info = mallinfo2()
        return int(info.uordblks + info.hblkhd)

    return allocated


METER: Callable[[], int] | None = _glibc_meter()
"""Bytes the process has allocated now, or ``None`` where it cannot be read."""


def allocated() -> int | None:
    """Bytes the process has allocated from the C heap now (``None``: no meter here)."""
    return METER() if METER is not None else None

"""One Squirrel state shared by many VMs: each VM a thread of it, with a root of its own.

A whole Squirrel VM (``sq_open``) costs some 70 KiB before any code: its
interned strings, its standard library's closures, its own compiled copy of
every unit. Squirrel can share all of that between *threads* of one state
(``sq_newthread``): a thread has its own stack, call stack, root table, error
handler and debug hook, and shares the state's strings, default delegates,
registry, const table and compiled function prototypes. Here a thread with the
sandbox's root costs ~5 KiB (~16 with its own standard classes), and a unit
compiled once serves every thread::

    SharedState (one per OS thread that makes VMs: ``current()``)
      owner       a binding VM: its entry closure, raising hook, impOS's wrappers
      template    the allow-listed root table, copied into each thread's root
      compiled    unit -> its top-level closure (patched), shared by every thread
      threads     Vm -> sq_newthread(owner), root = a copy of the template

**Entering a thread.** The binding's entry closure runs on the VM its pybind
holder names, under pybind's C++ ``try`` (``binding``). ``enter`` points that
holder at the thread for the call, so the thread, not the owner, runs the
entry: its root is ``this`` and the global fallback, its debug hook is the
watchdog's, and a C++ exception from the raising hook unwinds the thread's
frames only. The owner never runs Squirrel after it is set up, so a stopped
thread leaves the state usable: the thread is dead and is released (measured:
2,000 threads stopped in a loop, the state and three other threads' globals
intact, the cycle collector clean). Entries nest (a native entering another
VM) and interleave (a native waiting in ``away`` while another VM runs): each
entry restores the holder it found, ``resume`` sets it again.

**What each VM keeps to itself.** Its root table and ``math`` table are copies
(code that replaces a global changes nothing another VM sees); its standard
classes (``blob`` and its stream base, ``regexp``) are made for it
(``sandbox.own_classes``: Squirrel code can add methods to a class), and the
registry's ``std_blob``, of which ``readblob`` makes blobs, is the running VM's
during each entry; host classes, natives, instances, and everything its code
makes are its own; its const table is swapped in around each of its compiles, so
``const`` and ``enum`` declared by one VM's code are not seen by another's
compiler. What is shared holds nothing Squirrel code can change: compiled
prototypes and strings, the standard library's native closures, impOS's
wrapper closures, the default delegates (unreachable from Squirrel).

**Threads of the OS.** Squirrel's state is not thread-safe: entries of the
state's VMs from different OS threads are serialised by ``lock`` (re-entrant:
nesting and greenlet switches on one OS thread are fine).

**Cycles.** A closed VM's thread is released at once, and with it everything
that only it held; what its code left in reference cycles waits for the
state's cycle collector, which looks at every VM of the state. It runs after
``COLLECT_EVERY`` closes, or a quarter of the live VMs if more, so its cost per
closed VM stays flat however many VMs the state holds.
"""

from __future__ import annotations

import ctypes
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from impfactory.squirrel import capi, impos, sandbox
from impfactory.squirrel.binding import PybindVm
from impfactory.squirrel.capi import SQObj

COLLECT_EVERY = 64
"""VM closes between two runs of the state's cycle collector (at least)."""
COMPILE_CACHE_SIZE = 32
"""Compiled units a state keeps for its VMs."""


class SharedStateUnavailable(RuntimeError):
    """This build of the binding does not let the holder be pointed at a thread."""


class SharedState:
    """One Squirrel state and the VMs (threads) made in it; see the module doc."""

    def __init__(self, stack_size: int = 256) -> None:
        owner = self.owner = PybindVm(stack_size)
        if owner._close_flag is None:  # pragma: no cover - only with another binding build
            owner.close()
            raise SharedStateUnavailable("the binding's VM holder was not found")
        self._holder = ctypes.c_void_p.from_address(
            owner._close_flag - ctypes.sizeof(ctypes.c_void_p)
        )
        v = self.v = owner.v
        impos.install(v)  # before debug info is on: its wrappers cost no line events
        self.lock = threading.RLock()
        self.compiled: OrderedDict[Any, tuple[Any, SQObj, dict[Any, Any]]] = OrderedDict()
        self.templates: dict[str, SQObj] = {}
        self.live = 0
        self.closed_since_collect = 0
        self.empty_consts = self.new_table()
        self.depth = 0  # entries under way (nested, or waiting in Vm.away)
        self._blob_class: SQObj | None = None  # the registry's std_blob, when one of a VM
        self._finalizer = weakref.finalize(self, owner.close)

    # --- what VMs of the state share ------------------------------------------------

    def template(self, environment: str) -> SQObj:
        """The allow-listed root for ``environment`` (made once, from the owner's
        root with impOS's wrappers in it)."""
        with self.lock:
            table = self.templates.get(environment)
            if table is None:
                table = self.templates[environment] = sandbox.template(self.v, environment)
            return table

    def new_table(self) -> SQObj:
        with self.lock:
            capi.sq_newtable(self.v)
            table = capi.stack_object(self.v, -1)
            capi.sq_pop(self.v, 1)
            return table

    def remember(self, key: Any, value: tuple[Any, SQObj, dict[Any, Any]]) -> None:
        """Keep a compiled unit (its closure held) for the next VM compiling it."""
        with self.lock:
            self.compiled[key] = value
            while len(self.compiled) > COMPILE_CACHE_SIZE:
                _, (_, closure, _) = self.compiled.popitem(last=False)
                capi.sq_release(self.v, ctypes.byref(closure))

    def recall(self, key: Any) -> tuple[Any, SQObj, dict[Any, Any]] | None:
        with self.lock:
            found = self.compiled.get(key)
            if found is not None:
                self.compiled.move_to_end(key)
            return found

    # --- threads --------------------------------------------------------------------

    def new_thread(self, stack_size: int) -> SharedThread:
        return SharedThread(self, stack_size)

    def enter(self, v: int, blob_class: SQObj) -> None:
        """Run the entry closure on thread ``v`` (the job filled in by the caller),
        its blob class the registry's ``std_blob`` meanwhile."""
        holder = self._holder
        prev, prev_blob = holder.value, self._blob_class
        holder.value = v
        self.use_blob_class(blob_class)
        self.depth += 1
        try:
            self.owner.enter()
        finally:
            self.depth -= 1
            holder.value = prev
            if self.depth:  # back in the entry that called this one
                self.use_blob_class(prev_blob)

    def resume(self, v: int, blob_class: SQObj) -> None:
        """Thread ``v``'s entry goes on after a wait (``Vm.away``)."""
        self._holder.value = v
        self.use_blob_class(blob_class)

    def own_classes(self, v: int) -> SQObj:
        """Give thread ``v`` its own standard classes (``sandbox.own_classes``); its
        blob class, held for the caller. Registering them leaves them in the
        registry: the blob class of a VM whose entry is under way is put back."""
        with self.lock:
            sandbox.own_classes(v)
            capi.sq_pushregistrytable(v)
            capi.sq_pushstring(v, b"std_blob", -1)
            capi.sq_rawget(v, -2)
            blob_class = capi.stack_object(v, -1)
            capi.sq_pop(v, 2)
            running, self._blob_class = self._blob_class, None
            self.use_blob_class(running)
            return blob_class

    def forget_blob_class(self, blob_class: SQObj) -> None:
        """A closing VM's blob class is not put back by ``own_classes``."""
        if self._blob_class is blob_class:
            self._blob_class = None

    def use_blob_class(self, blob_class: SQObj | None) -> None:
        """Make ``blob_class`` the registry's ``std_blob``: the class the standard
        library's natives make blobs of (``readblob``), which must be the running
        VM's own."""
        if blob_class is None or blob_class is self._blob_class:
            return
        v = self.v
        capi.sq_pushregistrytable(v)
        capi.sq_pushstring(v, b"std_blob", -1)
        capi.sq_pushobject(v, blob_class)
        capi.sq_rawset(v, -3)
        capi.sq_pop(v, 1)
        self._blob_class = blob_class

    def thread_closed(self) -> None:
        with self.lock:
            self.live -= 1
            self.closed_since_collect += 1
            if self.closed_since_collect >= max(COLLECT_EVERY, self.live // 4):
                self.collect()

    def collect(self) -> int:
        """Run the cycle collector over every VM of the state; objects freed."""
        with self.lock:
            self.closed_since_collect = 0
            return int(capi.sq_collectgarbage(self.v))

    def close(self) -> None:
        """Free the state (idempotent): only once no VM of it is open."""
        self._finalizer()


class SharedThread:
    """One VM's thread of a ``SharedState``: what ``Vm`` needs of its backend
    (``v``, ``job``, ``enter``, ``arm_raiser``, ``close``), as ``PybindVm`` has it."""

    shared = True

    def __init__(self, state: SharedState, stack_size: int) -> None:
        self.state = state
        owner = state.v
        with state.lock:
            self.v: int = capi.sq_newthread(owner, stack_size) or 0
            if not self.v:  # pragma: no cover - out of memory
                raise MemoryError("Squirrel could not make a thread")
            self._obj = capi.stack_object(owner, -1)
            capi.sq_pop(owner, 1)
            state.live += 1
        self.job = state.owner.job
        self.lock = state.lock
        self.blob_class: SQObj | None = None  # the VM's own (``sandbox.own_classes``)

    def enter(self) -> None:
        assert self.blob_class is not None
        self.state.enter(self.v, self.blob_class)

    def resume(self) -> None:
        assert self.blob_class is not None
        self.state.resume(self.v, self.blob_class)

    def arm_raiser(self) -> None:
        """Make the raising hook the thread's debug hook: the next line or call stops it."""
        capi.sq_pushobject(self.v, self.state.owner.raiser)
        capi.sq_setdebughook(self.v)

    def close(self, held: Iterable[SQObj] = ()) -> None:
        """Release ``held`` (the VM's own references into the state) and the thread
        (dead or not), and with it whatever only it held."""
        with self.state.lock:
            for obj in held:
                capi.sq_release(self.v, ctypes.byref(obj))
            if self.blob_class is not None:
                self.state.forget_blob_class(self.blob_class)
            capi.sq_setnativedebughook(self.v, None)
            capi.sq_release(self.state.v, ctypes.byref(self._obj))
            self.state.thread_closed()


_local = threading.local()
_STATES: weakref.WeakSet[SharedState] = weakref.WeakSet()


def collect_all() -> int:
    """Run every live state's cycle collector (what closed VMs left in cycles is
    then freed: for a measurement); objects freed."""
    return sum(state.collect() for state in list(_STATES))


def current() -> SharedState:
    """The calling OS thread's shared state (made on first use)."""
    state: SharedState | None = getattr(_local, "state", None)
    if state is None:
        state = _local.state = SharedState()
        _STATES.add(state)
    return state

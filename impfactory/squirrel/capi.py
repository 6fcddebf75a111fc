"""The Squirrel 3.0.5 C API, reached with ctypes inside the pybind11 binding's extension.

``squirrel-lang-sq305`` (pinned in ``pyproject.toml``: this module depends on its
binary layout) compiles the reference VM into its extension ``_squirrel`` and
exports the whole C API from it, so ``ctypes.PyDLL`` on that file reaches
``sq_open`` … ``sq_stackinfos`` and ``sqstd_*`` directly. Its build is the 32-bit
flavour an imp has::

    SQInteger  int32          SQFloat  float32          SQChar  char (bytes)
    SQObject   { int32 type; 4 bytes padding; 8-byte union }  = 16 bytes
    HSQUIRRELVM  a pointer, passed here as a Python int

``PyDLL`` keeps the GIL across calls (they are all short); callbacks (natives, the
debug hook, the error handlers) are ``CFUNCTYPE`` objects. A C++ exception may
never unwind through a ctypes frame, so nothing called through here may run
Squirrel code once the watchdog has armed its raising hook (see ``watchdog``):
only raw table access (``sq_rawget``/``sq_rawset``), never ``sq_get``,
``sq_tostring`` on delegable values, ``sq_cmp`` or ``sq_call`` of a closure.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from ctypes import POINTER, c_char_p, c_float, c_int, c_uint, c_uint64, c_void_p
from typing import Any

import _squirrel

LIBRARY_PATH: str = _squirrel.__file__
_lib = ctypes.PyDLL(LIBRARY_PATH)


class SQObj(ctypes.Structure):
    """``HSQOBJECT``: a type tag and an 8-byte value (pointer, int32 or float32)."""

    _fields_ = [("type", c_int), ("raw", c_uint64)]


class SQStackInfos(ctypes.Structure):
    _fields_ = [("funcname", c_void_p), ("source", c_void_p), ("line", c_int)]


# --- object types (squirrel.h) ---------------------------------------------------
_REF_COUNTED = 0x08000000
_NUMERIC = 0x04000000
_DELEGABLE = 0x02000000
_CANBEFALSE = 0x01000000

OT_NULL = 0x00000001 | _CANBEFALSE
OT_INTEGER = 0x00000002 | _NUMERIC | _CANBEFALSE
OT_FLOAT = 0x00000004 | _NUMERIC | _CANBEFALSE
OT_BOOL = 0x00000008 | _CANBEFALSE
OT_STRING = 0x00000010 | _REF_COUNTED
OT_TABLE = 0x00000020 | _REF_COUNTED | _DELEGABLE
OT_ARRAY = 0x00000040 | _REF_COUNTED
OT_USERDATA = 0x00000080 | _REF_COUNTED | _DELEGABLE
OT_CLOSURE = 0x00000100 | _REF_COUNTED
OT_NATIVECLOSURE = 0x00000200 | _REF_COUNTED
OT_GENERATOR = 0x00000400 | _REF_COUNTED
OT_USERPOINTER = 0x00000800
OT_THREAD = 0x00001000 | _REF_COUNTED
OT_CLASS = 0x00004000 | _REF_COUNTED
OT_INSTANCE = 0x00008000 | _REF_COUNTED | _DELEGABLE
OT_WEAKREF = 0x00010000 | _REF_COUNTED

TYPE_NAMES = {
    OT_NULL: "null", OT_INTEGER: "integer", OT_FLOAT: "float", OT_BOOL: "bool",
    OT_STRING: "string", OT_TABLE: "table", OT_ARRAY: "array", OT_USERDATA: "userdata",
    OT_CLOSURE: "function", OT_NATIVECLOSURE: "function", OT_GENERATOR: "generator",
    OT_USERPOINTER: "userpointer", OT_THREAD: "thread", OT_CLASS: "class",
    OT_INSTANCE: "instance", OT_WEAKREF: "weakref",
}

#: Types whose ``tostring`` can run a ``_tostring`` metamethod (Squirrel code).
DELEGABLE = _DELEGABLE

#: The blob class's type tag (sqstdblobimpl.h: SQSTD_STREAM_TYPE_TAG | 2).
BLOB_TYPE_TAG = 0x80000002

#: Debug hook event kinds.
HOOK_LINE = ord("l")
HOOK_CALL = ord("c")
HOOK_RETURN = ord("r")

INT_MIN = -(2**31)
INT_MAX = 2**31 - 1

# --- callback types ---------------------------------------------------------------
SQFUNCTION = ctypes.CFUNCTYPE(c_int, c_void_p)
SQDEBUGHOOK = ctypes.CFUNCTYPE(None, c_void_p, c_int, c_void_p, c_int, c_void_p)
#: The debug hook as ``watchdog`` declares it: (vm, event, source, line) of the five.
SQDEBUGHOOK_SHORT = ctypes.CFUNCTYPE(None, c_void_p, c_int, c_void_p, c_int)
SQCOMPILERERROR = ctypes.CFUNCTYPE(None, c_void_p, c_void_p, c_void_p, c_int, c_int)
SQRELEASEHOOK = ctypes.CFUNCTYPE(c_int, c_void_p, c_int)


def _fn(name: str, restype: Any, *argtypes: Any) -> Any:
    f = getattr(_lib, name)
    f.restype = restype
    f.argtypes = list(argtypes)
    return f


V = c_void_p  # HSQUIRRELVM
_OBJP = POINTER(SQObj)

sq_close: Callable[[int], None] = _fn("sq_close", None, V)
sq_setprintfunc: Callable[[int, Any, Any], None] = _fn(
    "sq_setprintfunc", None, V, c_void_p, c_void_p)
sq_setcompilererrorhandler: Callable[[int, Any], None] = _fn(
    "sq_setcompilererrorhandler", None, V, SQCOMPILERERROR)
sq_compilebuffer: Callable[[int, bytes, int, bytes, int], int] = _fn(
    "sq_compilebuffer", c_int, V, c_char_p, c_int, c_char_p, c_uint)
sq_enabledebuginfo: Callable[[int, int], None] = _fn("sq_enabledebuginfo", None, V, c_uint)
sq_setnativedebughook: Callable[[int, Any], None] = _fn(
    "sq_setnativedebughook", None, V, c_void_p)
sq_setdebughook: Callable[[int], None] = _fn("sq_setdebughook", None, V)
sq_seterrorhandler: Callable[[int], None] = _fn("sq_seterrorhandler", None, V)

sq_gettop: Callable[[int], int] = _fn("sq_gettop", c_int, V)
sq_settop: Callable[[int, int], None] = _fn("sq_settop", None, V, c_int)
sq_pop: Callable[[int, int], None] = _fn("sq_pop", None, V, c_int)
sq_remove: Callable[[int, int], None] = _fn("sq_remove", None, V, c_int)
sq_push: Callable[[int, int], None] = _fn("sq_push", None, V, c_int)
sq_reservestack: Callable[[int, int], int] = _fn("sq_reservestack", c_int, V, c_int)

sq_newtable: Callable[[int], None] = _fn("sq_newtable", None, V)
sq_newarray: Callable[[int, int], None] = _fn("sq_newarray", None, V, c_int)
sq_newclosure: Callable[[int, Any, int], None] = _fn(
    "sq_newclosure", None, V, SQFUNCTION, c_uint)
sq_setnativeclosurename: Callable[[int, int, bytes], int] = _fn(
    "sq_setnativeclosurename", c_int, V, c_int, c_char_p)
sq_newclass: Callable[[int, int], int] = _fn("sq_newclass", c_int, V, c_uint)
sq_createinstance: Callable[[int, int], int] = _fn("sq_createinstance", c_int, V, c_int)
sq_setinstanceup: Callable[[int, int, int], int] = _fn(
    "sq_setinstanceup", c_int, V, c_int, c_void_p)
sq_getinstanceup: Callable[[int, int, Any, int], int] = _fn(
    "sq_getinstanceup", c_int, V, c_int, POINTER(c_void_p), c_void_p)
sq_settypetag: Callable[[int, int, int], int] = _fn("sq_settypetag", c_int, V, c_int, c_void_p)
sq_gettypetag: Callable[[int, int, Any], int] = _fn(
    "sq_gettypetag", c_int, V, c_int, POINTER(c_void_p))
sq_setreleasehook: Callable[[int, int, Any], None] = _fn(
    "sq_setreleasehook", None, V, c_int, SQRELEASEHOOK)
sq_getdelegate: Callable[[int, int], int] = _fn("sq_getdelegate", c_int, V, c_int)
sq_getdefaultdelegate: Callable[[int, int], int] = _fn("sq_getdefaultdelegate", c_int, V, c_int)

sq_pushstring: Callable[[int, bytes, int], None] = _fn(
    "sq_pushstring", None, V, c_char_p, c_int)
sq_pushfloat: Callable[[int, float], None] = _fn("sq_pushfloat", None, V, c_float)
sq_pushinteger: Callable[[int, int], None] = _fn("sq_pushinteger", None, V, c_int)
sq_pushbool: Callable[[int, int], None] = _fn("sq_pushbool", None, V, c_uint)
sq_pushnull: Callable[[int], None] = _fn("sq_pushnull", None, V)
sq_pushroottable: Callable[[int], None] = _fn("sq_pushroottable", None, V)
sq_pushregistrytable: Callable[[int], None] = _fn("sq_pushregistrytable", None, V)
sq_pushconsttable: Callable[[int], None] = _fn("sq_pushconsttable", None, V)
sq_setroottable: Callable[[int], int] = _fn("sq_setroottable", c_int, V)
sq_setconsttable: Callable[[int], int] = _fn("sq_setconsttable", c_int, V)
sq_newthread: Callable[[int, int], int] = _fn("sq_newthread", c_void_p, V, c_int)

sq_gettype: Callable[[int, int], int] = _fn("sq_gettype", c_int, V, c_int)
sq_getsize: Callable[[int, int], int] = _fn("sq_getsize", c_int, V, c_int)
sq_getstring: Callable[[int, int, Any], int] = _fn(
    "sq_getstring", c_int, V, c_int, POINTER(c_void_p))
sq_getinteger: Callable[[int, int, Any], int] = _fn(
    "sq_getinteger", c_int, V, c_int, POINTER(c_int))
sq_getfloat: Callable[[int, int, Any], int] = _fn("sq_getfloat", c_int, V, c_int, POINTER(c_float))
sq_getbool: Callable[[int, int, Any], int] = _fn("sq_getbool", c_int, V, c_int, POINTER(c_uint))
sq_tostring: Callable[[int, int], int] = _fn("sq_tostring", c_int, V, c_int)

sq_newslot: Callable[[int, int, int], int] = _fn("sq_newslot", c_int, V, c_int, c_uint)
sq_rawget: Callable[[int, int], int] = _fn("sq_rawget", c_int, V, c_int)
sq_rawset: Callable[[int, int], int] = _fn("sq_rawset", c_int, V, c_int)
sq_rawdeleteslot: Callable[[int, int, int], int] = _fn(
    "sq_rawdeleteslot", c_int, V, c_int, c_uint)
sq_arrayappend: Callable[[int, int], int] = _fn("sq_arrayappend", c_int, V, c_int)
sq_next: Callable[[int, int], int] = _fn("sq_next", c_int, V, c_int)

sq_call: Callable[[int, int, int, int], int] = _fn("sq_call", c_int, V, c_int, c_uint, c_uint)
sq_throwerror: Callable[[int, bytes], int] = _fn("sq_throwerror", c_int, V, c_char_p)
sq_throwobject: Callable[[int], int] = _fn("sq_throwobject", c_int, V)
sq_getlasterror: Callable[[int], None] = _fn("sq_getlasterror", None, V)

sq_getstackobj: Callable[[int, int, Any], int] = _fn("sq_getstackobj", c_int, V, c_int, _OBJP)
sq_pushobject: Callable[[int, SQObj], None] = _fn("sq_pushobject", None, V, SQObj)
sq_addref: Callable[[int, Any], None] = _fn("sq_addref", None, V, _OBJP)
sq_release: Callable[[int, Any], int] = _fn("sq_release", c_uint, V, _OBJP)
sq_collectgarbage: Callable[[int], int] = _fn("sq_collectgarbage", c_int, V)
sq_getclosureinfo: Callable[[int, int, Any, Any], int] = _fn(
    "sq_getclosureinfo", c_int, V, c_int, POINTER(c_uint), POINTER(c_uint))
sq_stackinfos: Callable[[int, int, Any], int] = _fn(
    "sq_stackinfos", c_int, V, c_int, POINTER(SQStackInfos))

sqstd_getblob: Callable[[int, int, Any], int] = _fn(
    "sqstd_getblob", c_int, V, c_int, POINTER(c_void_p))
sqstd_getblobsize: Callable[[int, int], int] = _fn("sqstd_getblobsize", c_int, V, c_int)
sqstd_register_bloblib: Callable[[int], int] = _fn("sqstd_register_bloblib", c_int, V)
sqstd_register_stringlib: Callable[[int], int] = _fn("sqstd_register_stringlib", c_int, V)


def stack_object(v: int, idx: int) -> SQObj:
    """A new strong reference (``sq_addref``) to the value at ``idx``; release it with
    ``sq_release`` while the VM is open."""
    obj = SQObj()
    sq_getstackobj(v, idx, ctypes.byref(obj))
    sq_addref(v, ctypes.byref(obj))
    return obj


def absolute(v: int, idx: int) -> int:
    """A stack index that stays valid while more values are pushed."""
    return sq_gettop(v) + idx + 1 if idx < 0 else idx

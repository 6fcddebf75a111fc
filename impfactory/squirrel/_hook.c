/* The Squirrel VMs' debug hook, in C (impfactory/squirrel/watchdog.py says what it does).
 *
 * Squirrel calls its native debug hook at every new source line, every call and every
 * return. As a ctypes callback into Python that cost ~0.6 us per event: a loop of
 * plain arithmetic ran 20 times slower with the watchdog on than off. Here the
 * counting (the call depth, the countdown to the next look at the clock) is done in C,
 * and Python (``watchdog.slow_event``) is called only when there is something to
 * decide: every ``check_every`` events (the timer, the memory meter) and when the depth
 * passes ``max_depth`` (recounted against the real stack, as tail calls reuse frames).
 *
 * Each watched VM has a slot, found by the VM's address in an open-addressing table.
 * Everything here runs with the GIL held (the hook takes it, as a ctypes callback does,
 * though the VMs are entered holding it), so the table needs no lock of its own.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

typedef struct {
    uintptr_t v;      /* the VM's address; 0: empty; 1: a slot whose VM is gone */
    long depth;       /* Squirrel calls in progress, as counted from the events */
    long max_depth;   /* deeper than this: ask Python (the real stack decides) */
    long countdown;   /* events left before Python looks at the clock */
    long check_every; /* events between two looks */
} Slot;

#define EMPTY ((uintptr_t)0)
#define GONE ((uintptr_t)1)
#define HOOK_CALL 'c'
#define HOOK_RETURN 'r'

static Slot *table = NULL;
static size_t capacity = 0; /* a power of two */
static size_t filled = 0;   /* slots that are not EMPTY (live and GONE) */
static size_t live = 0;
static PyObject *slow = NULL; /* slow_event(v, kind, line, overflow) */

static size_t slot_hash(uintptr_t v) {
    uint64_t x = (uint64_t)v;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return (size_t)x;
}

static Slot *find(uintptr_t v) {
    if (capacity == 0) {
        return NULL;
    }
    size_t mask = capacity - 1;
    for (size_t i = slot_hash(v) & mask;; i = (i + 1) & mask) {
        if (table[i].v == v) {
            return &table[i];
        }
        if (table[i].v == EMPTY) {
            return NULL;
        }
    }
}

static int rebuild(size_t want) {
    size_t size = 64;
    while (size < want * 4) {
        size <<= 1;
    }
    Slot *fresh = PyMem_Calloc(size, sizeof(Slot));
    if (fresh == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (size_t i = 0; i < capacity; i++) {
        if (table[i].v > GONE) {
            size_t j = slot_hash(table[i].v) & (size - 1);
            while (fresh[j].v != EMPTY) {
                j = (j + 1) & (size - 1);
            }
            fresh[j] = table[i];
        }
    }
    PyMem_Free(table);
    table = fresh;
    capacity = size;
    filled = live;
    return 0;
}

static Slot *require(PyObject *arg) {
    unsigned long long v = PyLong_AsUnsignedLongLong(arg);
    if (v == (unsigned long long)-1 && PyErr_Occurred()) {
        return NULL;
    }
    Slot *slot = v > GONE ? find((uintptr_t)v) : NULL;
    if (slot == NULL) {
        PyErr_SetString(PyExc_KeyError, "that VM is not watched");
    }
    return slot;
}

/* The arguments (v, n): the watched VM's slot, and n. */
static Slot *slot_and_number(PyObject *args, long *n) {
    PyObject *vm;
    if (!PyArg_ParseTuple(args, "Ol", &vm, n)) {
        return NULL;
    }
    return require(vm);
}

/* Counting starts (an entry begins, or the VM is first watched): no calls yet, and a
   whole countdown to the next look at the clock. */
static void restart(Slot *slot, long check_every) {
    slot->depth = 0;
    slot->check_every = check_every;
    slot->countdown = check_every;
}

static void call_slow(uintptr_t v, int kind, int line, int overflow) {
    if (slow == NULL) {
        return;
    }
    PyObject *result = PyObject_CallFunction(slow, "Kiii", (unsigned long long)v, kind, line,
                                             overflow);
    if (result == NULL) {
        /* slow_event catches everything itself; what still escapes is reported as a
           ctypes callback's exception would be, and the VM goes on */
        PyErr_WriteUnraisable(slow);
    } else {
        Py_DECREF(result);
    }
}

/* Squirrel 3.0.5's SQDEBUGHOOK (SQInteger is 32-bit in this build, as capi.py says). */
static void hook(void *vm, int kind, const char *source, int line, const char *function) {
    (void)source;
    (void)function;
    PyGILState_STATE gil = PyGILState_Ensure();
    uintptr_t v = (uintptr_t)vm;
    Slot *slot = find(v);
    if (slot != NULL) {
        if (kind == HOOK_RETURN) {
            slot->depth--;
        } else if (kind == HOOK_CALL && ++slot->depth > slot->max_depth) {
            call_slow(v, kind, 0, 1);
        } else if (--slot->countdown <= 0) {
            slot->countdown = slot->check_every;
            call_slow(v, kind, kind == HOOK_CALL ? 0 : line, 0);
        }
    }
    PyGILState_Release(gil);
}

static PyObject *address(PyObject *self, PyObject *noargs) {
    (void)self;
    (void)noargs;
    return PyLong_FromVoidPtr((void *)&hook);
}

static PyObject *set_slow(PyObject *self, PyObject *fn) {
    (void)self;
    if (!PyCallable_Check(fn)) {
        PyErr_SetString(PyExc_TypeError, "set_slow takes a callable");
        return NULL;
    }
    Py_INCREF(fn);
    Py_XSETREF(slow, fn);
    Py_RETURN_NONE;
}

static PyObject *watch(PyObject *self, PyObject *args) {
    (void)self;
    unsigned long long v;
    long max_depth, check_every;
    if (!PyArg_ParseTuple(args, "Kll", &v, &max_depth, &check_every)) {
        return NULL;
    }
    if (v <= GONE || check_every < 1) {
        PyErr_SetString(PyExc_ValueError, "watch(v, max_depth, check_every >= 1)");
        return NULL;
    }
    Slot *slot = find((uintptr_t)v);
    if (slot == NULL) {
        if ((filled + 1) * 2 > capacity && rebuild(live + 1) < 0) {
            return NULL;
        }
        size_t mask = capacity - 1, i = slot_hash((uintptr_t)v) & mask;
        while (table[i].v > GONE) {
            i = (i + 1) & mask;
        }
        if (table[i].v == EMPTY) {
            filled++;
        }
        live++;
        slot = &table[i];
        slot->v = (uintptr_t)v;
    }
    slot->max_depth = max_depth;
    restart(slot, check_every);
    Py_RETURN_NONE;
}

static PyObject *forget(PyObject *self, PyObject *arg) {
    (void)self;
    Slot *slot = require(arg);
    if (slot == NULL) {
        if (PyErr_ExceptionMatches(PyExc_KeyError)) {
            PyErr_Clear();
            Py_RETURN_FALSE;
        }
        return NULL;
    }
    slot->v = GONE;
    live--;
    Py_RETURN_TRUE;
}

static PyObject *arm(PyObject *self, PyObject *args) {
    (void)self;
    long check_every;
    Slot *slot = slot_and_number(args, &check_every);
    if (slot == NULL) {
        return NULL;
    }
    if (check_every < 1) {
        PyErr_SetString(PyExc_ValueError, "check_every must be at least 1");
        return NULL;
    }
    restart(slot, check_every);
    Py_RETURN_NONE;
}

static PyObject *set_depth(PyObject *self, PyObject *args) {
    (void)self;
    long depth;
    Slot *slot = slot_and_number(args, &depth);
    if (slot == NULL) {
        return NULL;
    }
    slot->depth = depth;
    Py_RETURN_NONE;
}

static PyObject *state(PyObject *self, PyObject *arg) {
    (void)self;
    Slot *slot = require(arg);
    if (slot == NULL) {
        return NULL;
    }
    return Py_BuildValue("(llll)", slot->depth, slot->max_depth, slot->countdown,
                         slot->check_every);
}

static PyObject *watched(PyObject *self, PyObject *noargs) {
    (void)self;
    (void)noargs;
    return PyLong_FromSize_t(live);
}

static PyMethodDef methods[] = {
    {"address", address, METH_NOARGS, "The hook's address, for sq_setnativedebughook."},
    {"set_slow", set_slow, METH_O, "The Python function for events that need deciding."},
    {"watch", watch, METH_VARARGS, "watch(v, max_depth, check_every): count v's events."},
    {"forget", forget, METH_O, "forget(v): stop counting (True if it was watched)."},
    {"arm", arm, METH_VARARGS, "arm(v, check_every): an entry starts: depth 0, countdown."},
    {"set_depth", set_depth, METH_VARARGS, "set_depth(v, depth): the recounted depth."},
    {"state", state, METH_O, "state(v) -> (depth, max_depth, countdown, check_every)."},
    {"watched", watched, METH_NOARGS, "How many VMs are watched."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_hook", "The Squirrel debug hook's counting, in C.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__hook(void) { return PyModule_Create(&module); }

/* The bi-level receiver's per-sample and per-symbol work, compiled.

   protocol/decoder.py keeps the design and every decision; this file runs the same
   arithmetic, in the same order, on the same doubles (no fused multiply-adds: built
   with -ffp-contract=off), so what it decides is the same to the last bit as the
   Python it replaces (tests/test_decoder_equivalence.py runs both against
   tests/decoder_reference.py). What it does, per feed:

   * check: the chunk is finite and within the bound (one pass, no reductions);
   * smooth2: filter it into the history (the two-tap moving average);
   * receive: slice the chunk with the fixed thresholds and hysteresis, time each
     flip's midpoint crossing, gather the edges (the silence limit), extend the
     running prefix sums, and decide every symbol that is settled: integrate and
     dump, the grid steered by edges, the sync-word hunt, the data stage
     (de-stuffing, unwhitening, bytes);
   * tri_runs (tri-level): time a chunk's runs, glitches reopened, the mean frame
     period tracked, the open run's length limit, and each lit run's mean light, for
     Python to read as a bit.

   Whatever needs Python (an outcome, an error, a state change) comes back as an
   event; Python handles it and calls again to resume. The reception's state lives in
   two arrays the decoder owns (F: doubles, I: int64), laid out by the constants
   below, which protocol/decoder.py mirrors (_bilevel_layout() checks them). */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* F: doubles */
enum {
    F_PERIOD, F_NEXT, F_MID, F_HYST, F_WEAK, F_DELAY, F_SILENCE_AT, F_EDGE_TIME,
    F_GAP, F_UNTIL, F_AT, F_SCALARS = 16
};
/* I: int64 */
enum {
    I_SLICE_LEVEL, I_FIRST, I_COUNT, I_PREV, I_WEAK_BITS, I_RUN_SYMBOL, I_RUN, I_CUR,
    I_NBITS, I_DATA_BITS, I_INVERTED, I_HUNTING, I_OVERTIME, I_NDATA, I_HUNTED,
    I_HUNT_BITS, I_NSLOTS, I_NTRAIL, I_NBIT_STARTS, I_CS_ORIGIN, I_CS_LEN, I_SILENT,
    I_SCALARS = 32
};
#define TRAIL_CAP 4096
#define BITS_CAP 4096
#define DATA_CAP 512
#define SLOT_CAP 32
/* F regions */
#define F_SLOT_T F_SCALARS
#define F_SLOT_L (F_SLOT_T + SLOT_CAP)
#define F_MARKS (F_SLOT_L + SLOT_CAP)
#define F_BIT_STARTS (F_MARKS + TRAIL_CAP)
#define F_SIZE (F_BIT_STARTS + BITS_CAP)
/* I regions: the hunted words (size, pattern, wrong) x 3, the start word, then the
   trail's levels */
#define I_PATTERNS I_SCALARS
#define I_START_WORD (I_PATTERNS + 9)
#define I_LEVELS (I_START_WORD + 8)
#define I_SIZE (I_LEVELS + TRAIL_CAP)

/* the decoder's constants (protocol/decoder.py passes them in, checked at import) */
#define SYMBOL_GUARD 0.15
#define DECIDE_AFTER 1.5
#define STEER_REACH 0.7
#define STEER_PHASE 0.75
#define STEER_PERIOD 0.02
#define SQUEEZED 0.35
#define CROSSING_LOOKBACK 4
#define EDGE_REACH (CROSSING_LOOKBACK + 1)
#define RUN_LIMIT 4
#define CHECK_BYTES 2
#define HUNT_SYMBOLS 112
#define HUNT_KEEP 17

enum {
    EV_NONE, EV_WEAK, EV_FOUND, EV_HUNT_FAIL, EV_OVERTIME_END, EV_COMPLETE, EV_SILENCE,
    EV_FULL, EV_ROOM
};

typedef struct {
    const double *hist;
    Py_ssize_t hist_n;
    int64_t hist_start;
    double *F;
    int64_t *I;
    double *cs;
    Py_ssize_t cs_cap;
    double *eta;
    int8_t *ela;
    Py_ssize_t e_cap;
    uint8_t *data;
    const uint8_t *whitening;
    Py_ssize_t w_len;
} Ctx;

/* the running prefix sums, extended to the end of the history (one sum after the
   other, as numpy's accumulate adds), less the ones a symbol before the pending one */
static void extend_sums(Ctx *c)
{
    double *cs = c->cs;
    int64_t *I = c->I;
    int64_t len = I[I_CS_LEN];
    int64_t k = I[I_CS_ORIGIN] + len - 1 - c->hist_start; /* next sample to sum */
    if (k < 0) k = 0;
    double s = cs[len - 1];
    for (; k < c->hist_n; k++) {
        s += c->hist[k];
        cs[len++] = s;
    }
    int64_t spent = (int64_t)floor(c->F[F_NEXT] - c->F[F_PERIOD]) - I[I_CS_ORIGIN];
    if (spent > len - 1) spent = len - 1;
    if (spent > 0) {
        memmove(cs, cs + spent, (size_t)(len - spent) * sizeof(double));
        len -= spent;
        I[I_CS_ORIGIN] += spent;
    }
    I[I_CS_LEN] = len;
}

/* the sync-word hunt after a lock: see BlinkUpDecoder._hunt and _found_start */
static int hunt(Ctx *c, double start, double light)
{
    double *F = c->F;
    int64_t *I = c->I;
    int64_t n = I[I_NSLOTS];
    F[F_SLOT_T + n] = start;
    F[F_SLOT_L + n] = light;
    n++;
    if (n > HUNT_KEEP) {
        memmove(F + F_SLOT_T, F + F_SLOT_T + (n - HUNT_KEEP), HUNT_KEEP * sizeof(double));
        memmove(F + F_SLOT_L, F + F_SLOT_L + (n - HUNT_KEEP), HUNT_KEEP * sizeof(double));
        n = HUNT_KEEP;
    }
    I[I_NSLOTS] = n;
    int64_t nt = I[I_NTRAIL];
    if (nt > HUNT_KEEP) {
        memmove(F + F_MARKS, F + F_MARKS + (nt - HUNT_KEEP), HUNT_KEEP * sizeof(double));
        memmove(I + I_LEVELS, I + I_LEVELS + (nt - HUNT_KEEP), HUNT_KEEP * sizeof(int64_t));
        I[I_NTRAIL] = nt = HUNT_KEEP;
    }
    I[I_HUNTED] += 1;
    int64_t bits = ((I[I_HUNT_BITS] << 1) | (light > 0)) & ((1 << HUNT_KEEP) - 1);
    I[I_HUNT_BITS] = bits;
    for (int p = 0; p < 3; p++) {
        int64_t size = I[I_PATTERNS + 3 * p], pattern = I[I_PATTERNS + 3 * p + 1];
        int64_t wrong = I[I_PATTERNS + 3 * p + 2];
        if (n < size) continue;
        int64_t differ = __builtin_popcountll((uint64_t)((bits & ((1LL << size) - 1)) ^ pattern));
        if (differ <= wrong || differ >= size - wrong) {
            /* the start word: its symbols begin the data's bit starts and the trail */
            int inverted = differ >= size - wrong;
            int64_t start_word = size - 8;
            int64_t nb = I[I_NBIT_STARTS];
            for (int64_t j = n - start_word; j < n; j++)
                F[F_BIT_STARTS + nb++] = F[F_SLOT_T + j] - F[F_DELAY];
            I[I_NBIT_STARTS] = nb;
            double marks[HUNT_KEEP + 8];
            int64_t m = 0;
            for (int64_t j = nt - start_word; j < nt; j++) marks[m++] = F[F_MARKS + j];
            while (m < 8) { /* pad in front with the first */
                memmove(marks + 1, marks, (size_t)m * sizeof(double));
                m++;
            }
            for (int j = 0; j < 8; j++) {
                F[F_MARKS + j] = marks[m - 8 + j];
                I[I_LEVELS + j] = I[I_START_WORD + j] ^ inverted;
            }
            I[I_NTRAIL] = 8;
            I[I_HUNTING] = 0;
            I[I_INVERTED] = inverted;
            I[I_RUN_SYMBOL] = I[I_START_WORD + 7];
            I[I_RUN] = 2;
            return EV_FOUND;
        }
    }
    if (I[I_HUNTED] > HUNT_SYMBOLS) return EV_HUNT_FAIL;
    return EV_NONE;
}

/* BlinkUpDecoder._symbols: every symbol sampled by F[F_UNTIL], or up to an event */
static int symbols(Ctx *c)
{
    double *F = c->F;
    int64_t *I = c->I;
    double until = F[F_UNTIL];
    double period = F[F_PERIOD];
    double start = F[F_NEXT];
    if (start + DECIDE_AFTER * period + 1.0 > until) return EV_NONE;
    extend_sums(c);
    const double *cs = c->cs;
    int64_t origin = I[I_CS_ORIGIN], cs_len = I[I_CS_LEN];
    double mid = F[F_MID], weak = F[F_WEAK], delay = F[F_DELAY];
    double *edge_t = c->eta;
    int8_t *edge_level = c->ela;
    int64_t count = I[I_COUNT], first = I[I_FIRST];
    int64_t previous = I[I_PREV], weak_bits = I[I_WEAK_BITS];
    int64_t run_symbol = I[I_RUN_SYMBOL], run = I[I_RUN];
    int64_t cur = I[I_CUR], nbits = I[I_NBITS], data_bits = I[I_DATA_BITS];
    int64_t inverted = I[I_INVERTED];
    int64_t hunting = I[I_HUNTING];
    int64_t ndata = I[I_NDATA];
    int64_t frame_bytes = ndata ? c->data[0] + 3 + CHECK_BYTES : -1;
    int ev = EV_NONE;
    while (start + DECIDE_AFTER * period + 1.0 <= until) {
        double guard = SYMBOL_GUARD * period;
        int64_t a = (int64_t)ceil(start + guard) - origin;
        int64_t b = (int64_t)floor(start + period - guard) + 1 - origin;
        if (a < 0 || b >= cs_len || b <= a) { ev = EV_FULL; break; }
        double light = (cs[b] - cs[a]) / (double)(b - a) - mid;
        int64_t raw = light > 0 ? 1 : 0;
        double before = start - period;
        while (first < count && edge_t[first] < before) first++;
        int64_t change = previous >= 0 ? 1 - previous : raw;
        double reach = (raw == change ? STEER_REACH : 0.5) * period;
        int have = 0;
        double error = 0.0;
        int64_t at = first, k = first;
        double after = start + reach;
        while (k < count && edge_t[k] <= after) {
            if (edge_level[k] == change) {
                double off = edge_t[k] - start;
                if (off >= -reach && (!have || fabs(off) < fabs(error))) {
                    error = off;
                    at = k;
                    have = 1;
                }
            }
            k++;
        }
        double mark = start;
        double following = start + period;
        if (have) {
            double moved = start + STEER_PHASE * error;
            double longer = period + STEER_PERIOD * error;
            a = (int64_t)ceil(moved + guard) - origin;
            b = (int64_t)floor(moved + longer - guard) + 1 - origin;
            if (a < 0 || b >= cs_len || b <= a) { ev = EV_FULL; break; }
            double steered = (cs[b] - cs[a]) / (double)(b - a) - mid;
            if ((steered > 0) == (change == 1)) {
                mark = start + error;
                light = steered;
                raw = change;
                period = longer;
                following = moved + period;
            } else {
                double edge = start + error;
                double seen = start + DECIDE_AFTER * period;
                k = at + 1;
                while (k < count && edge_t[k] <= seen && edge_level[k] == change) k++;
                if (k < count && edge_t[k] <= seen) {
                    double back = edge_t[k];
                    if (SQUEEZED * period <= back - edge && back - edge < period) {
                        mark = edge;
                        raw = change;
                        following = back;
                    }
                }
            }
        }
        int64_t nt = I[I_NTRAIL];
        if (nt >= TRAIL_CAP) { ev = EV_FULL; break; }
        I[I_LEVELS + nt] = raw;
        F[F_MARKS + nt] = mark;
        I[I_NTRAIL] = nt + 1;
        previous = raw;
        if (first > 512) { /* spent edges */
            memmove(edge_t, edge_t + first, (size_t)(count - first) * sizeof(double));
            memmove(edge_level, edge_level + first, (size_t)(count - first));
            count -= first;
            first = 0;
        }
        if (-weak < light && light < weak) {
            weak_bits += 1;
            if (weak_bits >= 4) {
                F[F_AT] = start;
                ev = EV_WEAK;
                start = following;
                break;
            }
        } else {
            weak_bits = 0;
        }
        if (hunting) {
            F[F_NEXT] = following; /* the hunt's failure ends here */
            int h = hunt(c, start, light);
            if (h == EV_HUNT_FAIL) {
                F[F_AT] = following;
                ev = h;
                start = following;
                break;
            }
            if (h == EV_FOUND) {
                run_symbol = I[I_RUN_SYMBOL];
                run = I[I_RUN];
                inverted = I[I_INVERTED];
                hunting = 0;
                ev = h;
                start = following;
                break;
            }
        } else if (I[I_OVERTIME] > 0) {
            I[I_OVERTIME] -= 1;
            if (I[I_OVERTIME] == 0) {
                F[F_AT] = start + period;
                ev = EV_OVERTIME_END;
                start = following;
                break;
            }
        } else {
            int64_t symbol = raw ^ inverted;
            if (run >= RUN_LIMIT) {
                run_symbol = symbol;
                run = 1;
            } else {
                if (symbol == run_symbol) {
                    run += 1;
                } else {
                    run_symbol = symbol;
                    run = 1;
                }
                int64_t nb = I[I_NBIT_STARTS];
                if (nb >= BITS_CAP || data_bits >= c->w_len || ndata >= DATA_CAP) {
                    ev = EV_FULL;
                    break;
                }
                F[F_BIT_STARTS + nb] = start - delay;
                I[I_NBIT_STARTS] = nb + 1;
                cur = (cur << 1) | (symbol ^ c->whitening[data_bits]);
                data_bits += 1;
                nbits += 1;
                if (nbits == 8) {
                    c->data[ndata++] = (uint8_t)cur;
                    cur = nbits = 0;
                    if (frame_bytes < 0) frame_bytes = c->data[0] + 3 + CHECK_BYTES;
                    if (ndata == frame_bytes) {
                        F[F_AT] = start + period;
                        ev = EV_COMPLETE;
                        start = following;
                        break;
                    }
                }
            }
        }
        start = following;
    }
    F[F_PERIOD] = period;
    F[F_NEXT] = start;
    I[I_PREV] = previous;
    I[I_FIRST] = first;
    I[I_COUNT] = count;
    I[I_WEAK_BITS] = weak_bits;
    I[I_RUN_SYMBOL] = run_symbol;
    I[I_RUN] = run;
    I[I_CUR] = cur;
    I[I_NBITS] = nbits;
    I[I_DATA_BITS] = data_bits;
    I[I_NDATA] = ndata;
    return ev;
}

/* slice hist[a0:] with the fixed thresholds; time each flip's midpoint crossing (see
   _hysteresis and _crossings); gather the edges up to the silence limit (see
   _gather_edges). Returns 1 when an edge came too late (the signal stopped). */
static int edges(Ctx *c, Py_ssize_t a0)
{
    double *F = c->F;
    int64_t *I = c->I;
    const double *h = c->hist;
    double mid = F[F_MID];
    double up = mid + F[F_HYST], down = mid - F[F_HYST];
    double gap = F[F_GAP], silence_at = F[F_SILENCE_AT];
    int64_t level = I[I_SLICE_LEVEL];
    int64_t count = I[I_COUNT];
    int late = 0, heard = 0;
    Py_ssize_t i = a0;
    if (level < 0) {
        for (; i < c->hist_n; i++) {
            if (h[i] > up) { level = 1; break; }
            if (h[i] < down) { level = 0; break; }
        }
    }
    for (; i < c->hist_n; i++) {
        if (level ? !(h[i] < down) : !(h[i] > up)) continue;
        level ^= 1;
        if (late) continue;
        /* the last sample before i, within the lookback, still on the old side */
        Py_ssize_t lo = i > CROSSING_LOOKBACK ? i - CROSSING_LOOKBACK : 0;
        Py_ssize_t j = lo;
        for (Py_ssize_t q = i - 1; q >= lo; q--) {
            if ((h[q] > mid) == (level ^ 1)) {
                j = q + 1;
                break;
            }
        }
        double before = j > 0 ? h[j - 1] : h[0];
        double step = h[j] - before;
        double frac = 0.0;
        if (step != 0.0) {
            frac = (mid - before) / step;
            if (frac < 0.0) frac = 0.0;
            if (frac > 1.0) frac = 1.0;
        }
        double t = (double)(c->hist_start + j - 1) + frac;
        if (t > silence_at) {
            late = 1;
            continue;
        }
        silence_at = t + gap;
        c->eta[count] = t;
        c->ela[count] = (int8_t)level;
        count++;
        heard++;
    }
    if (heard) {
        F[F_EDGE_TIME] = c->eta[count - 1];
        F[F_SILENCE_AT] = silence_at;
    }
    I[I_COUNT] = count;
    I[I_SLICE_LEVEL] = level;
    return late;
}

static int get(PyObject *o, Py_buffer *b, int writable)
{
    return PyObject_GetBuffer(o, b, PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0));
}

/* the receiver's work on a chunk (resume: after an event) */
static int run(Ctx *c, Py_ssize_t a0, long long stop, int resume)
{
    /* room for every edge and sum this chunk may add, or nothing is done (Python
       grows the arrays and calls again) */
    if (c->I[I_COUNT] + (c->hist_n - a0) > c->e_cap || c->I[I_CS_LEN] + c->hist_n > c->cs_cap)
        return EV_ROOM;
    if (!resume) {
        int late = edges(c, a0);
        /* decide what no edge still to come can change; past the silence limit, up
           to it, and then the reception is lost there */
        double settled = (double)(stop - EDGE_REACH);
        c->I[I_SILENT] = late || settled > c->F[F_SILENCE_AT];
        c->F[F_UNTIL] = c->I[I_SILENT] ? c->F[F_SILENCE_AT] : settled;
    }
    int ev = symbols(c);
    if (ev == EV_NONE && c->I[I_SILENT]) ev = EV_SILENCE;
    return ev;
}

#define STATE_ARGS 7 /* F, I, cs, eta, ela, data, whitening */

/* the state arrays (args[0..6]) into c, their buffers into b (released by the caller) */
static int state(PyObject *const *args, Py_buffer *b, int *got, Ctx *c)
{
    for (; *got < STATE_ARGS; (*got)++) {
        if (get(args[*got], &b[*got], *got != 6) < 0) return -1;
    }
    if (b[0].len < (Py_ssize_t)(F_SIZE * sizeof(double)) ||
        b[1].len < (Py_ssize_t)(I_SIZE * sizeof(int64_t)) || b[5].len < DATA_CAP ||
        b[3].len / (Py_ssize_t)sizeof(double) != b[4].len) {
        PyErr_SetString(PyExc_ValueError, "bilevel: state arrays of the wrong size");
        return -1;
    }
    c->F = b[0].buf;
    c->I = b[1].buf;
    c->cs = b[2].buf;
    c->cs_cap = b[2].len / (Py_ssize_t)sizeof(double);
    c->eta = b[3].buf;
    c->ela = b[4].buf;
    c->e_cap = b[4].len;
    c->data = b[5].buf;
    c->whitening = b[6].buf;
    c->w_len = b[6].len;
    return 0;
}

/* A reception's state arrays, bound once (bind()) rather than looked up at every
   call: the capsule holds their buffers (and so the arrays) until it is dropped. */
typedef struct {
    Py_buffer b[STATE_ARGS];
    int got;
    Ctx c;
} Bound;

static void unbind(PyObject *capsule)
{
    Bound *bd = PyCapsule_GetPointer(capsule, "impfactory._bilevel.state");
    if (!bd) return;
    for (int k = 0; k < bd->got; k++) PyBuffer_Release(&bd->b[k]);
    PyMem_Free(bd);
}

/* bind(F, I, cs, eta, ela, data, whitening) -> the state, for feed2 */
static PyObject *bind(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != STATE_ARGS) {
        PyErr_SetString(PyExc_TypeError, "bind takes 7 arguments");
        return NULL;
    }
    Bound *bd = PyMem_Calloc(1, sizeof(Bound));
    if (!bd) return PyErr_NoMemory();
    if (state(args, bd->b, &bd->got, &bd->c) < 0) {
        for (int k = 0; k < bd->got; k++) PyBuffer_Release(&bd->b[k]);
        PyMem_Free(bd);
        return NULL;
    }
    PyObject *capsule = PyCapsule_New(bd, "impfactory._bilevel.state", unbind);
    if (!capsule) {
        for (int k = 0; k < bd->got; k++) PyBuffer_Release(&bd->b[k]);
        PyMem_Free(bd);
    }
    return capsule;
}

/* receive(hist, a0, hist_start, stop, resume, F, I, cs, eta, ela, data, whitening)
   -> event: slice hist[a0:] (hist[0] is sample hist_start), time and gather its
   edges, decide the symbols settled by stop; or, resume, go on after an event. */
static PyObject *receive(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 5 + STATE_ARGS) {
        PyErr_SetString(PyExc_TypeError, "receive takes 12 arguments");
        return NULL;
    }
    Py_buffer hb, b[STATE_ARGS];
    int got = 0;
    PyObject *result = NULL;
    Ctx c;
    if (PyObject_GetBuffer(args[0], &hb, PyBUF_C_CONTIGUOUS) < 0) return NULL;
    if (state(args + 5, b, &got, &c) < 0) goto done;
    Py_ssize_t a0 = PyLong_AsSsize_t(args[1]);
    c.hist_start = PyLong_AsLongLong(args[2]);
    long long stop = PyLong_AsLongLong(args[3]);
    int resume = PyObject_IsTrue(args[4]);
    if (PyErr_Occurred()) goto done;
    c.hist = hb.buf;
    c.hist_n = hb.len / (Py_ssize_t)sizeof(double);
    if (a0 < 0 || a0 > c.hist_n) {
        PyErr_SetString(PyExc_ValueError, "receive: a0 outside the history");
        goto done;
    }
    result = PyLong_FromLong(run(&c, a0, stop, resume));
done:
    for (int k = 0; k < got; k++) PyBuffer_Release(&b[k]);
    PyBuffer_Release(&hb);
    return result;
}

/* feed2(x, buf, lo, hi, prev, limit, hist_start, base, state) -> event, or -1 when
   a sample of x is not finite or beyond ±limit, or -2 when x is not a contiguous
   float64 run (then nothing is written: Python's own path takes the chunk). A whole
   feed of a bi-level reception in one call: the check, the two-tap moving average into
   buf[hi:hi + len(x)] (x[-1] before the first: prev; the caller made room), and
   receive() of the chunk, the history being buf[lo:], sample hist_start first, the
   chunk from sample base. state: bind()'s. */
static PyObject *feed2(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 9) {
        PyErr_SetString(PyExc_TypeError, "feed2 takes 9 arguments");
        return NULL;
    }
    Bound *bd = PyCapsule_GetPointer(args[8], "impfactory._bilevel.state");
    if (!bd) return NULL;
    Py_buffer xb, bb;
    PyObject *result = NULL;
    if (PyObject_GetBuffer(args[0], &xb, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        PyErr_Clear();
        return PyLong_FromLong(-2);
    }
    if (xb.format == NULL || strcmp(xb.format, "d") != 0) {
        PyBuffer_Release(&xb);
        return PyLong_FromLong(-2);
    }
    if (PyObject_GetBuffer(args[1], &bb, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE) < 0) {
        PyBuffer_Release(&xb);
        return NULL;
    }
    Ctx c = bd->c;
    Py_ssize_t lo = PyLong_AsSsize_t(args[2]), hi = PyLong_AsSsize_t(args[3]);
    double prev = PyFloat_AsDouble(args[4]), limit = PyFloat_AsDouble(args[5]);
    c.hist_start = PyLong_AsLongLong(args[6]);
    long long base = PyLong_AsLongLong(args[7]);
    if (PyErr_Occurred()) goto done;
    const double *v = xb.buf;
    Py_ssize_t n = xb.len / (Py_ssize_t)sizeof(double);
    double *buf = bb.buf;
    if (lo < 0 || lo > hi || n < 1 || hi + n > bb.len / (Py_ssize_t)sizeof(double) ||
        base < c.hist_start || base - c.hist_start > hi - lo) {
        PyErr_SetString(PyExc_ValueError, "feed2: no room in the history");
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!(-limit <= v[i] && v[i] <= limit)) {
            result = PyLong_FromLong(-1);
            goto done;
        }
    }
    double *y = buf + hi;
    y[0] = (prev + v[0]) * 0.5;
    for (Py_ssize_t i = 1; i < n; i++) y[i] = (v[i] + v[i - 1]) * 0.5;
    c.hist = buf + lo;
    c.hist_n = hi + n - lo;
    result = PyLong_FromLong(run(&c, (Py_ssize_t)(base - c.hist_start), base + n, 0));
done:
    PyBuffer_Release(&bb);
    PyBuffer_Release(&xb);
    return result;
}

/* check(x, limit) -> 0, or 1 when a sample is not finite or beyond ±limit, or 2 when
   x is not a contiguous run of float64 (then numpy checks it): what
   BlinkUpDecoder._validate's two reductions decide, in one pass. */
static PyObject *check(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "check takes 2 arguments");
        return NULL;
    }
    Py_buffer x;
    if (PyObject_GetBuffer(args[0], &x, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        PyErr_Clear();
        return PyLong_FromLong(2);
    }
    long rc = 0;
    if (x.format == NULL || strcmp(x.format, "d") != 0) {
        rc = 2;
    } else {
        double limit = PyFloat_AsDouble(args[1]);
        if (limit == -1.0 && PyErr_Occurred()) {
            PyBuffer_Release(&x);
            return NULL;
        }
        const double *v = x.buf;
        Py_ssize_t n = x.len / (Py_ssize_t)sizeof(double);
        for (Py_ssize_t i = 0; i < n; i++) {
            if (!(-limit <= v[i] && v[i] <= limit)) {
                rc = 1;
                break;
            }
        }
    }
    PyBuffer_Release(&x);
    return PyLong_FromLong(rc);
}

/* smooth2(x, out, prev): out[i] = (x[i] + x[i - 1]) * 0.5, x[-1] being prev: the
   two-tap moving average, the same sums as BlinkUpDecoder._take's numpy. x: a
   contiguous float64 run (checked by check() first). */
static PyObject *smooth2(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "smooth2 takes 3 arguments");
        return NULL;
    }
    Py_buffer x, out;
    if (PyObject_GetBuffer(args[0], &x, PyBUF_C_CONTIGUOUS) < 0) return NULL;
    if (PyObject_GetBuffer(args[1], &out, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE) < 0) {
        PyBuffer_Release(&x);
        return NULL;
    }
    double prev = PyFloat_AsDouble(args[2]);
    int ok = !PyErr_Occurred();
    if (ok && out.len < x.len) {
        PyErr_SetString(PyExc_ValueError, "smooth2: output too short");
        ok = 0;
    }
    if (ok) {
        const double *v = x.buf;
        double *y = out.buf;
        Py_ssize_t n = x.len / (Py_ssize_t)sizeof(double);
        if (n > 0) {
            y[0] = (prev + v[0]) * 0.5;
            for (Py_ssize_t i = 1; i < n; i++) y[i] = (v[i] + v[i - 1]) * 0.5;
        }
    }
    PyBuffer_Release(&x);
    PyBuffer_Release(&out);
    if (!ok) return NULL;
    Py_RETURN_NONE;
}

/* The idle slicer of BlinkUpDecoder._idle_slice over h[lo:hi]: each sample's
   threshold is the midpoint of the max and min of the w samples ending at it (the
   history before h[0] taken as h[0]), with hysteresis 0.15 of their spread (none where
   the spread is under min_swing). Each flip (its index from lo, the level after it) goes
   to on_flip, which may stop the slicing (returns 2) or fail (-1). *level: the level
   before the first sample (-1: not yet decided), then after the last one sliced.
   Returns 1 when no window holds a swing (nothing sliced), 0 when all was sliced. The
   same doubles as the numpy (max and min are exact, however found: here by monotonic
   queues). */
typedef int (*OnFlip)(void *ctx, Py_ssize_t c, long level);

static int slice_idle(const double *h, Py_ssize_t lo, Py_ssize_t hi, Py_ssize_t w,
                      double min_swing, long *level_io, OnFlip on_flip, void *ctx)
{
    Py_ssize_t start = lo - w + 1 > 0 ? lo - w + 1 : 0;
    double top = h[start], bottom = h[start];
    for (Py_ssize_t j = start; j < hi; j++) {
        if (h[j] > top) top = h[j];
        if (h[j] < bottom) bottom = h[j];
    }
    if (top - bottom < min_swing) return 1;
    Py_ssize_t *maxq = PyMem_Malloc((size_t)(hi - start) * sizeof(Py_ssize_t));
    Py_ssize_t *minq = PyMem_Malloc((size_t)(hi - start) * sizeof(Py_ssize_t));
    int rc = 0;
    long level = *level_io;
    if (!maxq || !minq) {
        PyErr_NoMemory();
        rc = -1;
        goto done;
    }
    Py_ssize_t ma = 0, mb = 0, na = 0, nb = 0; /* queue fronts and ends */
    for (Py_ssize_t j = start; j < hi; j++) {
        while (mb > ma && h[maxq[mb - 1]] <= h[j]) mb--;
        maxq[mb++] = j;
        while (nb > na && h[minq[nb - 1]] >= h[j]) nb--;
        minq[nb++] = j;
        if (j < lo) continue;
        while (maxq[ma] < j - w + 1) ma++;
        while (minq[na] < j - w + 1) na++;
        top = h[maxq[ma]];
        bottom = h[minq[na]];
        double mid = (top + bottom) * 0.5;
        double band = (top - bottom) * 0.15;
        if (top - bottom < min_swing) band = INFINITY;
        int above = h[j] > mid + band, below = h[j] < mid - band;
        if (level < 0) {
            if (above) level = 1;
            else if (below) level = 0;
            continue;
        }
        if (!(level ? below : above)) continue;
        level ^= 1;
        rc = on_flip(ctx, j - lo, level);
        if (rc) break;
    }
done:
    *level_io = level;
    PyMem_Free(maxq);
    PyMem_Free(minq);
    return rc;
}

typedef struct {
    PyObject *changes, *levels;
} Flips;

static int collect(void *ctx, Py_ssize_t c, long level)
{
    Flips *f = ctx;
    PyObject *cv = PyLong_FromSsize_t(c), *lv = PyLong_FromLong(level);
    int bad = !cv || !lv || PyList_Append(f->changes, cv) < 0 || PyList_Append(f->levels, lv) < 0;
    Py_XDECREF(cv);
    Py_XDECREF(lv);
    return bad ? -1 : 0;
}

/* idle_slice(hist, lo, hi, w, min_swing, level) -> (changes, levels, last), or None
   when no window holds a swing: slice_idle's flips (indices from lo, levels) and the
   level after the last sample. Any line code. */
static PyObject *idle_slice(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "idle_slice takes 6 arguments");
        return NULL;
    }
    Py_buffer hb;
    if (PyObject_GetBuffer(args[0], &hb, PyBUF_C_CONTIGUOUS) < 0) return NULL;
    Py_ssize_t n = hb.len / (Py_ssize_t)sizeof(double);
    Py_ssize_t lo = PyLong_AsSsize_t(args[1]), hi = PyLong_AsSsize_t(args[2]);
    Py_ssize_t w = PyLong_AsSsize_t(args[3]);
    double min_swing = PyFloat_AsDouble(args[4]);
    long level = PyLong_AsLong(args[5]);
    PyObject *result = NULL;
    Flips f = {NULL, NULL};
    if (PyErr_Occurred()) goto done;
    if (lo < 0 || hi > n || lo >= hi || w < 1) {
        PyErr_SetString(PyExc_ValueError, "idle_slice: bad range");
        goto done;
    }
    f.changes = PyList_New(0);
    f.levels = PyList_New(0);
    if (!f.changes || !f.levels) goto done;
    int rc = slice_idle(hb.buf, lo, hi, w, min_swing, &level, collect, &f);
    if (rc < 0) goto done;
    result = rc == 1 ? Py_NewRef(Py_None) : Py_BuildValue("(OOl)", f.changes, f.levels, level);
done:
    Py_XDECREF(f.changes);
    Py_XDECREF(f.levels);
    PyBuffer_Release(&hb);
    return result;
}

#define SYNC_TRANSITIONS 16

typedef struct {
    PyObject *times;
    long long a0;
    double t_min, t_max;
    const double *bands;
    Py_ssize_t nbands;
    Py_ssize_t at; /* the flip that locked */
} Sync;

static int set_times(PyObject *times, long long a, long long b, int two)
{
    PyObject *items = two ? Py_BuildValue("[LL]", a, b) : Py_BuildValue("[L]", b);
    if (!items) return -1;
    int rc = PyList_SetSlice(times, 0, PyList_GET_SIZE(times), items);
    Py_DECREF(items);
    return rc;
}

/* BlinkUpDecoder._sync_transition, bi-level: another idle edge at a0 + c; 2 when
   SYNC_TRANSITIONS regular intervals line up (the lock), the times list kept as the
   Python keeps it */
static int sync_flip(void *ctx, Py_ssize_t c, long level)
{
    (void)level;
    Sync *s = ctx;
    PyObject *times = s->times;
    long long t = s->a0 + c;
    Py_ssize_t n = PyList_GET_SIZE(times);
    PyObject *tv;
    if (n == 0) goto append;
    long long first = PyLong_AsLongLong(PyList_GET_ITEM(times, 0));
    long long last = PyLong_AsLongLong(PyList_GET_ITEM(times, n - 1));
    if (PyErr_Occurred()) return -1;
    long long d = t - last;
    if ((double)d < 0.5 * s->t_min) /* a glitch: this edge and the one before are noise */
        return PyList_SetSlice(times, n - 1, n, NULL);
    if (!(0.7 * s->t_min <= (double)d && (double)d <= 1.3 * s->t_max))
        return set_times(times, 0, t, 0);
    if (n >= 2) {
        double period = (double)(last - first) / (double)(n - 1);
        if (fabs((double)(t - first) - (double)n * period) > 0.4 * period)
            return set_times(times, last, t, 1);
    }
append:
    tv = PyLong_FromLongLong(t);
    if (!tv || PyList_Append(times, tv) < 0) {
        Py_XDECREF(tv);
        return -1;
    }
    Py_DECREF(tv);
    n++;
    if (n - 1 < SYNC_TRANSITIONS) return 0;
    first = PyLong_AsLongLong(PyList_GET_ITEM(times, 0));
    if (PyErr_Occurred()) return -1;
    double period = (double)(t - first) / (double)(n - 1);
    for (Py_ssize_t k = 0; k < s->nbands; k++) {
        if (s->bands[2 * k] <= period && period <= s->bands[2 * k + 1]) {
            s->at = c;
            return 2;
        }
    }
    return PyList_SetSlice(times, 0, 1, NULL);
}

/* idle_sync(hist, lo, hi, w, min_swing, level, a0, times, t_min, t_max, bands) ->
   None when no window holds a swing, else (c, level): bi-level, the idle slicer's
   flips (slice_idle) go to the sync search (sync_flip; times: the decoder's list of
   sync edges, kept as _sync_transition keeps it) until it locks, at flip c (from lo)
   to level; c is -1 when it did not, level then the level after the last sample.
   bands: a float64 array of (shortest, longest) symbol periods. */
static PyObject *idle_sync(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 11) {
        PyErr_SetString(PyExc_TypeError, "idle_sync takes 11 arguments");
        return NULL;
    }
    Py_buffer hb, bb;
    if (PyObject_GetBuffer(args[0], &hb, PyBUF_C_CONTIGUOUS) < 0) return NULL;
    if (PyObject_GetBuffer(args[10], &bb, PyBUF_C_CONTIGUOUS) < 0) {
        PyBuffer_Release(&hb);
        return NULL;
    }
    Py_ssize_t n = hb.len / (Py_ssize_t)sizeof(double);
    Py_ssize_t lo = PyLong_AsSsize_t(args[1]), hi = PyLong_AsSsize_t(args[2]);
    Py_ssize_t w = PyLong_AsSsize_t(args[3]);
    double min_swing = PyFloat_AsDouble(args[4]);
    long level = PyLong_AsLong(args[5]);
    Sync s = {args[7], PyLong_AsLongLong(args[6]), PyFloat_AsDouble(args[8]),
              PyFloat_AsDouble(args[9]), bb.buf, bb.len / (Py_ssize_t)(2 * sizeof(double)), -1};
    PyObject *result = NULL;
    if (PyErr_Occurred()) goto done;
    if (lo < 0 || hi > n || lo >= hi || w < 1 || !PyList_Check(s.times)) {
        PyErr_SetString(PyExc_ValueError, "idle_sync: bad arguments");
        goto done;
    }
    int rc = slice_idle(hb.buf, lo, hi, w, min_swing, &level, sync_flip, &s);
    if (rc < 0) goto done;
    result = rc == 1 ? Py_NewRef(Py_None) : Py_BuildValue("(nl)", s.at, level);
done:
    PyBuffer_Release(&bb);
    PyBuffer_Release(&hb);
    return result;
}

/* numpy's sum of n doubles (add.reduce of a contiguous float64 array): 0.0 plus
   their pairwise sum, eight running sums per block of up to 128, halves above */
static double pairwise(const double *a, Py_ssize_t n)
{
    if (n < 8) {
        double res = 0.0;
        for (Py_ssize_t i = 0; i < n; i++) res += a[i];
        return res;
    }
    if (n <= 128) {
        double r[8];
        for (int j = 0; j < 8; j++) r[j] = a[j];
        Py_ssize_t i;
        for (i = 8; i < n - (n % 8); i += 8)
            for (int j = 0; j < 8; j++) r[j] += a[i + j];
        double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++) res += a[i];
        return res;
    }
    Py_ssize_t n2 = n / 2;
    n2 -= n2 % 8;
    return pairwise(a, n2) + pairwise(a + n2, n - n2);
}

static double numpy_sum(const double *a, Py_ssize_t n) { return 0.0 + pairwise(a, n); }

/* run_means(hist, hist_start, times, level, spread_too) -> (dark, lit, spread): the
   mean light of the inner half of each run between consecutive ``times`` (absolute
   sample positions; the latest run ended at the last, with ``level`` after it),
   dark and lit apart, latest first, and the pooled standard deviation within them
   (0.0 unless spread_too). BlinkUpDecoder._run_means, the same doubles (numpy's
   sums, above). */
static PyObject *run_means(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "run_means takes 5 arguments");
        return NULL;
    }
    Py_buffer hb;
    if (PyObject_GetBuffer(args[0], &hb, PyBUF_C_CONTIGUOUS) < 0) return NULL;
    const double *h = hb.buf;
    Py_ssize_t n = hb.len / (Py_ssize_t)sizeof(double);
    long long hist_start = PyLong_AsLongLong(args[1]);
    long level = PyLong_AsLong(args[3]);
    int spread_too = PyObject_IsTrue(args[4]);
    PyObject *result = NULL, *seq = NULL, *means[2] = {NULL, NULL};
    double *sq = NULL;
    if (PyErr_Occurred()) goto done;
    seq = PySequence_Fast(args[2], "run_means: times must be a sequence");
    if (!seq) goto done;
    Py_ssize_t k = PySequence_Fast_GET_SIZE(seq);
    means[0] = PyList_New(0);
    means[1] = PyList_New(0);
    sq = PyMem_Malloc((size_t)(n > 0 ? n : 1) * sizeof(double));
    if (!means[0] || !means[1] || !sq) {
        if (!PyErr_Occurred()) PyErr_NoMemory();
        goto done;
    }
    double spread = 0.0;
    long long count = 0;
    int run_level = 1 - (int)level;
    for (Py_ssize_t j = k - 1; j > 0; j--) {
        long long start = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(seq, j - 1));
        long long stop = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(seq, j));
        if (PyErr_Occurred()) goto done;
        double q = (double)(stop - start) / 4.0;
        long long lo = (long long)ceil((double)start + q) - hist_start;
        long long hi = (long long)floor((double)stop - q) + 1 - hist_start;
        if (lo < 0) lo = 0;
        if (hi < lo) hi = lo;
        if (hi > n) hi = n;
        if (lo > n) lo = n;
        Py_ssize_t m = (Py_ssize_t)(hi - lo);
        if (m > 0) {
            double mean = numpy_sum(h + lo, m) / (double)m;
            PyObject *v = PyFloat_FromDouble(mean);
            int bad = !v || PyList_Append(means[run_level & 1], v) < 0;
            Py_XDECREF(v);
            if (bad) goto done;
            if (spread_too) {
                for (Py_ssize_t i = 0; i < m; i++) {
                    double d = h[lo + i] - mean;
                    sq[i] = d * d;
                }
                spread += numpy_sum(sq, m);
                count += m;
            }
        }
        run_level = 1 - run_level;
    }
    result = Py_BuildValue("(OOd)", means[0], means[1],
                           sqrt(spread / (double)(count > 1 ? count : 1)));
done:
    PyMem_Free(sq);
    Py_XDECREF(means[0]);
    Py_XDECREF(means[1]);
    Py_XDECREF(seq);
    PyBuffer_Release(&hb);
    return result;
}

/* Python's sum() of n >= 1 floats, to the last bit: 0 plus the first, then each in
   turn, compensated (Neumaier) from Python 3.12 on, as its builtin sum is */
static double python_sum(const double *a, Py_ssize_t n)
{
    double f = 0.0 + a[0];
#if PY_VERSION_HEX >= 0x030C0000
    double c = 0.0;
    for (Py_ssize_t i = 1; i < n; i++) {
        double x = a[i], t = f + x;
        if (fabs(f) >= fabs(x))
            c += (f - t) + x;
        else
            c += (x - t) + f;
        f = t;
    }
    if (c != 0.0 && isfinite(c)) f += c;
#else
    for (Py_ssize_t i = 1; i < n; i++) f += a[i];
#endif
    return f;
}

/* The tri-level receiver's runs, as BlinkUpDecoder._transition, _end_of_chunk and
   _commit time them: the open run, the one before it (held until the next proves
   real, so a glitch can reopen it), the mean frame period, and the lit runs
   committed, each out as (start - period before it, end, mean light of its inner
   60 %, 1.0; or 0.0 0.0 when that holds no sample) for Python to read as a bit. */
typedef struct {
    double open_start, period, glitch, silence;
    long open_level;
    int has_last;
    double last_start, last_end;
    long last_level;
    const double *light; /* light[k] is sample light_origin + k */
    long long light_origin;
    Py_ssize_t n_light;
    double *out;
    Py_ssize_t nlit;
} Tri;

static void tri_commit(Tri *s, double start, double end, long level)
{
    double dur = end - start;
    if (level == 1) {
        double q = 0.2 * dur;
        long long a = (long long)ceil(start + q) - s->light_origin;
        if (a < 0) a = 0;
        long long b = (long long)floor(end - q) + 1 - s->light_origin;
        if (b < a + 1) b = a + 1;
        if (b > s->n_light) b = s->n_light;
        double *o = s->out + 4 * s->nlit++;
        o[0] = start - s->period;
        o[1] = end;
        if (a < b) {
            o[2] = python_sum(s->light + a, (Py_ssize_t)(b - a)) / (double)(b - a);
            o[3] = 1.0;
        } else {
            o[2] = 0.0;
            o[3] = 0.0;
        }
    }
    double mean = s->period, d = dur;
    if (0.5 * mean > d) d = 0.5 * mean;
    if (2.0 * mean < d) d = 2.0 * mean;
    s->period += 0.05 * (d - mean);
}

/* 1 when the open run outlasted `silence` mean frames by `t`: lost at *deadline */
static int tri_lost(const Tri *s, double t, double *deadline)
{
    *deadline = s->open_start + s->silence * s->period;
    return t > *deadline;
}

/* tri_runs(times, levels, hist, lo, light_origin, open_start, open_level, last,
   period, glitch, silence, settled, out) -> (nlit, open_start, open_level, last,
   period, lost): the flips at `times` (absolute, with the level after each), then
   the chunk's end (`settled`: no later edge can come before it); the light is
   hist[lo:], sample light_origin on; `last` is (start, end, level) or None; `lost`
   the moment the open run outlasted `silence` frames (None: not lost), where the
   loop stopped. `out` holds 4 doubles per lit run (len(times) + 1 of them). */
static PyObject *tri_runs(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 13) {
        PyErr_SetString(PyExc_TypeError, "tri_runs takes 13 arguments");
        return NULL;
    }
    Py_buffer hb, ob;
    if (get(args[2], &hb, 0) < 0) return NULL;
    if (get(args[12], &ob, 1) < 0) {
        PyBuffer_Release(&hb);
        return NULL;
    }
    PyObject *result = NULL, *times = NULL, *levels = NULL;
    Tri s;
    memset(&s, 0, sizeof s);
    Py_ssize_t lo = PyLong_AsSsize_t(args[3]);
    s.light_origin = PyLong_AsLongLong(args[4]);
    s.open_start = PyFloat_AsDouble(args[5]);
    s.open_level = PyLong_AsLong(args[6]);
    s.period = PyFloat_AsDouble(args[8]);
    s.glitch = PyFloat_AsDouble(args[9]);
    s.silence = PyFloat_AsDouble(args[10]);
    double settled = PyFloat_AsDouble(args[11]);
    if (PyErr_Occurred()) goto done;
    if (args[7] != Py_None) {
        if (!PyArg_ParseTuple(args[7], "ddl", &s.last_start, &s.last_end, &s.last_level))
            goto done;
        s.has_last = 1;
    }
    Py_ssize_t n_hist = hb.len / (Py_ssize_t)sizeof(double);
    if (lo < 0 || lo > n_hist) {
        PyErr_SetString(PyExc_ValueError, "tri_runs: the light starts outside the history");
        goto done;
    }
    s.light = (const double *)hb.buf + lo;
    s.n_light = n_hist - lo;
    times = PySequence_Fast(args[0], "tri_runs: times must be a sequence");
    levels = times ? PySequence_Fast(args[1], "tri_runs: levels must be a sequence") : NULL;
    if (!levels) goto done;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(times);
    if (PySequence_Fast_GET_SIZE(levels) != n
        || ob.len < (Py_ssize_t)(4 * (n + 1) * sizeof(double))) {
        PyErr_SetString(PyExc_ValueError, "tri_runs: times, levels and out do not agree");
        goto done;
    }
    s.out = ob.buf;
    int lost = 0;
    double deadline = 0.0;
    for (Py_ssize_t i = 0; i < n && !lost; i++) {
        double t = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(times, i));
        long level = PyLong_AsLong(PySequence_Fast_GET_ITEM(levels, i));
        if (PyErr_Occurred()) goto done;
        if (t - s.open_start < s.glitch * s.period && s.has_last) {
            /* a glitch: the open run is noise; reopen the run before it */
            s.open_start = s.last_start;
            s.open_level = s.last_level;
            s.has_last = 0;
            continue;
        }
        if (s.has_last) {
            s.has_last = 0;
            tri_commit(&s, s.last_start, s.last_end, s.last_level);
        }
        if ((lost = tri_lost(&s, t, &deadline))) break;
        s.has_last = 1;
        s.last_start = s.open_start;
        s.last_end = t;
        s.last_level = s.open_level;
        s.open_start = t;
        s.open_level = level;
    }
    if (!lost) {
        /* the chunk's end: the open run has proven real, so the one before it is */
        if (s.has_last && settled - s.open_start >= s.glitch * s.period) {
            s.has_last = 0;
            tri_commit(&s, s.last_start, s.last_end, s.last_level);
        }
        lost = tri_lost(&s, settled, &deadline);
    }
    PyObject *last = s.has_last ? Py_BuildValue("(ddl)", s.last_start, s.last_end, s.last_level)
                                : Py_NewRef(Py_None);
    PyObject *gone = lost ? PyFloat_FromDouble(deadline) : Py_NewRef(Py_None);
    if (last && gone)
        result = Py_BuildValue("(ndlOdO)", s.nlit, s.open_start, s.open_level, last, s.period,
                               gone);
    Py_XDECREF(last);
    Py_XDECREF(gone);
done:
    Py_XDECREF(times);
    Py_XDECREF(levels);
    PyBuffer_Release(&ob);
    PyBuffer_Release(&hb);
    return result;
}

static PyObject *layout(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    return Py_BuildValue(
        "{s:n,s:n,s:n,s:n,s:n,s:n,s:n,s:n,s:n,s:d,s:d,s:d,s:d,s:d,s:d,s:i,s:i,s:i,s:i,s:i,s:i}",
        "F_SIZE", (Py_ssize_t)F_SIZE, "I_SIZE", (Py_ssize_t)I_SIZE,
        "F_SLOT_T", (Py_ssize_t)F_SLOT_T, "F_MARKS", (Py_ssize_t)F_MARKS,
        "F_BIT_STARTS", (Py_ssize_t)F_BIT_STARTS, "I_PATTERNS", (Py_ssize_t)I_PATTERNS,
        "I_START_WORD", (Py_ssize_t)I_START_WORD, "I_LEVELS", (Py_ssize_t)I_LEVELS,
        "DATA_CAP", (Py_ssize_t)DATA_CAP, "SYMBOL_GUARD", SYMBOL_GUARD,
        "DECIDE_AFTER", DECIDE_AFTER, "STEER_REACH", STEER_REACH, "STEER_PHASE",
        STEER_PHASE, "STEER_PERIOD", STEER_PERIOD, "SQUEEZED", SQUEEZED,
        "CROSSING_LOOKBACK", CROSSING_LOOKBACK, "BILEVEL_RUN_LIMIT", RUN_LIMIT,
        "CHECK_BYTES", CHECK_BYTES, "HUNT_SYMBOLS", HUNT_SYMBOLS, "HUNT_KEEP", HUNT_KEEP,
        "SYNC_TRANSITIONS", SYNC_TRANSITIONS);
}

static PyMethodDef methods[] = {
    {"receive", (PyCFunction)(void (*)(void))receive, METH_FASTCALL,
     "Slice, time edges and decide the settled symbols of a bi-level chunk."},
    {"bind", (PyCFunction)(void (*)(void))bind, METH_FASTCALL,
     "Bind a reception's state arrays, for feed2."},
    {"feed2", (PyCFunction)(void (*)(void))feed2, METH_FASTCALL,
     "A whole feed of a bi-level reception: check, filter into the history, receive."},
    {"check", (PyCFunction)(void (*)(void))check, METH_FASTCALL,
     "Are all samples finite and within the bound? (2: not a float64 run)"},
    {"smooth2", (PyCFunction)(void (*)(void))smooth2, METH_FASTCALL,
     "Write a chunk's two-tap moving average."},
    {"idle_slice", (PyCFunction)(void (*)(void))idle_slice, METH_FASTCALL,
     "The idle slicer: adaptive thresholds from a sliding max and min, hysteresis."},
    {"idle_sync", (PyCFunction)(void (*)(void))idle_sync, METH_FASTCALL,
     "Bi-level: the idle slicer's flips to the sync search, until it locks."},
    {"run_means", (PyCFunction)(void (*)(void))run_means, METH_FASTCALL,
     "The mean light of the inner half of each sync run, and the spread within."},
    {"tri_runs", (PyCFunction)(void (*)(void))tri_runs, METH_FASTCALL,
     "Tri-level: time a chunk's runs, commit the settled ones, the lit ones out."},
    {"layout", layout, METH_NOARGS, "The state arrays' layout and the constants built in."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_bilevel",
    "The bi-level BlinkUp receiver's inner loops (see protocol/decoder.py).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__bilevel(void) { return PyModule_Create(&module); }

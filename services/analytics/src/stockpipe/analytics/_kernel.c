/* The analytics hot path in C: warm indicator columns and their alert rules, one bar at a time.
 *
 * stockpipe.analytics.indicators.columns.IndicatorColumns and
 * stockpipe.analytics.alert_columns.AlertColumns own the state (numpy arrays, one row per
 * series); Columns.update and alerts() advance it for a batch of bars in arrival order, so
 * the bars of one series are applied in order without any sorting; Columns.step is one bar.
 *
 * Bit-identical to the pure-Python reference (IndicatorState._update_hot and its full path
 * on recompute bars; AlertState.update): the same IEEE operations in the same order, libm's
 * log as Python's math.log, an exact sum with the result of math.fsum (both are the
 * correctly rounded sum of the inputs), and the volume baseline as Python's int / int (the
 * correctly rounded quotient). Built with -ffp-contract=off: no fused multiply-add may
 * change a rounding. tests/unit/analytics compares every bit with the reference.
 *
 * No numpy headers: arrays arrive through the buffer protocol (C-contiguous, writable), and
 * every size and index is checked here, so a wrong array raises instead of writing astray.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* Doubles per indicator column: IndicatorState._st after pos, rpos and n (an EMA not seeded yet
 * is 0 there, None in _st), then IndicatorState._acc, the EMAs' seed sums. */
#define NST 23
enum { PREV, SPS, SPL, SPB, BM, M2B, LB, SPV, VM, M2V, LV, GAIN, LOSS, ES, EL, MF, MS, SIG,
       ACC_ES, ACC_EL, ACC_MF, ACC_MS, ACC_SIG };
enum { POS, RPOS, N }; /* int64 per column */
#define RECOMPUTE_MASK 127
#define M2_DROP (1.0 / 1024.0)
#define NVAL 12
/* numerics.CLOSE_DOMAIN (columns.py checks that they agree): a close outside changes nothing. */
#define CLOSE_MIN 1e-100
#define CLOSE_MAX 1e100

/* ---- exact sums -------------------------------------------------------------------------------- */

/* The partials of fsum: non-overlapping (each one's lowest set bit above the next smaller
 * one's highest), so at most one per bit position of a finite double, 2**-1074 .. 2**1023:
 * 2,098. Static (the GIL is held throughout), not on the stack. */
static double partials[2112];

/* The correctly rounded sum of x[0..n) (finite): Shewchuk's partials, as CPython's math.fsum,
 * whose result is the same correctly rounded number. */
static double fsum(const double *x, Py_ssize_t n) {
    double *p = partials, hi = 0.0, lo = 0.0, y, yr, t;
    Py_ssize_t i, j, m = 0;
    for (Py_ssize_t k = 0; k < n; k++) {
        double v = x[k];
        for (i = j = 0; j < m; j++) {
            y = p[j];
            if (fabs(v) < fabs(y)) { t = v; v = y; y = t; }
            hi = v + y;
            yr = hi - v;
            lo = y - yr;
            if (lo != 0.0) p[i++] = lo;
            v = hi;
        }
        m = i;
        if (v != 0.0) p[m++] = v;
    }
    hi = 0.0;
    if (m > 0) {
        hi = p[--m];
        while (m > 0) { /* sum from the top, stop when the sum becomes inexact */
            double a = hi;
            y = p[--m];
            hi = a + y;
            yr = hi - a;
            lo = y - yr;
            if (lo != 0.0) break;
        }
        if (m > 0 && ((lo < 0.0 && p[m - 1] < 0.0) || (lo > 0.0 && p[m - 1] > 0.0))) {
            y = lo * 2.0; /* half-even rounding across partials */
            double a = hi + y;
            yr = a - hi;
            if (y == yr) hi = a;
        }
    }
    return hi;
}

/* numerics._m2: sum of squared deviations, shifted by the minimum, exact sums. Overwrites x. */
static double m2_exact(double *x, Py_ssize_t n) {
    double pivot = x[0];
    for (Py_ssize_t k = 1; k < n; k++) if (x[k] < pivot) pivot = x[k];
    for (Py_ssize_t k = 0; k < n; k++) x[k] = x[k] - pivot;
    double mean = fsum(x, n) / (double)n;
    for (Py_ssize_t k = 0; k < n; k++) { double d = x[k] - mean; x[k] = d * d; }
    return fsum(x, n);
}

/* The k ring values ending at slot last (oldest first) into out. */
static void tail(const double *ring, Py_ssize_t size, Py_ssize_t last, Py_ssize_t k, double *out) {
    Py_ssize_t s = last - k + 1;
    if (s < 0) s += size;
    for (Py_ssize_t j = 0; j < k; j++) {
        out[j] = ring[s];
        if (++s == size) s = 0;
    }
}

/* ---- buffers ----------------------------------------------------------------------------------- */

typedef struct { Py_buffer b; int held; } Buf;

static int get(PyObject *obj, Buf *buf, const char *name, Py_ssize_t itemsize, Py_ssize_t items) {
    if (PyObject_GetBuffer(obj, &buf->b, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE) < 0) return -1;
    buf->held = 1;
    if (buf->b.itemsize != itemsize || buf->b.len < items * itemsize) {
        PyErr_Format(PyExc_ValueError, "%s: need at least %zd items of %zd bytes", name, items, itemsize);
        return -1;
    }
    return 0;
}

static void release(Buf *bufs, int n) {
    for (int k = 0; k < n; k++) if (bufs[k].held) PyBuffer_Release(&bufs[k].b);
}

/* ---- indicators -------------------------------------------------------------------------------- */

typedef struct {
    Py_ssize_t ps, pl, pb, pv, pr, es, el, fast, slow, signal, width;
    double kb, kes, kel, kmf, kms, ksig;
} Params;

static int parse_params(PyObject *tuple, Params *p) {
    if (!PyArg_ParseTuple(tuple, "nnnnnnnnnnd;params: (sma_short, sma_long, bollinger_period, volatility_period, "
                          "rsi_period, ema_short, ema_long, macd_fast, macd_slow, macd_signal, bollinger_std)",
                          &p->ps, &p->pl, &p->pb, &p->pv, &p->pr, &p->es, &p->el, &p->fast, &p->slow, &p->signal, &p->kb))
        return -1;
    if (p->ps < 2 || p->pl < 2 || p->pb < 2 || p->pv < 2 || p->pr < 2 || p->es < 2 || p->el < 2 || p->fast < 2 ||
        p->slow <= p->fast || p->signal < 1) {
        PyErr_SetString(PyExc_ValueError, "periods out of range (see IndicatorConfig)");
        return -1;
    }
    /* numerics._k, TA-Lib's PER_TO_K */
    p->kes = 2.0 / (double)(p->es + 1), p->kel = 2.0 / (double)(p->el + 1);
    p->kmf = 2.0 / (double)(p->fast + 1), p->kms = 2.0 / (double)(p->slow + 1), p->ksig = 2.0 / (double)(p->signal + 1);
    p->width = p->ps > p->pl ? p->ps : p->pl;
    if (p->pb > p->width) p->width = p->pb;
    return 0;
}

/* Scratch for exact recomputes (one window); the GIL is held throughout, so one buffer serves. */
static double *scratch;
static Py_ssize_t scratch_len;

static int reserve(Py_ssize_t n) {
    if (n <= scratch_len) return 0;
    double *p = PyMem_Realloc(scratch, sizeof(double) * (size_t)n);
    if (!p) { PyErr_NoMemory(); return -1; }
    scratch = p, scratch_len = n;
    return 0;
}

/* One bar of one column: IndicatorState.update, warm-up included (a field not seeded yet is NaN
 * in out). Once every field is seeded the branches all go one way: _update_hot. */
static void advance(const Params *p, double *ring, double *rring, double *s, int64_t *x, double close, double *out) {
    const Py_ssize_t ps = p->ps, pl = p->pl, pb = p->pb, pv = p->pv, pr = p->pr, width = p->width;
    const double prev = s[PREV];
    const Py_ssize_t pos = (Py_ssize_t)x[POS], rpos = (Py_ssize_t)x[RPOS];
    const int64_t i = x[N], n = i + 1; /* i: this bar's index in its series */
    const int refresh = (n & RECOMPUTE_MASK) == 0;
    double t, old, floor;

    /* Closes: one ring; window p's oldest value sits p-1 slots behind the newest. */
#define AT(k) ring[(pos + (k) + width) % width]
    old = AT(-pb);
    ring[pos] = close;
    t = s[SPS] + close;
    const double sma_s = t / (double)ps;
    s[SPS] = t - AT(1 - ps);
    t = s[SPL] + close;
    const double sma_l = t / (double)pl;
    s[SPL] = t - AT(1 - pl);
    t = s[SPB] + close;
    const double mid = t / (double)pb;
    s[SPB] = t - AT(1 - pb);
#undef AT
    double m2b = s[M2B];
    if (n > pb) {
        m2b += (close - old) * ((close - mid) + (old - s[BM]));
        floor = m2b * M2_DROP;
        if (floor > s[LB]) {
            s[LB] = floor;
        } else if (m2b < s[LB]) {
            tail(ring, width, pos, pb, scratch);
            m2b = m2_exact(scratch, pb);
            s[LB] = m2b * M2_DROP;
        }
    } else if (n == pb) {
        tail(ring, width, pos, pb, scratch);
        m2b = m2_exact(scratch, pb);
        s[LB] = m2b * M2_DROP;
    }
    s[BM] = mid;
    if (refresh) {
        tail(ring, width, pos, ps - 1, scratch);
        s[SPS] = fsum(scratch, ps - 1);
        tail(ring, width, pos, pl - 1, scratch);
        s[SPL] = fsum(scratch, pl - 1);
        tail(ring, width, pos, pb - 1, scratch);
        s[SPB] = fsum(scratch, pb - 1);
        if (n >= pb) {
            tail(ring, width, pos, pb, scratch);
            m2b = m2_exact(scratch, pb);
            s[LB] = m2b * M2_DROP;
        }
    }
    s[M2B] = m2b;
    x[POS] = pos + 1 == width ? 0 : pos + 1;
    const double half = sqrt(m2b > 0.0 ? m2b / (double)pb : 0.0) * p->kb;

    /* Log returns and RSI need a previous close. */
    double rsi = NAN, vol = NAN;
    if (i) {
        const double r = log(close / prev);
        old = rring[rpos];
        rring[rpos] = r;
        t = s[SPV] + r;
        const double mean_r = t / (double)pv;
        s[SPV] = t - rring[(rpos + 1) % pv]; /* rpos - pv + 1, wrapped */
        double m2v = s[M2V];
        if (i > pv) {
            m2v += (r - old) * ((r - mean_r) + (old - s[VM]));
            floor = m2v * M2_DROP;
            if (floor > s[LV]) {
                s[LV] = floor;
            } else if (m2v < s[LV]) {
                memcpy(scratch, rring, sizeof(double) * (size_t)pv);
                m2v = m2_exact(scratch, pv);
                s[LV] = m2v * M2_DROP;
            }
        } else if (i == pv) {
            memcpy(scratch, rring, sizeof(double) * (size_t)pv);
            m2v = m2_exact(scratch, pv);
            s[LV] = m2v * M2_DROP;
        }
        s[VM] = mean_r;
        if (refresh) {
            tail(rring, pv, rpos, pv - 1, scratch);
            s[SPV] = fsum(scratch, pv - 1);
            if (i >= pv) {
                memcpy(scratch, rring, sizeof(double) * (size_t)pv);
                m2v = m2_exact(scratch, pv);
                s[LV] = m2v * M2_DROP;
            }
        }
        s[M2V] = m2v;
        x[RPOS] = rpos + 1 == pv ? 0 : rpos + 1;
        if (i >= pv) vol = sqrt(m2v > 0.0 ? m2v / (double)pv : 0.0);

        /* RSI (Wilder): raw sums over the first rsi_period changes, then averages. */
        const double change = close - prev;
        double gain = s[GAIN], loss = s[LOSS];
        if (i > pr) {
            gain *= (double)(pr - 1);
            loss *= (double)(pr - 1);
        }
        if (change < 0) loss -= change; else gain += change;
        if (i >= pr) {
            const double inv_pr = 1.0 / (double)pr;
            gain *= inv_pr;
            loss *= inv_pr;
            const double total = gain + loss;
            rsi = total != 0.0 ? 100.0 * (gain / total) : 0.0;
        }
        s[GAIN] = gain;
        s[LOSS] = loss;
    }

    /* EMAs, seeded with the left-to-right sum of the first `period` closes. */
    if (i > p->es - 1) {
        s[ES] = (close - s[ES]) * p->kes + s[ES];
    } else {
        s[ACC_ES] += close;
        if (i == p->es - 1) s[ES] = s[ACC_ES] / (double)p->es;
    }
    if (i > p->el - 1) {
        s[EL] = (close - s[EL]) * p->kel + s[EL];
    } else {
        s[ACC_EL] += close;
        if (i == p->el - 1) s[EL] = s[ACC_EL] / (double)p->el;
    }
    /* MACD, TA-Lib style: the fast EMA is seeded on bars slow-fast .. slow-1. */
    const Py_ssize_t slow = p->slow, last_seed = p->slow + p->signal - 2;
    if (i > slow - 1) {
        s[MS] = (close - s[MS]) * p->kms + s[MS];
        s[MF] = (close - s[MF]) * p->kmf + s[MF];
    } else {
        s[ACC_MS] += close;
        if (i >= slow - p->fast) s[ACC_MF] += close;
        if (i == slow - 1) {
            s[MS] = s[ACC_MS] / (double)slow;
            s[MF] = s[ACC_MF] / (double)p->fast;
        }
    }
    double line = NAN;
    if (i >= slow - 1) {
        line = s[MF] - s[MS];
        if (i > last_seed) {
            s[SIG] = (line - s[SIG]) * p->ksig + s[SIG];
        } else {
            s[ACC_SIG] += line;
            if (i == last_seed) s[SIG] = s[ACC_SIG] / (double)p->signal;
        }
    }
    s[PREV] = close;
    x[N] = n;

    const int bb = i >= pb - 1, macd = i >= last_seed;
    out[0] = rsi;
    out[1] = i >= ps - 1 ? sma_s : NAN;
    out[2] = i >= pl - 1 ? sma_l : NAN;
    out[3] = i >= p->es - 1 ? s[ES] : NAN;
    out[4] = i >= p->el - 1 ? s[EL] : NAN;
    out[5] = bb ? mid + half : NAN;
    out[6] = bb ? mid : NAN;
    out[7] = bb ? mid - half : NAN;
    out[8] = macd ? line : NAN;
    out[9] = macd ? s[SIG] : NAN;
    out[10] = macd ? line - s[SIG] : NAN;
    out[11] = vol;
}

/* An indicator-columns object: the parameters, and the state arrays' buffers held from
 * construction to deallocation (IndicatorColumns makes a new one whenever it grows its
 * arrays), so a call pays for no buffer lookups. */
typedef struct {
    PyObject_HEAD
    Params p;
    Buf b[4]; /* ring, rring, st, ix */
    Py_ssize_t cap;
} Columns;

static int Columns_init(Columns *self, PyObject *args, PyObject *kwds) {
    PyObject *params, *o[4];
    static char *kwlist[] = {"params", "ring", "rring", "st", "ix", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOOO", kwlist, &params, &o[0], &o[1], &o[2], &o[3]) ||
        parse_params(params, &self->p) < 0)
        return -1;
    release(self->b, 4);
    memset(self->b, 0, sizeof self->b);
    const Params *p = &self->p;
    if (get(o[3], &self->b[3], "ix", 8, 3) < 0) return -1;
    self->cap = self->b[3].b.len / 8 / 3;
    if (get(o[0], &self->b[0], "ring", 8, self->cap * p->width) < 0 ||
        get(o[1], &self->b[1], "rring", 8, self->cap * p->pv) < 0 ||
        get(o[2], &self->b[2], "st", 8, self->cap * NST) < 0 || reserve(p->width > p->pv ? p->width : p->pv) < 0)
        return -1;
    return 0;
}

static void Columns_dealloc(Columns *self) {
    release(self->b, 4);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static inline void advance_col(Columns *self, int64_t c, double close, double *out) {
    const Params *p = &self->p;
    advance(p, (double *)self->b[0].b.buf + c * p->width, (double *)self->b[1].b.buf + c * p->pv,
            (double *)self->b[2].b.buf + c * NST, (int64_t *)self->b[3].b.buf + c * 3, close, out);
}

PyDoc_STRVAR(update_doc,
"update(cols, closes, freqs, out)\n\n"
"Feed closes[j] to column cols[j], j = 0, 1, ... in order; write the 12 values of bar j to\n"
"out[j] (NaN for a field still warming up, or not due under its calculation frequency when\n"
"freqs is given). cols int64 (m); closes float64 (m); freqs int64 (12) or None; out float64\n"
"(m, 12).");

static PyObject *Columns_update(Columns *self, PyObject *args) {
    PyObject *o[3], *ofreqs;
    if (!self->b[3].held) { PyErr_SetString(PyExc_RuntimeError, "Columns not initialised"); return NULL; }
    if (!PyArg_ParseTuple(args, "OOOO", &o[0], &o[1], &ofreqs, &o[2])) return NULL;
    Buf b[4] = {{{0}}};
    PyObject *result = NULL;
    if (get(o[0], &b[0], "cols", 8, 0) < 0 || get(o[1], &b[1], "closes", 8, 0) < 0) goto done;
    const Py_ssize_t m = b[0].b.len / 8;
    if (b[1].b.len / 8 != m) { PyErr_SetString(PyExc_ValueError, "cols and closes differ in length"); goto done; }
    if (get(o[2], &b[2], "out", 8, m * NVAL) < 0) goto done;
    const int64_t *freqs = NULL;
    if (ofreqs != Py_None) {
        if (get(ofreqs, &b[3], "freqs", 8, NVAL) < 0) goto done;
        freqs = (const int64_t *)b[3].b.buf;
        for (int k = 0; k < NVAL; k++)
            if (freqs[k] < 1) { PyErr_SetString(PyExc_ValueError, "frequencies must be >= 1"); goto done; }
    }
    const int64_t *cols = (const int64_t *)b[0].b.buf;
    const double *closes = (const double *)b[1].b.buf;
    for (Py_ssize_t j = 0; j < m; j++) {
        if (cols[j] < 0 || cols[j] >= self->cap) { PyErr_Format(PyExc_IndexError, "column %lld out of range", (long long)cols[j]); goto done; }
        if (!(closes[j] >= CLOSE_MIN && closes[j] <= CLOSE_MAX)) { /* also NaN */
            PyObject *bad = PyFloat_FromDouble(closes[j]);
            if (bad) {
                PyErr_Format(PyExc_ValueError, "close %R is outside %g..%g; no column changed", bad, CLOSE_MIN, CLOSE_MAX);
                Py_DECREF(bad);
            }
            goto done;
        }
    }
    for (Py_ssize_t j = 0; j < m; j++) {
        double *out = (double *)b[2].b.buf + j * NVAL;
        advance_col(self, cols[j], closes[j], out);
        if (freqs) {
            const int64_t n = ((int64_t *)self->b[3].b.buf)[cols[j] * 3 + N];
            for (int k = 0; k < NVAL; k++)
                if (n % freqs[k]) out[k] = NAN;
        }
    }
    result = Py_NewRef(Py_None);
done:
    release(b, 4);
    return result;
}

PyDoc_STRVAR(step_doc,
"step(col, close) -> list\n\n"
"One bar of one column (the per-bar path): its 12 values as a list of floats (NaN while\n"
"warming up), before any calculation-frequency gating.");

static PyObject *Columns_step(Columns *self, PyObject *const *args, Py_ssize_t nargs) {
    if (!self->b[3].held) { PyErr_SetString(PyExc_RuntimeError, "Columns not initialised"); return NULL; }
    if (nargs != 2) { PyErr_SetString(PyExc_TypeError, "step(col, close)"); return NULL; }
    const Py_ssize_t col = PyLong_AsSsize_t(args[0]);
    const double close = PyFloat_AsDouble(args[1]);
    if (PyErr_Occurred()) return NULL;
    if (col < 0 || col >= self->cap) { PyErr_Format(PyExc_IndexError, "column %zd out of range", col); return NULL; }
    if (!(close >= CLOSE_MIN && close <= CLOSE_MAX)) { /* also NaN */
        PyErr_Format(PyExc_ValueError, "close %R is outside %g..%g", args[1], CLOSE_MIN, CLOSE_MAX);
        return NULL;
    }
    double out[NVAL];
    advance_col(self, col, close, out);
    PyObject *list = PyList_New(NVAL);
    if (!list) return NULL;
    for (int k = 0; k < NVAL; k++) {
        PyObject *f = PyFloat_FromDouble(out[k]);
        if (!f) { Py_DECREF(list); return NULL; }
        PyList_SET_ITEM(list, k, f);
    }
    return list;
}

static PyMethodDef Columns_methods[] = {
    {"update", (PyCFunction)Columns_update, METH_VARARGS, update_doc},
    {"step", (PyCFunction)(void (*)(void))Columns_step, METH_FASTCALL, step_doc},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ColumnsType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "stockpipe.analytics._kernel.Columns",
    .tp_doc = PyDoc_STR("Columns(params, ring, rring, st, ix): the indicator kernel over these state arrays.\n\n"
                        "params: (sma_short, sma_long, bollinger_period, volatility_period, rsi_period,\n"
                        "ema_short, ema_long, macd_fast, macd_slow, macd_signal, bollinger_std).\n"
                        "ring (cap, width) and rring (cap, volatility_period) float64; st (cap, 23)\n"
                        "float64; ix (cap, 3) int64 (pos, rpos, n). The arrays stay exported (not\n"
                        "resizable) while the object lives."),
    .tp_basicsize = sizeof(Columns),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Columns_init,
    .tp_dealloc = (destructor)Columns_dealloc,
    .tp_methods = Columns_methods,
};

/* ---- alerts ------------------------------------------------------------------------------------ */

static int bitlen(unsigned __int128 v) {
    int len = 0;
    for (; v; v >>= 1) len++;
    return len;
}

/* Python's int / int for 0 <= s < 2**126, 1 <= w < 2**63: the correctly rounded quotient
 * (round half to even). Operands below 2**53 are exact doubles: one IEEE division. Else the
 * dividend is shifted so that the integer quotient has at least 56 bits, which are rounded
 * to 53 with the remainder as a sticky bit. */
static double div_round(unsigned __int128 s, uint64_t w) {
    const unsigned __int128 exact = (unsigned __int128)1 << 53;
    if (s < exact && w < exact) return (double)(uint64_t)s / (double)w;
    if (s == 0) return 0.0;
    int sh = 56 + bitlen(w) - bitlen(s); /* s << sh stays below 2**120 */
    if (sh < 0) sh = 0;
    const unsigned __int128 q = (s << sh) / w;
    const int sticky = (s << sh) % w != 0, drop = bitlen(q) - 53; /* drop >= 3 */
    uint64_t mant = (uint64_t)(q >> drop);
    const unsigned __int128 rest = q & (((unsigned __int128)1 << drop) - 1), half = (unsigned __int128)1 << (drop - 1);
    if (rest > half || (rest == half && (sticky || (mant & 1)))) mant++;
    return ldexp((double)mant, drop - sh);
}

enum { RSI_OVER, RSI_UNDER, VOL_HIGH, PRICE_CHANGE, VOLUME_SPIKE, MACD_UP, MACD_DOWN, BB_UP, BB_DOWN, NRULES };
#define UNSEEN (-2)

PyDoc_STRVAR(alerts_doc,
"alerts(params, rules, count, prev, volumes, vpos, vsum, vzeros, state, fired, limits, cols,\n"
"       closes, vols, values) -> [(j, rule, value, threshold), ...]\n\n"
"Evaluate the alert rules on bar j of column cols[j], j = 0, 1, ... in order, as\n"
"AlertState.update does; return the alerts raised (rule: its index in alerts.RULES).\n"
"params: (rsi_overbought, rsi_oversold, volume_change_threshold, volume_window,\n"
"cooldown_bars); rules int64 (the enabled rules' indices in RULES order); per column: count,\n"
"vpos, vzeros int64 (cap); prev float64 (cap); volumes int64 (cap, window); vsum int64\n"
"(cap, 2) (an unsigned 128-bit sum, low word first); state int8 (cap, len(rules)); fired\n"
"int64 (cap, len(rules)); limits float64 (cap, 2) (price change, volatility). Per bar: cols\n"
"int64, closes float64, vols int64 (m); values float64 (m, 12), NaN where not emitted.");

static PyObject *alerts(PyObject *self, PyObject *args) {
    double over, under, mult;
    Py_ssize_t window, cooldown;
    PyObject *o[14];
    if (!PyArg_ParseTuple(args, "(dddnn)OOOOOOOOOOOOOO", &over, &under, &mult, &window, &cooldown, &o[0],
                          &o[1], &o[2], &o[3], &o[4], &o[5], &o[6], &o[7], &o[8], &o[9], &o[10], &o[11],
                          &o[12], &o[13]))
        return NULL;
    if (window < 1 || cooldown < 0) { PyErr_SetString(PyExc_ValueError, "bad volume_window or cooldown"); return NULL; }
    Buf b[14] = {{{0}}};
    PyObject *events = NULL;
    if (get(o[0], &b[0], "rules", 8, 0) < 0 || get(o[1], &b[1], "count", 8, 0) < 0 ||
        get(o[10], &b[10], "cols", 8, 0) < 0)
        goto fail;
    const Py_ssize_t nr = b[0].b.len / 8, cap = b[1].b.len / 8, m = b[10].b.len / 8;
    const int64_t *rules = (const int64_t *)b[0].b.buf;
    for (Py_ssize_t r = 0; r < nr; r++)
        if (rules[r] < 0 || rules[r] >= NRULES) { PyErr_SetString(PyExc_ValueError, "unknown rule"); goto fail; }
    if (get(o[2], &b[2], "prev", 8, cap) < 0 || get(o[3], &b[3], "volumes", 8, cap * window) < 0 ||
        get(o[4], &b[4], "vpos", 8, cap) < 0 || get(o[5], &b[5], "vsum", 8, cap * 2) < 0 ||
        get(o[6], &b[6], "vzeros", 8, cap) < 0 || get(o[7], &b[7], "state", 1, cap * nr) < 0 ||
        get(o[8], &b[8], "fired", 8, cap * nr) < 0 || get(o[9], &b[9], "limits", 8, cap * 2) < 0 ||
        get(o[11], &b[11], "closes", 8, m) < 0 || get(o[12], &b[12], "vols", 8, m) < 0 ||
        get(o[13], &b[13], "values", 8, m * NVAL) < 0)
        goto fail;
    const int64_t *cols = (const int64_t *)b[10].b.buf, *vols = (const int64_t *)b[12].b.buf;
    const double *closes = (const double *)b[11].b.buf;
    for (Py_ssize_t j = 0; j < m; j++) {
        if (cols[j] < 0 || cols[j] >= cap) { PyErr_Format(PyExc_IndexError, "column %lld out of range", (long long)cols[j]); goto fail; }
        if (vols[j] < 0) { PyErr_SetString(PyExc_ValueError, "negative volume"); goto fail; }
    }
    if (!(events = PyList_New(0))) goto fail;

    for (Py_ssize_t j = 0; j < m; j++) {
        const int64_t c = cols[j], volume = vols[j];
        const double close = closes[j], *v = (const double *)b[13].b.buf + j * NVAL;
        int64_t *count = (int64_t *)b[1].b.buf + c, *vpos = (int64_t *)b[4].b.buf + c;
        int64_t *vzeros = (int64_t *)b[6].b.buf + c, *ring = (int64_t *)b[3].b.buf + c * window;
        double *prevp = (double *)b[2].b.buf + c;
        int8_t *state = (int8_t *)b[7].b.buf + c * nr;
        int64_t *fired = (int64_t *)b[8].b.buf + c * nr;
        const double *limits = (const double *)b[9].b.buf + c * 2;
        unsigned __int128 vsum;
        memcpy(&vsum, (int64_t *)b[5].b.buf + c * 2, sizeof vsum);

        const int64_t index = *count;
        *count = index + 1;
        const double prev = *prevp;
        *prevp = close;
        /* Volume baseline: mean of the window before this bar; none while one of its volumes is 0. */
        const int has_base = index >= window && *vzeros == 0;
        const double baseline = has_base ? div_round(vsum, (uint64_t)window) : 0.0;
        const int64_t pos = *vpos, old = ring[pos];
        if (index >= window && old == 0) --*vzeros;
        if (volume == 0) ++*vzeros;
        vsum = vsum + (uint64_t)volume - (uint64_t)old;
        memcpy((int64_t *)b[5].b.buf + c * 2, &vsum, sizeof vsum);
        ring[pos] = volume;
        *vpos = pos + 1 == window ? 0 : pos + 1;

        for (Py_ssize_t r = 0; r < nr; r++) {
            int holds;
            double value, threshold;
            switch (rules[r]) {
            case RSI_OVER:
                if (isnan(v[0])) continue;
                holds = v[0] > over, value = v[0], threshold = over;
                break;
            case RSI_UNDER:
                if (isnan(v[0])) continue;
                holds = v[0] < under, value = v[0], threshold = under;
                break;
            case VOL_HIGH:
                if (isnan(v[11])) continue;
                holds = v[11] > limits[1], value = v[11], threshold = limits[1];
                break;
            case PRICE_CHANGE: {
                if (index == 0) continue; /* no previous close yet */
                const double change = close / prev - 1.0;
                holds = (change > limits[0]) - (change < -limits[0]), value = change, threshold = limits[0];
                break;
            }
            case VOLUME_SPIKE:
                if (!has_base || !(baseline > 0)) continue;
                value = (double)volume / baseline, threshold = mult;
                holds = value > mult;
                break;
            case MACD_UP:
            case MACD_DOWN:
                if (isnan(v[8]) || isnan(v[9])) continue;
                holds = rules[r] == MACD_UP ? v[8] > v[9] : v[8] < v[9], value = v[8], threshold = v[9];
                break;
            case BB_UP:
                if (isnan(v[5])) continue;
                holds = close > v[5], value = close, threshold = v[5];
                break;
            default: /* BB_DOWN */
                if (isnan(v[7])) continue;
                holds = close < v[7], value = close, threshold = v[7];
                break;
            }
            const int was = state[r];
            state[r] = (int8_t)holds;
            if (!holds || was == UNSEEN || holds == was) continue; /* not a start, or the baseline */
            if (index - fired[r] <= cooldown) continue;              /* never fired: -2**62 */
            fired[r] = index;
            PyObject *e = Py_BuildValue("(nndd)", j, (Py_ssize_t)rules[r], value, threshold);
            if (!e || PyList_Append(events, e) < 0) { Py_XDECREF(e); goto fail; }
            Py_DECREF(e);
        }
    }
    release(b, 14);
    return events;
fail:
    Py_XDECREF(events);
    release(b, 14);
    return NULL;
}

/* div_round for tests: Python's int / int for 0 <= s < 2**126, 1 <= w < 2**63. */
static PyObject *divide(PyObject *self, PyObject *args) {
    PyObject *os;
    unsigned long long w;
    if (!PyArg_ParseTuple(args, "OK", &os, &w)) return NULL;
    PyObject *mask = PyLong_FromUnsignedLongLong(~0ULL);
    if (!mask) return NULL;
    PyObject *lo = PyNumber_And(os, mask); /* low 64 bits */
    Py_DECREF(mask);
    if (!lo) return NULL;
    PyObject *sixty4 = PyLong_FromLong(64), *hi = PyNumber_Rshift(os, sixty4);
    Py_DECREF(sixty4);
    if (!hi) { Py_DECREF(lo); return NULL; }
    unsigned long long l = PyLong_AsUnsignedLongLong(lo), h = PyLong_AsUnsignedLongLong(hi);
    Py_DECREF(lo);
    Py_DECREF(hi);
    if (PyErr_Occurred()) return NULL;
    if (w == 0 || w >> 63 || h >> 62) { PyErr_SetString(PyExc_ValueError, "out of range"); return NULL; }
    return PyFloat_FromDouble(div_round(((unsigned __int128)h << 64) | l, w));
}

static PyObject *exact_sum(PyObject *self, PyObject *arg) {
    Buf b = {{0}};
    if (PyObject_GetBuffer(arg, &b.b, PyBUF_C_CONTIGUOUS) < 0) return NULL;
    b.held = 1;
    if (b.b.itemsize != 8) { release(&b, 1); PyErr_SetString(PyExc_ValueError, "float64 values"); return NULL; }
    double result = fsum((const double *)b.b.buf, b.b.len / 8);
    release(&b, 1);
    return PyFloat_FromDouble(result);
}

static PyMethodDef methods[] = {
    {"alerts", alerts, METH_VARARGS, alerts_doc},
    {"divide", divide, METH_VARARGS, "Python's int / int as the alert kernel computes it (tests)."},
    {"fsum", exact_sum, METH_O, "math.fsum of a float64 buffer, as the indicator kernel computes it (tests)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "stockpipe.analytics._kernel",
    "The analytics hot path in C: warm indicator columns and their alert rules (see _kernel.c).", -1, methods,
};

PyMODINIT_FUNC PyInit__kernel(void) {
    if (PyType_Ready(&ColumnsType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    PyObject *domain = Py_BuildValue("(dd)", CLOSE_MIN, CLOSE_MAX);
    if (!domain || PyModule_AddObjectRef(m, "Columns", (PyObject *)&ColumnsType) < 0 ||
        PyModule_AddObjectRef(m, "CLOSE_DOMAIN", domain) < 0) {
        Py_XDECREF(domain);
        Py_DECREF(m);
        return NULL;
    }
    Py_DECREF(domain);
    return m;
}

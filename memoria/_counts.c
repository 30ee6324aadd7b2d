/*
 * Reads and writes of the CPU count tensor of memoria.store.EngramStore ([B, N, N] int32, one
 * count matrix per batch row, indexed by physical slot).
 *
 * fire_together: every pair of engrams that fired together in a batch row gains 1. With torch ops that is an
 * index_put_ with accumulation over [B, K, K] pairs, three int64 index tensors built first; here it is a
 * double loop that adds in place, row after row in memory order.
 * fill_slots: the rows and columns of new or freed slots get one value. A column write misses the cache in every
 * count row, so it is bound by memory: the rows ahead are prefetched, and the batch rows are split over torch's own
 * threads (memoria/_threads.h).
 * pair_gather: the counts between some rows and some columns, read where they lie.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>

#include "_threads.h"

#ifndef PREFETCH_ROWS
#define PREFETCH_ROWS 8
#endif

/* Whether every one of `count` slots is a slot of the matrix or -1 (none). */
static int slots_in_range(const int64_t *slots, int64_t count, int64_t capacity) {
    int in_range = 1;
    for (int64_t k = 0; k < count; k++) {
        in_range &= slots[k] >= -1 && slots[k] < capacity;
    }
    return in_range;
}

typedef struct {
    int32_t *counts;
    int64_t batch_size, capacity, width;
    const int64_t *slots;
    int32_t value;
    int64_t next_row;
    int failed;
} Fill;

static void fill_rows(void *argument) {
    Fill *fill = (Fill *)argument;
    const int64_t capacity = fill->capacity, width = fill->width;
    int64_t *starts = (int64_t *)malloc((size_t)(width > 0 ? width : 1) * 2 * sizeof(int64_t));
    if (starts == NULL) {
        MEMORIA_SET_FLAG(&fill->failed, 1);
        return;
    }
    int64_t *ends = starts + (width > 0 ? width : 1);
    for (;;) {
        int64_t b = MEMORIA_FETCH_ADD(&fill->next_row, 1);
        if (b >= fill->batch_size) {
            break;
        }
        const int64_t *row_slots = fill->slots + b * width;
        int32_t *matrix = fill->counts + b * capacity * capacity;
        const int32_t value = fill->value;
        /* the valid slots in ascending order (insertion sort: a few dozen), then merged into runs [start, end) */
        int64_t num_valid = 0;
        for (int64_t i = 0; i < width; i++) {
            int64_t slot = row_slots[i];
            if (slot < 0) {
                continue;
            }
            int64_t j = num_valid++;
            while (j > 0 && starts[j - 1] > slot) {
                starts[j] = starts[j - 1];
                j--;
            }
            starts[j] = slot;
        }
        int64_t num_runs = 0;
        for (int64_t i = 0; i < num_valid; i++) {
            if (num_runs > 0 && starts[i] <= ends[num_runs - 1]) {
                ends[num_runs - 1] = starts[i] + 1;
            } else {
                starts[num_runs] = starts[i];
                ends[num_runs] = starts[i] + 1;
                num_runs++;
            }
        }
        for (int64_t r = 0; r < num_runs; r++) {
            for (int64_t slot = starts[r]; slot < ends[r]; slot++) {
                int32_t *row = matrix + slot * capacity;
                for (int64_t c = 0; c < capacity; c++) {
                    row[c] = value;
                }
            }
        }
        for (int64_t i = 0; i < capacity; i++) {
            int32_t *row = matrix + i * capacity;
            if (i + PREFETCH_ROWS < capacity) {
                for (int64_t r = 0; r < num_runs; r++) {
                    MEMORIA_PREFETCH_WRITE(row + PREFETCH_ROWS * capacity + starts[r]);
                    MEMORIA_PREFETCH_WRITE(row + PREFETCH_ROWS * capacity + ends[r] - 1);
                }
            }
            for (int64_t r = 0; r < num_runs; r++) {
                for (int64_t c = starts[r]; c < ends[r]; c++) {
                    row[c] = value;
                }
            }
        }
    }
    free(starts);
}

/*
 * fill_slots(counts, batch_size, capacity, slots, width, value, parallel, threads)
 *   counts: int32 [B, N, N], changed in place;
 *   slots: int64 [B, Width] physical slots per row, -1 skipped.
 * Sets the whole row and the whole column of every given slot to value. Columns are written row after row, each
 * row's slots in runs of neighbours, so a count row is visited once however many slots there are.
 * Nothing is written if any slot is out of range.
 */
static PyObject *py_fill_slots(PyObject *self, PyObject *args) {
    (void)self;
    unsigned long long counts_address, slots_address, parallel;
    long long batch_size, capacity, width, threads;
    int value;
    if (!PyArg_ParseTuple(args, "KLLKLiKL", &counts_address, &batch_size, &capacity, &slots_address, &width, &value,
                          &parallel, &threads)) {
        return NULL;
    }
    if (batch_size < 0 || capacity < 0 || width < 0) {
        PyErr_SetString(PyExc_ValueError, "_counts.fill_slots: negative size");
        return NULL;
    }
    Fill fill = {(int32_t *)(uintptr_t)counts_address, batch_size, capacity, width,
                 (const int64_t *)(uintptr_t)slots_address, (int32_t)value, 0, 0};
    int failed = 0;
    Py_BEGIN_ALLOW_THREADS failed = !slots_in_range(fill.slots, batch_size * width, capacity);
    if (!failed) {
        run_team(fill_rows, &fill, parallel, team_size(parallel, threads, batch_size));
    }
    Py_END_ALLOW_THREADS if (failed) {
        PyErr_SetString(PyExc_ValueError, "_counts.fill_slots: a slot out of range");
        return NULL;
    }
    if (fill.failed) {
        return PyErr_NoMemory();
    }
    Py_RETURN_NONE;
}

typedef struct {
    int32_t *counts;
    int64_t batch_size, capacity, width;
    const int64_t *fired;
    int64_t next_row;
} Fire;

static void fire_rows(void *argument) {
    Fire *fire = (Fire *)argument;
    const int64_t capacity = fire->capacity, width = fire->width;
    for (;;) {
        int64_t b = MEMORIA_FETCH_ADD(&fire->next_row, 1);
        if (b >= fire->batch_size) {
            break;
        }
        const int64_t *slots = fire->fired + b * width;
        int32_t *matrix = fire->counts + b * capacity * capacity;
        for (int64_t i = 0; i < width; i++) {
            if (slots[i] < 0) {
                continue;
            }
            int32_t *row = matrix + slots[i] * capacity;
            for (int64_t j = 0; j < width; j++) {
                if (slots[j] >= 0) {
                    row[slots[j]] += 1;
                }
            }
        }
    }
}

/*
 * fire_together(counts, batch_size, capacity, fired, width, parallel, threads)
 *   counts: int32 [B, N, N], changed in place;
 *   fired: int64 [B, Width] distinct physical slots per row, ascending, -1 where padded.
 * Nothing is written if any slot is out of range.
 */
static PyObject *py_fire_together(PyObject *self, PyObject *args) {
    (void)self;
    unsigned long long counts_address, fired_address, parallel;
    long long batch_size, capacity, width, threads;
    if (!PyArg_ParseTuple(args, "KLLKLKL", &counts_address, &batch_size, &capacity, &fired_address, &width, &parallel,
                          &threads)) {
        return NULL;
    }
    if (batch_size < 0 || capacity < 0 || width < 0) {
        PyErr_SetString(PyExc_ValueError, "_counts.fire_together: negative size");
        return NULL;
    }
    Fire fire = {(int32_t *)(uintptr_t)counts_address, batch_size, capacity, width,
                 (const int64_t *)(uintptr_t)fired_address, 0};
    int failed = 0;
    Py_BEGIN_ALLOW_THREADS failed = !slots_in_range(fire.fired, batch_size * width, capacity);
    if (!failed) {
        run_team(fire_rows, &fire, parallel, team_size(parallel, threads, batch_size));
    }
    Py_END_ALLOW_THREADS if (failed) {
        PyErr_SetString(PyExc_ValueError, "_counts.fire_together: a slot out of range");
        return NULL;
    }
    Py_RETURN_NONE;
}

typedef struct {
    const int32_t *counts;
    int64_t batch_size, capacity, num_rows, num_columns;
    const int64_t *rows, *columns;
    int32_t *out;
    int64_t next_row;
} Pairs;

static void pair_rows(void *argument) {
    Pairs *job = (Pairs *)argument;
    const int64_t capacity = job->capacity, num_rows = job->num_rows, num_columns = job->num_columns;
    for (;;) {
        int64_t b = MEMORIA_FETCH_ADD(&job->next_row, 1);
        if (b >= job->batch_size) {
            break;
        }
        const int64_t *columns = job->columns + b * num_columns;
        for (int64_t i = 0; i < num_rows; i++) {
            int64_t slot = job->rows[b * num_rows + i];
            int32_t *target = job->out + (b * num_rows + i) * num_columns;
            if (slot < 0) {
                for (int64_t j = 0; j < num_columns; j++) {
                    target[j] = -1;
                }
                continue;
            }
            const int32_t *row = job->counts + (b * capacity + slot) * capacity;
            for (int64_t j = 0; j < num_columns; j++) {
                target[j] = columns[j] < 0 ? -1 : row[columns[j]];
            }
        }
    }
}

/*
 * pair_gather(counts, batch_size, capacity, rows, num_rows, columns, num_columns, out, parallel, threads)
 *   counts: int32 [B, N, N]; rows: int64 [B, Rows] and columns: int64 [B, Columns] physical slots, -1 for none;
 *   out: int32 [B, Rows, Columns], written.
 * out[b, i, j] = counts[b, rows[b, i], columns[b, j]], -1 where either slot is -1: each row's columns read in place
 * (the torch form copies whole count rows first, then picks the columns). Raises on a slot out of range.
 */
static PyObject *py_pair_gather(PyObject *self, PyObject *args) {
    (void)self;
    unsigned long long counts_address, rows_address, columns_address, out_address, parallel;
    long long batch_size, capacity, num_rows, num_columns, threads;
    if (!PyArg_ParseTuple(args, "KLLKLKLKKL", &counts_address, &batch_size, &capacity, &rows_address, &num_rows,
                          &columns_address, &num_columns, &out_address, &parallel, &threads)) {
        return NULL;
    }
    if (batch_size < 0 || capacity < 0 || num_rows < 0 || num_columns < 0) {
        PyErr_SetString(PyExc_ValueError, "_counts.pair_gather: negative size");
        return NULL;
    }
    Pairs job = {(const int32_t *)(uintptr_t)counts_address,
                 batch_size,
                 capacity,
                 num_rows,
                 num_columns,
                 (const int64_t *)(uintptr_t)rows_address,
                 (const int64_t *)(uintptr_t)columns_address,
                 (int32_t *)(uintptr_t)out_address,
                 0};
    int failed = 0;
    Py_BEGIN_ALLOW_THREADS failed = !slots_in_range(job.rows, batch_size * num_rows, capacity) ||
                                    !slots_in_range(job.columns, batch_size * num_columns, capacity);
    if (!failed) {
        run_team(pair_rows, &job, parallel, team_size(parallel, threads, batch_size));
    }
    Py_END_ALLOW_THREADS if (failed) {
        PyErr_SetString(PyExc_ValueError, "_counts.pair_gather: a slot out of range");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"fire_together", py_fire_together, METH_VARARGS,
     "fire_together(counts, batch, capacity, fired, width, parallel, threads)."},
    {"pair_gather", py_pair_gather, METH_VARARGS,
     "pair_gather(counts, batch, capacity, rows, num_rows, columns, num_columns, out, parallel, threads)."},
    {"fill_slots", py_fill_slots, METH_VARARGS,
     "fill_slots(counts, batch, capacity, slots, width, value, parallel, threads)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_counts", "Writes to the CPU count tensor of an EngramStore.", -1, methods, NULL, NULL, NULL,
    NULL};

PyMODINIT_FUNC PyInit__counts(void) { return PyModule_Create(&module); }

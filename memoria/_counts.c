/*
 * Writes to the CPU count tensor of memoria.store.EngramStore ([BatchSize, Capacity, Capacity] int32, one count
 * matrix per batch row, indexed by physical slot).
 *
 * fire_together: every pair of engrams that fired together in a batch row gains 1. With torch ops that is an
 * index_put_ with accumulation over [BatchSize, K, K] pairs, three int64 index tensors built first; here it is a
 * double loop that adds in place, row after row in memory order. (Clearing new slots' rows and columns was tried
 * here too and was slower than torch's index_fill_, so it stays in torch.)
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

/*
 * fire_together(counts, batch_size, capacity, fired, width)
 *   counts: int32 [BatchSize, Capacity, Capacity], changed in place;
 *   fired: int64 [BatchSize, Width] distinct physical slots per row, ascending, -1 where padded.
 * Nothing is written if any slot is out of range.
 */
static PyObject *py_fire_together(PyObject *self, PyObject *args) {
    (void)self;
    unsigned long long counts_address, fired_address;
    long long batch_size, capacity, width;
    if (!PyArg_ParseTuple(args, "KLLKL", &counts_address, &batch_size, &capacity, &fired_address, &width)) {
        return NULL;
    }
    if (batch_size < 0 || capacity < 0 || width < 0) {
        PyErr_SetString(PyExc_ValueError, "_counts.fire_together: negative size");
        return NULL;
    }
    int32_t *counts = (int32_t *)(uintptr_t)counts_address;
    const int64_t *fired = (const int64_t *)(uintptr_t)fired_address;
    int failed = 0;
    Py_BEGIN_ALLOW_THREADS for (int64_t k = 0; k < batch_size * width; k++) {
        failed |= fired[k] < -1 || fired[k] >= capacity;
    }
    for (int64_t b = 0; b < batch_size && !failed; b++) {
        const int64_t *slots = fired + b * width;
        int32_t *matrix = counts + b * capacity * capacity;
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
    Py_END_ALLOW_THREADS if (failed) {
        PyErr_SetString(PyExc_ValueError, "_counts.fire_together: a slot out of range");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"fire_together", py_fire_together, METH_VARARGS, "fire_together(counts, batch, capacity, fired, width)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_counts", "Writes to the CPU count tensor of an EngramStore.", -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__counts(void) { return PyModule_Create(&module); }

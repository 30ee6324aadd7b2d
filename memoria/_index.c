/*
 * Index helpers of memoria.utils and memoria.store on small CPU tensors.
 *
 * Each is a handful of [BatchSize, MemoryLength] torch ops (a sum, a cumsum, a where, a scatter, ...) on tensors so
 * small that each op's fixed cost outweighs its work, and a step calls them dozens of times. Here each is one pass
 * over its input.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

/*
 * indices_with_mask(mask, batch_size, length, out) -> width
 *   mask: bool [BatchSize, Length]; out: int64 [BatchSize * Length] scratch.
 * Writes the positions of every row's true entries, ascending and left-padded with -1 to the largest true count
 * (width), as a contiguous [BatchSize, width] block at the start of out, and returns width.
 */
static PyObject *py_indices_with_mask(PyObject *self, PyObject *args) {
    (void)self;
    unsigned long long mask_address, out_address;
    long long batch_size, length;
    if (!PyArg_ParseTuple(args, "KLLK", &mask_address, &batch_size, &length, &out_address)) {
        return NULL;
    }
    if (batch_size < 0 || length < 0) {
        PyErr_SetString(PyExc_ValueError, "_index.indices_with_mask: negative size");
        return NULL;
    }
    const unsigned char *mask = (const unsigned char *)(uintptr_t)mask_address;
    int64_t *out = (int64_t *)(uintptr_t)out_address;
    int64_t width = 0;
    for (int64_t b = 0; b < batch_size; b++) {
        int64_t count = 0;
        for (int64_t i = 0; i < length; i++) {
            count += mask[b * length + i] != 0;
        }
        width = count > width ? count : width;
    }
    for (int64_t b = 0; b < batch_size; b++) {
        const unsigned char *row = mask + b * length;
        int64_t *target = out + b * width + width; /* filled from the right: the padding ends up on the left */
        for (int64_t i = length - 1; i >= 0; i--) {
            if (row[i]) {
                *--target = i;
            }
        }
        while (target > out + b * width) {
            *--target = -1;
        }
    }
    return PyLong_FromLongLong(width);
}

/*
 * physical(slots, batch_size, length, indices, width, out)
 *   slots: int64 [BatchSize, Length]; indices: int64 [BatchSize, Width] below Length; out: int64 [BatchSize, Width].
 * out[b, k] = slots[b, indices[b, k]], -1 where the index is negative. Raises (out partly written) on an index past
 * the end.
 */
static PyObject *py_physical(PyObject *self, PyObject *args) {
    (void)self;
    unsigned long long slots_address, indices_address, out_address;
    long long batch_size, length, width;
    if (!PyArg_ParseTuple(args, "KLLKLK", &slots_address, &batch_size, &length, &indices_address, &width,
                          &out_address)) {
        return NULL;
    }
    if (batch_size < 0 || length < 0 || width < 0) {
        PyErr_SetString(PyExc_ValueError, "_index.physical: negative size");
        return NULL;
    }
    const int64_t *slots = (const int64_t *)(uintptr_t)slots_address;
    const int64_t *indices = (const int64_t *)(uintptr_t)indices_address;
    int64_t *out = (int64_t *)(uintptr_t)out_address;
    for (int64_t b = 0; b < batch_size; b++) {
        for (int64_t k = 0; k < width; k++) {
            int64_t index = indices[b * width + k];
            if (index >= length) {
                PyErr_Format(PyExc_IndexError, "index %lld is out of range for a memory of length %lld",
                             (long long)index, length);
                return NULL;
            }
            out[b * width + k] = index < 0 ? -1 : slots[b * length + index];
        }
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"indices_with_mask", py_indices_with_mask, METH_VARARGS, "indices_with_mask(mask, batch, length, out) -> width."},
    {"physical", py_physical, METH_VARARGS, "physical(slots, batch, length, indices, width, out)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_index", "Index helpers on small CPU tensors.", -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__index(void) { return PyModule_Create(&module); }

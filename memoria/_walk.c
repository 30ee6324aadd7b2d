/*
 * The long-term graph walk (memoria.memoria.Memoria._search_longterm) on a CPU.
 *
 * Each walker stands on a long-term engram and steps to the first long-term engram, in LTM order, with the largest
 * co-firing count among those its batch row has not visited. With torch ops every depth is about fifteen ops (a
 * unique, an index_select of whole count rows, a gather of their long-term columns, a masked fill, an argmax, ...),
 * each a pass over a temporary; here a depth is one pass over the long-term columns of each distinct row. The rows
 * lie far apart in a large tensor, so the walk is bound by memory reads: the next row is prefetched while one is
 * scanned.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define WITH_AVX2_CLONE __attribute__((target_clones("avx2", "default")))
#else
#define WITH_AVX2_CLONE
#endif

#ifndef PREFETCH_AHEAD
#define PREFETCH_AHEAD 2
#endif

/* First position of the largest of row[columns[j]] (visited[j]: -1), and the values in `scores`. */
WITH_AVX2_CLONE static int64_t first_strongest(const int32_t *restrict row, const int32_t *restrict columns,
                                               const unsigned char *restrict visited, int32_t *restrict scores,
                                               int64_t count) {
    int32_t top = INT32_MIN;
    for (int64_t j = 0; j < count; j++) {
        /* read unconditionally (every column is in range), then select: a loop without branches vectorises */
        int32_t value = row[columns[j]];
        int32_t score = visited[j] ? -1 : value;
        scores[j] = score;
        top = score > top ? score : top;
    }
    int64_t position = 0;
    while (position < count && scores[position] != top) {
        position++;
    }
    return position < count ? position : 0;
}

/*
 * walk(counts, batch_size, capacity, nodes, walkers, ltm_slots, num_ltm, visited, depth, last, found)
 *
 * The depths of memoria.memoria.Memoria._search_longterm after the first marking, on a CPU:
 *   nodes: int64 [BatchSize * Walkers] flat node of every walker, updated in place;
 *   visited: bool [BatchSize * NumLTM], updated in place; found: int64 [Depth, BatchSize * Walkers] out, the LTM
 *   position each walker reached at each depth, -1 at a dead end (the walker then stands on position `last`).
 * Within a depth every walker reads `visited` as it was before the depth, and walkers on the same node share one
 * read of its row, as the torch form does with torch.unique.
 */
static PyObject *py_walk(PyObject *self, PyObject *args) {
    (void)self;
    unsigned long long counts_address, nodes_address, slots_address, visited_address, found_address;
    long long batch_size, capacity, walkers, num_ltm, depth, last;
    if (!PyArg_ParseTuple(args, "KLLKLKLKLLK", &counts_address, &batch_size, &capacity, &nodes_address, &walkers,
                          &slots_address, &num_ltm, &visited_address, &depth, &last, &found_address)) {
        return NULL;
    }
    if (batch_size < 0 || capacity < 0 || walkers < 0 || num_ltm <= 0 || depth < 0 || last < 0 || last >= num_ltm) {
        PyErr_SetString(PyExc_ValueError, "_walk.walk: bad size");
        return NULL;
    }
    const int32_t *counts = (const int32_t *)(uintptr_t)counts_address;
    int64_t *nodes = (int64_t *)(uintptr_t)nodes_address;
    const int64_t *slots = (const int64_t *)(uintptr_t)slots_address;
    unsigned char *visited = (unsigned char *)(uintptr_t)visited_address;
    int64_t *found = (int64_t *)(uintptr_t)found_address;
    int64_t num_nodes = batch_size * num_ltm, count = batch_size * walkers;
    int32_t *scores = (int32_t *)malloc((size_t)num_ltm * sizeof(int32_t));
    /* per node, the depth (plus one) its strongest position was last computed at, and that position */
    int64_t *computed_at = (int64_t *)calloc((size_t)(num_nodes > 0 ? num_nodes : 1), sizeof(int64_t));
    int64_t *strongest = (int64_t *)malloc((size_t)(num_nodes > 0 ? num_nodes : 1) * sizeof(int64_t));
    /* the slots as int32 (capacity is far below 2^31): twice as many per vector gather as int64 */
    int32_t *columns = (int32_t *)malloc((size_t)(num_nodes > 0 ? num_nodes : 1) * sizeof(int32_t));
    if (scores == NULL || computed_at == NULL || strongest == NULL || columns == NULL) {
        free(scores);
        free(computed_at);
        free(strongest);
        free(columns);
        return PyErr_NoMemory();
    }
    int failed = capacity > INT32_MAX;
    Py_BEGIN_ALLOW_THREADS for (int64_t j = 0; j < num_nodes && !failed; j++) {
        failed = slots[j] < 0 || slots[j] >= capacity;
        columns[j] = (int32_t)slots[j];
    }
    for (int64_t i = 0; i < count && !failed; i++) {
        failed = nodes[i] < 0 || nodes[i] >= num_nodes;
    }
    for (int64_t d = 0; d < depth && !failed; d++) {
        int64_t *current = found + d * count;
        for (int64_t i = 0; i < count; i++) {
            int64_t node = nodes[i], b = node / num_ltm;
            if (computed_at[node] != d + 1) {
                if (i + PREFETCH_AHEAD < count) {
                    int64_t ahead = nodes[i + PREFETCH_AHEAD];
                    const int32_t *ahead_row = counts + ((ahead / num_ltm) * capacity + slots[ahead]) * capacity;
                    for (int64_t k = 0; k < capacity; k += 16) {
                        __builtin_prefetch(ahead_row + k);
                    }
                }
                const int32_t *row = counts + (b * capacity + slots[node]) * capacity;
                strongest[node] =
                    first_strongest(row, columns + b * num_ltm, visited + b * num_ltm, scores, num_ltm);
                computed_at[node] = d + 1;
            }
            int64_t step = b * num_ltm + strongest[node];
            int dead_end = visited[step] != 0;
            current[i] = dead_end ? -1 : strongest[node];
            /* the new node goes in place only after the whole depth has read `visited`: kept in `found` for now */
        }
        for (int64_t i = 0; i < count; i++) {
            int64_t b = nodes[i] / num_ltm;
            nodes[i] = b * num_ltm + (current[i] < 0 ? last : current[i]);
            visited[nodes[i]] = 1;
        }
    }
    Py_END_ALLOW_THREADS free(scores);
    free(computed_at);
    free(strongest);
    free(columns);
    if (failed) {
        PyErr_SetString(PyExc_ValueError, "_walk.walk: a node or slot out of range");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"walk", py_walk, METH_VARARGS,
     "walk(counts, batch, capacity, nodes, walkers, ltm_slots, num_ltm, visited, depth, last, found)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_walk", "Memoria's long-term graph walk on a CPU.", -1, methods,
    NULL,                  NULL,    NULL,                                                  NULL};

PyMODINIT_FUNC PyInit__walk(void) { return PyModule_Create(&module); }

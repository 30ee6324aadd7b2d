/*
 * The long-term graph walk (memoria.memoria.Memoria._search_longterm) on a CPU.
 *
 * Each walker stands on a long-term engram and steps to the first long-term engram, in LTM order, with the largest
 * co-firing count among those its batch row has not visited. With torch ops every depth is about fifteen ops (a
 * unique, an index_select of whole count rows, a gather of their long-term columns, a masked fill, an argmax, ...),
 * each a pass over a temporary; here a depth is one pass over the long-term columns of each distinct row. The rows
 * lie far apart in a large tensor, so the walk is bound by memory reads: the next row is prefetched while one is
 * scanned, and the batch rows, which never meet, are split over torch's own CPU threads.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>

#include "_threads.h"

#ifndef PREFETCH_AHEAD
#define PREFETCH_AHEAD 2
#endif

/* First position of the largest of row[columns[j]] (visited[j]: -1), and the values in `scores`. */
MEMORIA_AVX2_CLONE static int64_t first_strongest(const int32_t *MEMORIA_RESTRICT row,
                                                  const int32_t *MEMORIA_RESTRICT columns,
                                                  const unsigned char *MEMORIA_RESTRICT visited,
                                                  int32_t *MEMORIA_RESTRICT scores, int64_t count) {
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

/* Everything one walk reads and writes; batch rows are independent, so threads share it and split the rows. */
typedef struct {
    const int32_t *counts;
    int64_t capacity, walkers, num_ltm, depth, last, batch_size;
    int64_t *nodes, *found, *computed_at, *strongest;
    const int64_t *slots;
    const int32_t *columns;
    unsigned char *visited;
    int64_t next_row; /* the next batch row a thread takes */
    int failed;       /* a thread could not get its scratch memory */
} Walk;

/* Every depth of one batch row's walkers. */
static void walk_row(Walk *walk, int64_t b, int32_t *scores) {
    const int64_t capacity = walk->capacity, walkers = walk->walkers, num_ltm = walk->num_ltm;
    const int64_t count = walk->batch_size * walkers;
    int64_t *nodes = walk->nodes + b * walkers;
    const int32_t *matrix = walk->counts + b * capacity * capacity;
    const int64_t *slots = walk->slots + b * num_ltm;
    const int32_t *columns = walk->columns + b * num_ltm;
    unsigned char *visited = walk->visited + b * num_ltm;
    int64_t *computed_at = walk->computed_at + b * num_ltm, *strongest = walk->strongest + b * num_ltm;
    for (int64_t d = 0; d < walk->depth; d++) {
        int64_t *current = walk->found + d * count + b * walkers;
        for (int64_t i = 0; i < walkers; i++) {
            int64_t node = nodes[i] - b * num_ltm;
            if (computed_at[node] != d + 1) {
                if (i + PREFETCH_AHEAD < walkers) {
                    const int32_t *ahead_row = matrix + slots[nodes[i + PREFETCH_AHEAD] - b * num_ltm] * capacity;
                    for (int64_t k = 0; k < capacity; k += 16) {
                        MEMORIA_PREFETCH(ahead_row + k);
                    }
                }
                strongest[node] = first_strongest(matrix + slots[node] * capacity, columns, visited, scores, num_ltm);
                computed_at[node] = d + 1;
            }
            int dead_end = visited[strongest[node]] != 0;
            current[i] = dead_end ? -1 : strongest[node];
            /* the new node goes in place only after the whole depth has read `visited`: kept in `found` for now */
        }
        for (int64_t i = 0; i < walkers; i++) {
            int64_t position = current[i] < 0 ? walk->last : current[i];
            nodes[i] = b * num_ltm + position;
            visited[position] = 1;
        }
    }
}

/* One thread's share: batch rows, one at a time, until none is left. */
static void walk_rows(void *argument) {
    Walk *walk = (Walk *)argument;
    int32_t *scores = (int32_t *)malloc((size_t)walk->num_ltm * sizeof(int32_t));
    if (scores == NULL) {
        MEMORIA_SET_FLAG(&walk->failed, 1);
        return;
    }
    for (;;) {
        int64_t b = MEMORIA_FETCH_ADD(&walk->next_row, 1);
        if (b >= walk->batch_size) {
            break;
        }
        walk_row(walk, b, scores);
    }
    free(scores);
}

/*
 * walk(counts, batch_size, capacity, nodes, walkers, ltm_slots, num_ltm, visited, depth, last, found, parallel,
 *      threads)
 *
 * The depths of memoria.memoria.Memoria._search_longterm after the first marking, on a CPU:
 *   nodes: int64 [B * Walkers] flat node of every walker, updated in place;
 *   visited: bool [B * T], updated in place; found: int64 [Depth, B * Walkers] out, the LTM
 *   position each walker reached at each depth, -1 at a dead end (the walker then stands on position `last`).
 * Within a depth every walker reads `visited` as it was before the depth, and walkers on the same node share one
 * read of its row, as the torch form does with torch.unique.
 *   parallel: address of GOMP_parallel, or 0 to walk on the calling thread alone; threads: how many to use.
 */
static PyObject *py_walk(PyObject *self, PyObject *args) {
    (void)self;
    unsigned long long counts_address, nodes_address, slots_address, visited_address, found_address, parallel;
    long long batch_size, capacity, walkers, num_ltm, depth, last, threads;
    if (!PyArg_ParseTuple(args, "KLLKLKLKLLKKL", &counts_address, &batch_size, &capacity, &nodes_address, &walkers,
                          &slots_address, &num_ltm, &visited_address, &depth, &last, &found_address, &parallel,
                          &threads)) {
        return NULL;
    }
    if (batch_size < 0 || capacity < 0 || walkers < 0 || num_ltm <= 0 || depth < 0 || last < 0 || last >= num_ltm ||
        threads < 1) {
        PyErr_SetString(PyExc_ValueError, "_walk.walk: bad size");
        return NULL;
    }
    int64_t num_nodes = batch_size * num_ltm, count = batch_size * walkers;
    Walk walk = {
        .counts = (const int32_t *)(uintptr_t)counts_address,
        .capacity = capacity,
        .walkers = walkers,
        .num_ltm = num_ltm,
        .depth = depth,
        .last = last,
        .batch_size = batch_size,
        .nodes = (int64_t *)(uintptr_t)nodes_address,
        .found = (int64_t *)(uintptr_t)found_address,
        .slots = (const int64_t *)(uintptr_t)slots_address,
        .visited = (unsigned char *)(uintptr_t)visited_address,
    };
    /* per node, the depth (plus one) its strongest position was last computed at, and that position */
    int64_t *computed_at = (int64_t *)calloc((size_t)(num_nodes > 0 ? num_nodes : 1), sizeof(int64_t));
    int64_t *strongest = (int64_t *)malloc((size_t)(num_nodes > 0 ? num_nodes : 1) * sizeof(int64_t));
    /* the slots as int32 (capacity is far below 2^31): twice as many per vector gather as int64 */
    int32_t *columns = (int32_t *)malloc((size_t)(num_nodes > 0 ? num_nodes : 1) * sizeof(int32_t));
    if (computed_at == NULL || strongest == NULL || columns == NULL) {
        free(computed_at);
        free(strongest);
        free(columns);
        return PyErr_NoMemory();
    }
    walk.computed_at = computed_at;
    walk.strongest = strongest;
    walk.columns = columns;
    int failed = capacity > INT32_MAX;
    Py_BEGIN_ALLOW_THREADS for (int64_t j = 0; j < num_nodes && !failed; j++) {
        failed = walk.slots[j] < 0 || walk.slots[j] >= capacity;
        columns[j] = (int32_t)walk.slots[j];
    }
    /* every walker stands on a node of its own batch row */
    for (int64_t i = 0; i < count && !failed; i++) {
        failed = walk.nodes[i] < (i / walkers) * num_ltm || walk.nodes[i] >= (i / walkers + 1) * num_ltm;
    }
    if (!failed) {
        run_team(walk_rows, &walk, parallel, team_size(parallel, threads, batch_size));
    }
    Py_END_ALLOW_THREADS free(computed_at);
    free(strongest);
    free(columns);
    if (failed) {
        PyErr_SetString(PyExc_ValueError, "_walk.walk: a node or slot out of range");
        return NULL;
    }
    if (walk.failed) {
        return PyErr_NoMemory();
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"walk", py_walk, METH_VARARGS,
     "walk(counts, batch, capacity, nodes, walkers, ltm_slots, num_ltm, visited, depth, last, found, parallel, threads)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_walk", "Memoria's long-term graph walk on a CPU.", -1, methods,
    NULL,                  NULL,    NULL,                                                  NULL};

PyMODINIT_FUNC PyInit__walk(void) { return PyModule_Create(&module); }

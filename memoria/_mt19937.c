/*
 * The long-term tie-break draw of memoria/draw.py, computed straight on the state of a torch CPU generator.
 *
 * torch's CPU generator is an MT19937. Its state (Generator.get_state(), 5056 bytes on little-endian builds) holds the
 * 624 words as uint64 at byte 24, the count `left` as int32 at byte 8 and the read position `next` as uint64 at byte
 * 16. Each element of an int32 random_ / float16 rand spends one tempered word: `if (--left == 0) regenerate;
 * word = temper(state[next++])`. draw.py checks once per process that these functions give what torch gives, and
 * falls back to torch's own draw if not (another layout, another engine).
 *
 * Why native code: the published draw is [B, Entries, M] words per step, of which only the
 * long-term columns are read. torch draws, tempers and converts them all; regenerating the state costs a fraction of
 * that, and only the words that are read need tempering and rounding. The two hot loops (regenerate, run_keys) are
 * built for AVX2 too where the compiler can (MEMORIA_AVX2_CLONE).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "_threads.h"

#define STATE_WORDS 624
#define SHIFT_WORDS 397
#define MATRIX_A 0x9908b0dfU
#define UPPER_MASK 0x80000000U
#define LOWER_MASK 0x7fffffffU

#define STATE_BYTES 5056
#define LEFT_OFFSET 8
#define NEXT_OFFSET 16
#define WORDS_OFFSET 24

typedef struct {
    uint32_t words[STATE_WORDS];
    int64_t left; /* one more than the words still readable before the next regeneration */
    int64_t next; /* index of the next word to read */
} Stream;

static int load_stream(const unsigned char *bytes, Stream *stream) {
    int32_t left;
    uint64_t next, word;
    memcpy(&left, bytes + LEFT_OFFSET, sizeof(left));
    memcpy(&next, bytes + NEXT_OFFSET, sizeof(next));
    if (left < 1 || next > STATE_WORDS || (int64_t)next + left - 1 > STATE_WORDS) {
        return -1;
    }
    for (int k = 0; k < STATE_WORDS; k++) {
        memcpy(&word, bytes + WORDS_OFFSET + 8 * k, sizeof(word));
        stream->words[k] = (uint32_t)word;
    }
    stream->left = left;
    stream->next = (int64_t)next;
    return 0;
}

static void store_stream(const Stream *stream, unsigned char *bytes) {
    int32_t left = (int32_t)stream->left;
    uint64_t next = (uint64_t)stream->next, word;
    memcpy(bytes + LEFT_OFFSET, &left, sizeof(left));
    memcpy(bytes + NEXT_OFFSET, &next, sizeof(next));
    for (int k = 0; k < STATE_WORDS; k++) {
        word = stream->words[k];
        memcpy(bytes + WORDS_OFFSET + 8 * k, &word, sizeof(word));
    }
}

static inline uint32_t mix(uint32_t upper, uint32_t lower) {
    uint32_t y = (upper & UPPER_MASK) | (lower & LOWER_MASK);
    return (y >> 1) ^ ((0U - (y & 1U)) & MATRIX_A);
}

MEMORIA_AVX2_CLONE static void regenerate(Stream *stream) {
    uint32_t *s = stream->words;
    int k = 0;
    /* three loops so that each has a fixed read offset, which lets the compiler vectorise them */
    for (; k < STATE_WORDS - SHIFT_WORDS; k++) {
        s[k] = s[k + SHIFT_WORDS] ^ mix(s[k], s[k + 1]);
    }
    for (; k < STATE_WORDS - 1; k++) {
        s[k] = s[k + SHIFT_WORDS - STATE_WORDS] ^ mix(s[k], s[k + 1]);
    }
    s[STATE_WORDS - 1] = s[SHIFT_WORDS - 1] ^ mix(s[STATE_WORDS - 1], s[0]);
    /* as if nothing of the new block were read yet: after reading j words left = 625 - j and next = j */
    stream->left = STATE_WORDS + 1;
    stream->next = 0;
}

/* Spend `count` words; copy them, untempered, to `out` unless it is NULL. */
static void take(Stream *stream, uint32_t *out, int64_t count) {
    while (count > 0) {
        int64_t readable = stream->left - 1;
        if (readable == 0) {
            regenerate(stream);
            readable = STATE_WORDS;
        }
        int64_t taken = readable < count ? readable : count;
        if (out != NULL) {
            memcpy(out, stream->words + stream->next, (size_t)taken * sizeof(uint32_t));
            out += taken;
        }
        stream->next += taken;
        stream->left -= taken;
        count -= taken;
    }
}

static inline uint32_t temper(uint32_t y) {
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680U;
    y ^= (y << 15) & 0xefc60000U;
    y ^= y >> 18;
    return y;
}

/*
 * The order key of the float16 that rand makes of a word: its low 24 bits v, as the float16 round(v * 2^-24) scaled
 * back by 2^24, i.e. v rounded (to nearest, ties to even) to 11 significant bits, and 0 for the values that round to
 * 1 (rand keeps its values below 1). Below 2^11 every v has at most 11 significant bits, so subnormal halves come out
 * right too. The rounding is a float32 addition: adding 2^(e + 13) for v in [2^e, 2^(e + 1)) leaves 2^(e - 10) as the
 * unit in the last place, and float32 addition rounds ties to even.
 */
static inline uint32_t half_key(uint32_t word) {
    /* signed conversions both ways (every value fits): SSE2 has them as single vector instructions */
    int32_t value = (int32_t)(word & 0xffffffU);
    float x = (float)value, offset;
    uint32_t bits;
    memcpy(&bits, &x, sizeof(bits));
    bits = (bits & 0x7f800000U) + (13U << 23);
    memcpy(&offset, &bits, sizeof(offset));
    /* exact IEEE arithmetic is assumed (no -ffast-math); draw.py checks every value against torch once */
    int32_t rounded = (int32_t)((x + offset) - offset);
    return rounded >= 0x1000000 ? 0U : (uint32_t)rounded;
}

/* Keys of `count` consecutive words where allowed (0 elsewhere), and the largest: the hot loop of first_max. */
MEMORIA_AVX2_CLONE static uint32_t run_keys(const uint32_t *words, const unsigned char *allowed, uint32_t *keys,
                                            int64_t count) {
    uint32_t top = 0;
    for (int64_t c = 0; c < count; c++) {
        uint32_t key = half_key(temper(words[c])) & (0U - (uint32_t)(allowed[c] != 0));
        keys[c] = key;
        top = key > top ? key : top;
    }
    return top;
}

static PyObject *py_skip(PyObject *self, PyObject *args) {
    (void)self;
    unsigned long long state_address;
    long long count;
    if (!PyArg_ParseTuple(args, "KL", &state_address, &count)) {
        return NULL;
    }
    Stream stream;
    if (count < 0 || load_stream((const unsigned char *)(uintptr_t)state_address, &stream) != 0) {
        PyErr_SetString(PyExc_ValueError, "_mt19937.skip: not a CPU generator state this module knows");
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS take(&stream, NULL, count);
    store_stream(&stream, (unsigned char *)(uintptr_t)state_address);
    Py_END_ALLOW_THREADS Py_RETURN_NONE;
}

static PyObject *py_half_keys(PyObject *self, PyObject *args) {
    (void)self;
    unsigned long long words_address, keys_address;
    long long count;
    if (!PyArg_ParseTuple(args, "KKL", &words_address, &keys_address, &count)) {
        return NULL;
    }
    const uint32_t *words = (const uint32_t *)(uintptr_t)words_address;
    int32_t *keys = (int32_t *)(uintptr_t)keys_address;
    Py_BEGIN_ALLOW_THREADS for (long long k = 0; k < count; k++) {
        keys[k] = (int32_t)half_key(words[k]);
    }
    Py_END_ALLOW_THREADS Py_RETURN_NONE;
}

/* One first_max call. The draw is one stream of words, row after row: a share of the batch rows starts from its own
 * copy of the state, skipped to the share's first word (regenerating costs a fraction of reading). */
typedef struct {
    Stream start;       /* the state before the draw */
    Stream end;         /* after it, from the share that holds the last batch row */
    int64_t batch_size, entries, length, num_columns, num_rows, shares;
    const int64_t *columns, *slots;
    const unsigned char *candidates;
    int64_t *positions;
    unsigned char *drew;
    int64_t next_share;
    int failed; /* 1: a column or slot out of range, 2: no memory */
} FirstMax;

/* The batch rows of one share, [first, end): shares differ by at most one row, the earlier ones longer. */
static void share_rows(const FirstMax *job, int64_t share, int64_t *first, int64_t *end) {
    int64_t size = job->batch_size / job->shares, extra = job->batch_size % job->shares;
    *first = share * size + (share < extra ? share : extra);
    *end = *first + size + (share < extra);
}

static void first_max_rows(void *argument) {
    FirstMax *job = (FirstMax *)argument;
    const int64_t entries = job->entries, length = job->length, num_columns = job->num_columns;
    Stream *stream = (Stream *)malloc(sizeof(Stream));
    uint32_t *span = (uint32_t *)malloc((size_t)(length > 0 ? length : 1) * sizeof(uint32_t));
    uint32_t *keys = (uint32_t *)malloc((size_t)(num_columns > 0 ? num_columns : 1) * sizeof(uint32_t));
    if (stream == NULL || span == NULL || keys == NULL) {
        MEMORIA_SET_FLAG(&job->failed, 2);
        free(stream);
        free(span);
        free(keys);
        return;
    }
    for (;;) {
        int64_t share = MEMORIA_FETCH_ADD(&job->next_share, 1), first, end;
        if (share >= job->shares) {
            break;
        }
        share_rows(job, share, &first, &end);
        *stream = job->start;
        take(stream, NULL, first * entries * length);
        int failed = 0;
        for (int64_t b = first; b < end && !failed; b++) {
            const int64_t *row_columns = job->columns + b * num_columns;
            /* the read columns of this batch row lie in [low, high]; everything else is only spent */
            int64_t low = -1, high = -1, first_valid = num_columns;
            for (int64_t c = 0; c < num_columns; c++) {
                if (row_columns[c] >= 0) {
                    if (low < 0) {
                        low = row_columns[c];
                        first_valid = c;
                    }
                    high = row_columns[c];
                }
            }
            /* a run: every column from first_valid on is valid and they are consecutive */
            int run = high - low == num_columns - 1 - first_valid;
            for (int64_t c = first_valid; c < num_columns && run; c++) {
                run = row_columns[c] == low + (c - first_valid);
            }
            if (low < 0 || high >= length) {
                failed = high >= length;
                take(stream, NULL, entries * length);
                for (int64_t e = 0; e < entries; e++) {
                    job->positions[b * entries + e] = 0;
                    job->drew[b * entries + e] = 0;
                }
                continue;
            }
            for (int64_t e = 0; e < entries; e++) {
                take(stream, NULL, low);
                take(stream, span, high - low + 1);
                take(stream, NULL, length - high - 1);
                int64_t slot = job->slots[b * entries + e];
                if (slot < 0 || slot >= job->num_rows) {
                    failed = 1;
                    break;
                }
                const unsigned char *allowed = job->candidates + (b * job->num_rows + slot) * num_columns;
                uint32_t top = 0;
                if (run) {
                    /* the usual case (the long-term engrams are the oldest, one run of positions): a plain loop */
                    top = run_keys(span, allowed + first_valid, keys + first_valid, num_columns - first_valid);
                } else {
                    for (int64_t c = first_valid; c < num_columns; c++) {
                        int64_t column = row_columns[c];
                        uint32_t key = column >= 0 && allowed[c] ? half_key(temper(span[column - low])) : 0U;
                        keys[c] = key;
                        top = key > top ? key : top;
                    }
                }
                int64_t position = 0;
                if (top > 0) {
                    position = first_valid;
                    while (keys[position] != top) {
                        position++;
                    }
                }
                job->positions[b * entries + e] = position;
                job->drew[b * entries + e] = top > 0;
            }
        }
        if (failed) {
            MEMORIA_SET_FLAG(&job->failed, 1);
        } else if (end == job->batch_size) {
            job->end = *stream;
        }
    }
    free(stream);
    free(span);
    free(keys);
}

/*
 * first_max(state, batch_size, entries, length, columns, num_columns, candidates, num_rows, slots, positions, drew,
 *           parallel, threads)
 *
 * Spends batch_size * entries * length words (one [B, Entries, M] draw) and, for every entry (b, e),
 * returns the first c whose word at column columns[b, c] has the largest half among those where
 * candidates[b, slots[b, e], c] holds, and whether that half is above 0 (position 0 where none is).
 *   columns: int64 [B, Columns], ascending, -1 where padded; candidates: bool [B, Rows, Columns];
 *   slots: int64 [B, Entries]; positions: int64 [B, Entries] out; drew: bool [B, Entries] out.
 *   parallel: address of GOMP_parallel, or 0 to draw on the calling thread alone; threads: how many to use.
 * The state is written back only if every column and slot was in range.
 */
static PyObject *py_first_max(PyObject *self, PyObject *args) {
    (void)self;
    unsigned long long state_address, columns_address, candidates_address, slots_address, positions_address,
        drew_address, parallel;
    long long batch_size, entries, length, num_columns, num_rows, threads;
    if (!PyArg_ParseTuple(args, "KLLLKLKLKKKKL", &state_address, &batch_size, &entries, &length, &columns_address,
                          &num_columns, &candidates_address, &num_rows, &slots_address, &positions_address,
                          &drew_address, &parallel, &threads)) {
        return NULL;
    }
    if (batch_size < 0 || entries < 0 || length < 0 || num_columns < 0 || num_rows < 0 || threads < 1) {
        PyErr_SetString(PyExc_ValueError, "_mt19937.first_max: negative size");
        return NULL;
    }
    FirstMax *job = (FirstMax *)calloc(1, sizeof(FirstMax));
    if (job == NULL) {
        return PyErr_NoMemory();
    }
    if (load_stream((const unsigned char *)(uintptr_t)state_address, &job->start) != 0) {
        free(job);
        PyErr_SetString(PyExc_ValueError, "_mt19937.first_max: not a CPU generator state this module knows");
        return NULL;
    }
    job->end = job->start; /* no batch row: nothing is spent */
    job->batch_size = batch_size;
    job->entries = entries;
    job->length = length;
    job->num_columns = num_columns;
    job->num_rows = num_rows;
    job->columns = (const int64_t *)(uintptr_t)columns_address;
    job->candidates = (const unsigned char *)(uintptr_t)candidates_address;
    job->slots = (const int64_t *)(uintptr_t)slots_address;
    job->positions = (int64_t *)(uintptr_t)positions_address;
    job->drew = (unsigned char *)(uintptr_t)drew_address;
    job->shares = team_size(parallel, threads, batch_size);
    Py_BEGIN_ALLOW_THREADS run_team(first_max_rows, job, parallel, job->shares);
    if (!job->failed) {
        store_stream(&job->end, (unsigned char *)(uintptr_t)state_address);
    }
    Py_END_ALLOW_THREADS int failed = job->failed;
    free(job);
    if (failed == 2) {
        return PyErr_NoMemory();
    }
    if (failed) {
        PyErr_SetString(PyExc_ValueError, "_mt19937.first_max: a column or slot out of range");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"skip", py_skip, METH_VARARGS, "skip(state_address, count): spend count words of a torch CPU generator state."},
    {"half_keys", py_half_keys, METH_VARARGS,
     "half_keys(words_address, keys_address, count): the float16 order key of each int32 word."},
    {"first_max", py_first_max, METH_VARARGS,
     "first_max(state, batch, entries, length, columns, num_columns, candidates, num_rows, slots, positions, drew, "
     "parallel, threads)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_mt19937", "MT19937 draws on torch CPU generator states.", -1, methods, NULL, NULL, NULL,
    NULL};

PyMODINIT_FUNC PyInit__mt19937(void) { return PyModule_Create(&module); }

/*
 * What every C extension of memoria shares: portable spellings of the compiler features they use, and running their
 * work on torch's own CPU threads (see memoria/native.py, which finds the runtime).
 *
 * `parallel` is the address of GOMP_parallel in the OpenMP runtime torch loads, or 0. A call runs job(argument) on
 * every thread of a team, the calling thread included; each job takes its batch rows (or shares of them) from a
 * counter in `argument`, so any team size, one included, does the whole work.
 */
#ifndef MEMORIA_THREADS_H
#define MEMORIA_THREADS_H

#include <stdint.h>

/* C99's restrict; MSVC's C compiler knows it only in its C11 mode, __restrict always. */
#if defined(_MSC_VER)
#define MEMORIA_RESTRICT __restrict
#elif defined(__STDC_VERSION__) && __STDC_VERSION__ >= 199901L
#define MEMORIA_RESTRICT restrict
#else
#define MEMORIA_RESTRICT
#endif

/* A hint to fetch the cache line at `address` for reading / for writing; nothing where the compiler has no such hint
 * (the loops stay correct, only the memory reads are not started early). */
#if defined(__GNUC__) || defined(__clang__)
#define MEMORIA_PREFETCH(address) __builtin_prefetch((address), 0, 3)
#define MEMORIA_PREFETCH_WRITE(address) __builtin_prefetch((address), 1, 3)
#else
#define MEMORIA_PREFETCH(address) ((void)(address))
#define MEMORIA_PREFETCH_WRITE(address) ((void)(address))
#endif

/* A hot loop built twice, for AVX2 and for the baseline, the one to run picked when the module loads. That needs
 * GCC's target_clones and an ifunc resolver (glibc); elsewhere the loop is built once, for the baseline. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && defined(__GLIBC__)
#define MEMORIA_AVX2_CLONE __attribute__((target_clones("avx2", "default")))
#else
#define MEMORIA_AVX2_CLONE
#endif

/* The counter the threads of a team take their rows from, and the flag one raises when it fails: atomic, relaxed
 * (nothing else is ordered by them; the team's end is the barrier). Without atomics a job runs on one thread. */
#if defined(__GNUC__) || defined(__clang__)
#define MEMORIA_ATOMICS 1
#define MEMORIA_FETCH_ADD(pointer, value) __atomic_fetch_add((pointer), (value), __ATOMIC_RELAXED)
#define MEMORIA_SET_FLAG(pointer, value) __atomic_store_n((pointer), (value), __ATOMIC_RELAXED)
#elif defined(_MSC_VER) && (defined(_M_X64) || defined(_M_ARM64))
#include <intrin.h>
#define MEMORIA_ATOMICS 1
#define MEMORIA_FETCH_ADD(pointer, value) _InterlockedExchangeAdd64((volatile long long *)(pointer), (value))
#define MEMORIA_SET_FLAG(pointer, value) _InterlockedExchange((volatile long *)(pointer), (long)(value))
#else
#define MEMORIA_ATOMICS 0
static inline int64_t memoria_fetch_add(int64_t *pointer, int64_t value) {
    int64_t old = *pointer;
    *pointer += value;
    return old;
}
#define MEMORIA_FETCH_ADD(pointer, value) memoria_fetch_add((pointer), (value))
#define MEMORIA_SET_FLAG(pointer, value) ((void)(*(pointer) = (value)))
#endif

typedef void (*ParallelFunction)(void (*)(void *), void *, unsigned, unsigned);

/* Threads for a job over `rows` batch rows: 1 where there is no runtime, nothing to split or no atomics. */
static inline long long team_size(unsigned long long parallel, long long threads, long long rows) {
    if (!MEMORIA_ATOMICS || parallel == 0 || threads <= 1 || rows <= 1) {
        return 1;
    }
    return threads < rows ? threads : rows;
}

/* Runs job(argument) on a team of `team` threads (from team_size), or on the calling thread alone. */
static inline void run_team(void (*job)(void *), void *argument, unsigned long long parallel, long long team) {
    if (team > 1) {
        ((ParallelFunction)(uintptr_t)parallel)(job, argument, (unsigned)team, 0);
    } else {
        job(argument);
    }
}

#endif

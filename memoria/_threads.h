/*
 * Running the C extensions' work on torch's own CPU threads (see memoria/native.py, which finds the runtime).
 *
 * `parallel` is the address of GOMP_parallel in the OpenMP runtime torch loads, or 0. A call runs job(argument) on
 * every thread of a team, the calling thread included; each job takes its batch rows (or shares of them) from a
 * counter in `argument`, so any team size, one included, does the whole work.
 */
#ifndef MEMORIA_THREADS_H
#define MEMORIA_THREADS_H

#include <stdint.h>

typedef void (*ParallelFunction)(void (*)(void *), void *, unsigned, unsigned);

/* Threads for a job over `rows` batch rows: 1 where there is no runtime or nothing to split. */
static inline long long team_size(unsigned long long parallel, long long threads, long long rows) {
    if (parallel == 0 || threads <= 1 || rows <= 1) {
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

/* MPI_THREAD_MULTIPLE under the tracer (agent/tests/tracer.rs): THREADS threads per rank, each
 * with its own duplicate of MPI_COMM_WORLD, do CALLS Allreduces of one int inside one user
 * region "worker" of their own, all at once. */
#include <mpi.h>
#include <pthread.h>
#include <stdio.h>
#define GRAZE_TRACE_LOOKUP
#include "graze_trace.h"

#define THREADS 4
#define CALLS 500

static MPI_Comm comms[THREADS];
static graze_trace_fns t;
static int bad;

static void *worker(void *arg) {
    MPI_Comm c = comms[(long)arg];
    if (t.begin) t.begin("worker");
    for (int i = 0; i < CALLS; i++) {
        int one = 1, sum = 0, size;
        MPI_Allreduce(&one, &sum, 1, MPI_INT, MPI_SUM, c);
        MPI_Comm_size(c, &size);
        if (sum != size) bad = 1;
    }
    if (t.end) t.end("worker");
    return NULL;
}

int main(int argc, char **argv) {
    int provided;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
    if (provided != MPI_THREAD_MULTIPLE) {
        fprintf(stderr, "MPI_THREAD_MULTIPLE not provided (%d)\n", provided);
        MPI_Abort(MPI_COMM_WORLD, 3);
    }
    t = graze_trace_lookup();
    for (int i = 0; i < THREADS; i++) MPI_Comm_dup(MPI_COMM_WORLD, &comms[i]);
    pthread_t th[THREADS];
    for (long i = 0; i < THREADS; i++) pthread_create(&th[i], NULL, worker, (void *)i);
    for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
    MPI_Finalize();
    if (bad) return 1;
    printf("threads done\n");
    return 0;
}

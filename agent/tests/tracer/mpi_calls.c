/* The tracer tests' MPI program (agent/tests/tracer.rs): a known sequence of calls whose
 * records the test checks. Ranks pass a ring of Send/Recv, Isend/Irecv/Wait, then ROUNDS
 * Allreduces of one double, a Barrier and a Bcast of 10 ints from rank 0, and one user region
 * "phase" around the rounds when the tracer is loaded. With an argument N it only does N
 * Allreduces of one double (the size-limit test). */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#define GRAZE_TRACE_LOOKUP
#include "graze_trace.h"

#define ROUNDS 5

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    graze_trace_fns t = graze_trace_lookup();
    if (argc > 1) {
        long n = atol(argv[1]);
        double x = 1.0, y;
        for (long i = 0; i < n; i++) MPI_Allreduce(&x, &y, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
        MPI_Finalize();
        return 0;
    }
    int next = (rank + 1) % size, prev = (rank + size - 1) % size;
    double out[4] = {rank, rank, rank, rank}, in[4];
    /* Even ranks send first: a ring without deadlock for any size >= 2. */
    if (rank % 2 == 0) {
        MPI_Send(out, 4, MPI_DOUBLE, next, 7, MPI_COMM_WORLD);
        MPI_Recv(in, 4, MPI_DOUBLE, MPI_ANY_SOURCE, 7, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    } else {
        MPI_Recv(in, 4, MPI_DOUBLE, MPI_ANY_SOURCE, 7, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        MPI_Send(out, 4, MPI_DOUBLE, next, 7, MPI_COMM_WORLD);
    }
    int a[3] = {1, 2, 3}, b[3];
    MPI_Request rq[2];
    MPI_Irecv(b, 3, MPI_INT, prev, 9, MPI_COMM_WORLD, &rq[0]);
    MPI_Isend(a, 3, MPI_INT, next, 9, MPI_COMM_WORLD, &rq[1]);
    MPI_Wait(&rq[0], MPI_STATUS_IGNORE);
    MPI_Wait(&rq[1], MPI_STATUS_IGNORE);
    if (t.begin) t.begin("phase");
    for (int r = 0; r < ROUNDS; r++) {
        double x = rank, y = 0;
        MPI_Allreduce(&x, &y, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
        if (y != size * (size - 1) / 2.0) {
            fprintf(stderr, "rank %d: wrong Allreduce result %f\n", rank, y);
            return 1;
        }
    }
    if (t.end) t.end("phase");
    MPI_Barrier(MPI_COMM_WORLD);
    int ten[10] = {0};
    MPI_Bcast(ten, 10, MPI_INT, 0, MPI_COMM_WORLD);
    MPI_Finalize();
    if (rank == 0) printf("mpi_calls done on %d ranks (tracer %s)\n", size, t.begin ? "loaded" : "absent");
    return 0;
}

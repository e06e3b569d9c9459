/* Loaded by local_main.c with dlopen(RTLD_LOCAL), as mpi4py may load libmpi: the tracer's
 * dlsym(RTLD_NEXT) cannot see this libmpi, so it must find it through dl_iterate_phdr. */
#include <mpi.h>

double graze_local_run(int rounds) {
    int argc = 0;
    char **argv = 0;
    MPI_Init(&argc, &argv);
    double x = 1.0, y = 0.0;
    for (int i = 0; i < rounds; i++) MPI_Allreduce(&x, &y, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    MPI_Finalize();
    return y;
}

/* Not linked against MPI: dlopens argv[1] (local_lib.c, linked against libmpi) RTLD_LOCAL and
 * runs its MPI rounds. */
#include <dlfcn.h>
#include <stdio.h>

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 1;
    }
    double (*run)(int) = (double (*)(int))dlsym(h, "graze_local_run");
    if (!run) return 1;
    printf("sum %.0f\n", run(3));
    return 0;
}

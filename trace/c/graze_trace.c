/*
 * graze's PMPI tracer (issue 16): preloaded into every rank of a `graze submit --trace` job,
 * it records each MPI call's begin and end on the node's CLOCK_MONOTONIC and writes one file
 * per rank in the format of docs/TRACE_FORMAT.md (the Rust reader is trace/src/format.rs).
 *
 * Built once per MPI flavour against that flavour's mpi.h (agent/build.rs), never linked
 * against libmpi: the library is preloaded into every process of the job (mpiexec,
 * hydra_pmi_proxy, orted, sh, python...), so it must load and do nothing in processes that are
 * not MPI programs. Hence:
 *   - no reference to any MPI symbol at link time (built with -Wl,-z,defs): the PMPI_*
 *     functions are looked up at first use with dlsym(RTLD_NEXT), falling back to the libmpi
 *     found loaded through dl_iterate_phdr (mpi4py may dlopen libmpi RTLD_LOCAL), and Open
 *     MPI's predefined handles (MPI_COMM_WORLD is the address of a data symbol) the same way;
 *   - with GRAZE_TRACE_DIR unset every wrapper only forwards, and nothing is written;
 *   - a process that made no MPI call and marked no region writes nothing.
 *
 * Environment: GRAZE_TRACE_DIR (where rank-R.gzt goes), GRAZE_TRACE_MAX_BYTES (this rank's
 * file size limit, default 64 MiB; past it events are dropped and counted in the header).
 *
 * Each event is appended to an in-memory buffer under one mutex (MPI_THREAD_MULTIPLE safe);
 * nothing is written before MPI_Finalize, or process exit for a rank that never finalized.
 * A full buffer drops, it never blocks. The file is written to a temporary name and renamed.
 *
 * Bytes per call (the record's bytes field): the payload this rank sends, or receives for
 * receives; for collectives this rank's block (count x type size; for Alltoall(v) all its
 * blocks; for Scatter(v) and Bcast on a non-root what it receives). MPI_IN_PLACE counts the
 * block as if it had been sent.
 */
#define _GNU_SOURCE
#include <mpi.h>

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "graze_trace.h"

#if defined(OPEN_MPI)
#define GT_FLAVOUR "Open MPI"
#define GT_VERSION_MARK "Open MPI"
#elif defined(MPICH_VERSION)
#define GT_FLAVOUR "MPICH"
#define GT_VERSION_MARK "MPICH"
#else
#error "graze_trace.c: unknown MPI flavour (expected MPICH's or Open MPI's mpi.h)"
#endif

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "graze_trace.c writes little-endian records by copying structs: port it first"
#endif

#define GT_EXPORT __attribute__((visibility("default")))

/* ---- the file format (docs/TRACE_FORMAT.md) ---------------------------------------------- */

enum {
    OP_INIT = 1, OP_FINALIZE = 2, OP_SEND = 3, OP_RECV = 4, OP_ISEND = 5, OP_IRECV = 6,
    OP_WAIT = 7, OP_BCAST = 8, OP_REDUCE = 9, OP_ALLREDUCE = 10, OP_BARRIER = 11,
    OP_GATHER = 12, OP_SCATTER = 13, OP_ALLTOALL = 14, OP_ALLGATHER = 15, OP_SENDRECV = 16,
    OP_WAITALL = 17, OP_SSEND = 18, OP_IALLREDUCE = 19, OP_TEST = 20, OP_WAITANY = 21,
    OP_GATHERV = 22, OP_SCATTERV = 23, OP_ALLGATHERV = 24, OP_ALLTOALLV = 25,
};

enum { KIND_CALL = 1, KIND_REGION = 2, KIND_NAME = 3 };

#define HEADER_LEN 64
#define MAX_NAME_LEN 255
#define MAX_NAMES 4096
#define MAX_DEPTH 64
#define DEFAULT_MAX_BYTES (64ull << 20)

struct gt_record {
    uint8_t kind;
    uint8_t op;
    uint16_t name;
    int32_t peer;
    int32_t tag;
    int32_t comm_size;
    uint64_t begin;
    uint64_t end;
    int64_t bytes;
};
_Static_assert(sizeof(struct gt_record) == 40, "a record is 40 bytes");

/* ---- state ------------------------------------------------------------------------------- */

/* 1 while tracing (GRAZE_TRACE_DIR set, right flavour); read without the lock (and by the
   x86-64 entry stubs, hence not static). */
__attribute__((visibility("hidden"), used)) int g_on;
static pid_t g_pid;
static uint64_t g_start_ns;
static uint64_t g_max_bytes = DEFAULT_MAX_BYTES;
static char g_dir[4096];

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
/* Everything below: under g_lock. */
static unsigned char *g_buf;
static size_t g_len, g_cap;
static uint64_t g_dropped;
static int g_rank = -1, g_size;
static int g_active; /* an MPI call or region was seen: this process writes a file */
static size_t g_written = (size_t)-1; /* g_len when last written */
static uint64_t g_written_dropped;
static uint64_t g_name_hash[MAX_NAMES];
static int g_names;

static inline int gt_on(void) { return __atomic_load_n(&g_on, __ATOMIC_RELAXED); }

static inline uint64_t gt_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void gt_warn(const char *fmt, const char *a, const char *b) {
    fprintf(stderr, "graze-trace (pid %d): ", (int)getpid());
    fprintf(stderr, fmt, a, b);
    fputc('\n', stderr);
}

__attribute__((constructor)) static void gt_load(void) {
    const char *dir = getenv("GRAZE_TRACE_DIR");
    g_pid = getpid();
    g_start_ns = gt_now();
    if (!dir || !*dir) return;
    if (strlen(dir) >= sizeof g_dir - 64) {
        gt_warn("GRAZE_TRACE_DIR '%s' is too long; tracing is off%s", dir, "");
        return;
    }
    strcpy(g_dir, dir);
    const char *max = getenv("GRAZE_TRACE_MAX_BYTES");
    if (max && *max) {
        char *end = NULL;
        errno = 0;
        unsigned long long v = strtoull(max, &end, 10);
        if (errno || *end || max[0] == '-' || v < HEADER_LEN)
            gt_warn("ignoring GRAZE_TRACE_MAX_BYTES='%s': not a byte count of at least 64%s",
                    max, "; using 64 MiB");
        else
            g_max_bytes = v;
    }
    __atomic_store_n(&g_on, 1, __ATOMIC_RELAXED);
}

/* ---- finding the real MPI ---------------------------------------------------------------- */

static void *g_mpi_handle;

static int gt_find_mpi_cb(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    (void)data;
    const char *name = info->dlpi_name;
    if (!name || !*name) return 0;
    const char *base = strrchr(name, '/');
    base = base ? base + 1 : name;
    if (strncmp(base, "libmpi", 6) != 0) return 0; /* libmpi.so.40, libmpich.so.12 */
    void *h = dlopen(name, RTLD_LAZY | RTLD_NOLOAD);
    if (!h) return 0;
    if (dlsym(h, "PMPI_Init")) {
        g_mpi_handle = h;
        return 1;
    }
    dlclose(h);
    return 0;
}

/* The address of `name` in the loaded MPI library; aborts when there is none (only called
   from an MPI function the program called, so its MPI library is loaded). */
static void *gt_resolve_in(void *first, const char *name) {
    void *p = dlsym(first, name);
    if (p) return p;
    if (!__atomic_load_n(&g_mpi_handle, __ATOMIC_ACQUIRE)) dl_iterate_phdr(gt_find_mpi_cb, NULL);
    void *h = __atomic_load_n(&g_mpi_handle, __ATOMIC_ACQUIRE);
    if (h) p = dlsym(h, name);
    if (!p) {
        gt_warn("cannot find %s in the loaded MPI library (is this an %s program?)", name,
                GT_FLAVOUR);
        abort();
    }
    return p;
}

static void *gt_resolve(const char *name) { return gt_resolve_in(RTLD_NEXT, name); }

/* r_NAME: the real PMPI_NAME, looked up at first use (every one at MPI_Init). */
#define GT_DECL(n) __attribute__((visibility("hidden"), used)) __typeof__(&PMPI_##n) r_##n
#define GT_REAL(n)                                                                         \
    (__extension__({                                                                       \
        __typeof__(&PMPI_##n) f_ = __atomic_load_n(&r_##n, __ATOMIC_RELAXED);             \
        if (!f_) {                                                                         \
            f_ = (__typeof__(&PMPI_##n))gt_resolve("PMPI_" #n);                            \
            __atomic_store_n(&r_##n, f_, __ATOMIC_RELAXED);                                \
        }                                                                                  \
        f_;                                                                                \
    }))

GT_DECL(Comm_size);
GT_DECL(Comm_rank);
GT_DECL(Type_size);
GT_DECL(Get_library_version);

#ifdef OPEN_MPI
static MPI_Comm g_world;
static MPI_Comm gt_world(void) {
    /* RTLD_DEFAULT first: the program may hold a copy-relocated ompi_mpi_comm_world, which
       is then the one libmpi uses, not the one RTLD_NEXT would find in libmpi. */
    if (!g_world) g_world = (MPI_Comm)gt_resolve_in(RTLD_DEFAULT, "ompi_mpi_comm_world");
    return g_world;
}
#else
static MPI_Comm gt_world(void) { return MPI_COMM_WORLD; }
#endif

/* ---- the buffer -------------------------------------------------------------------------- */

/* Append n bytes (g_lock held); 0 when past the size limit or out of memory. */
static int gt_append(const void *p, size_t n) {
    if ((uint64_t)HEADER_LEN + g_len + n > g_max_bytes) return 0;
    if (g_len + n > g_cap) {
        size_t cap = g_cap ? g_cap * 2 : 64 * 1024;
        while (cap < g_len + n) cap *= 2;
        if (cap > g_max_bytes) cap = (size_t)g_max_bytes;
        unsigned char *b = realloc(g_buf, cap);
        if (!b) return 0;
        g_buf = b;
        g_cap = cap;
    }
    memcpy(g_buf + g_len, p, n);
    g_len += n;
    return 1;
}

static void gt_call(int op, int peer, int tag, int comm_size, uint64_t begin, uint64_t end,
                    int64_t bytes) {
    struct gt_record r = {KIND_CALL, (uint8_t)op, 0, peer, tag, comm_size, begin, end, bytes};
    pthread_mutex_lock(&g_lock);
    g_active = 1;
    if (!gt_append(&r, sizeof r)) g_dropped++;
    pthread_mutex_unlock(&g_lock);
}

/* Peer as the format has it: -1 none (MPI_PROC_NULL, MPI_ROOT...), -2 MPI_ANY_SOURCE. */
static inline int gt_peer(int p) {
    if (p == MPI_ANY_SOURCE) return -2;
    return p < 0 ? -1 : p;
}

static inline int gt_tag(int t) { return t < 0 ? -1 : t; }

static int g_world_size; /* set once after MPI_Init; the world's size never changes */

static int gt_comm_size(MPI_Comm c) {
    int n = __atomic_load_n(&g_world_size, __ATOMIC_RELAXED);
    if (n > 0 && c == gt_world()) return n;
    n = 0;
    if (GT_REAL(Comm_size)(c, &n) != MPI_SUCCESS) return 0;
    return n;
}

static int gt_comm_rank(MPI_Comm c) {
    int n = -1;
    if (GT_REAL(Comm_rank)(c, &n) != MPI_SUCCESS) return -1;
    return n;
}

static int64_t gt_bytes(int64_t count, MPI_Datatype t) {
    if (count <= 0) return 0;
    int s = 0;
#ifndef OPEN_MPI
    /* MPICH's predefined types carry their size in the handle (kind bits 01, size in bits
       8-15; MPICH's ABI since 3.x), which saves a checked PMPI_Type_size per call. */
    if (((unsigned)t & 0xc0000000u) == 0x40000000u) return count * (((unsigned)t >> 8) & 0xff);
#endif
    if (GT_REAL(Type_size)(t, &s) != MPI_SUCCESS) return -1;
    return count * s;
}

/* ---- writing the file -------------------------------------------------------------------- */

static int gt_write_all(int fd, const void *p, size_t n) {
    const unsigned char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Write (or rewrite) this process's file; g_lock held. */
static void gt_flush_locked(void) {
    if (!gt_on() && g_len == 0) return;
    if (!g_active || getpid() != g_pid) return;
    if (g_written == g_len && g_written_dropped == g_dropped) return;
    char path[sizeof g_dir + 64], tmp[sizeof g_dir + 96];
    if (g_rank >= 0)
        snprintf(path, sizeof path, "%s/rank-%d.gzt", g_dir, g_rank);
    else
        snprintf(path, sizeof path, "%s/pid-%d.gzt", g_dir, (int)g_pid);
    snprintf(tmp, sizeof tmp, "%s.tmp-%d", path, (int)g_pid);

    unsigned char h[HEADER_LEN];
    memset(h, 0, sizeof h);
    uint32_t version = 1, pid = (uint32_t)g_pid;
    int32_t rank = g_rank, size = g_size;
    memcpy(h, "GRZTRC01", 8);
    memcpy(h + 8, &version, 4);
    memcpy(h + 12, &rank, 4);
    memcpy(h + 16, &size, 4);
    memcpy(h + 20, &pid, 4);
    memcpy(h + 24, &g_dropped, 8);
    memcpy(h + 32, &g_start_ns, 8);
    char host[256] = {0};
    gethostname(host, sizeof host - 1);
    memcpy(h + 40, host, strnlen(host, 23));

    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        gt_warn("cannot write the trace file %s: %s", tmp, strerror(errno));
        return;
    }
    int bad = gt_write_all(fd, h, sizeof h) || gt_write_all(fd, g_buf, g_len);
    if (close(fd) != 0) bad = 1;
    if (bad || rename(tmp, path) != 0) {
        gt_warn("cannot write the trace file %s: %s", path, strerror(errno));
        unlink(tmp);
        return;
    }
    g_written = g_len;
    g_written_dropped = g_dropped;
}

static void gt_flush(void) {
    pthread_mutex_lock(&g_lock);
    gt_flush_locked();
    pthread_mutex_unlock(&g_lock);
}

/* A rank that never finalized (or marked regions after): written at exit. */
__attribute__((destructor)) static void gt_unload(void) {
    if (gt_on()) gt_flush();
}

/* ---- the flavour check ------------------------------------------------------------------- */

/* After MPI_Init: tracing goes on only if this rank's MPI is the flavour we were built for;
   otherwise a one-line note-PID.txt in GRAZE_TRACE_DIR says why, and the wrappers forward. */
static void gt_after_init(uint64_t t0, uint64_t t1, int rc) {
    static char v[8192];
    int n = 0;
    v[0] = 0;
    if (GT_REAL(Get_library_version)(v, &n) != MPI_SUCCESS) v[0] = 0;
    v[sizeof v - 1] = 0;
    if (!strstr(v, GT_VERSION_MARK)) {
        __atomic_store_n(&g_on, 0, __ATOMIC_RELAXED);
        char first[200];
        size_t k = strcspn(v, "\r\n");
        if (k >= sizeof first) k = sizeof first - 1;
        memcpy(first, v, k);
        first[k] = 0;
        for (char *c = first; *c; c++)
            if (*c == '\t') *c = ' ';
        char path[sizeof g_dir + 64];
        snprintf(path, sizeof path, "%s/note-%d.txt", g_dir, (int)getpid());
        FILE *f = fopen(path, "we");
        if (f) {
            fprintf(f,
                    "graze trace: pid %d runs %s but the tracer preloaded was built for %s; "
                    "this process is not traced\n",
                    (int)getpid(), first[0] ? first : "an unknown MPI library", GT_FLAVOUR);
            fclose(f);
        }
        return;
    }
    int rank = -1, size = 0;
    if (rc == MPI_SUCCESS) {
        rank = gt_comm_rank(gt_world());
        size = gt_comm_size(gt_world());
    }
    __atomic_store_n(&g_world_size, size, __ATOMIC_RELAXED);
    pthread_mutex_lock(&g_lock);
    g_rank = rank;
    g_size = size;
    pthread_mutex_unlock(&g_lock);
    gt_call(OP_INIT, -1, -1, size, t0, t1, -1);
}

/* ---- user regions ------------------------------------------------------------------------ */

struct gt_open {
    uint64_t hash;
    uint64_t begin;
    uint16_t id;
};
static __thread struct gt_open t_open[MAX_DEPTH];
static __thread int t_depth, t_overflow;

static size_t gt_name_len(const char *name) {
    size_t n = strnlen(name, MAX_NAME_LEN + 1);
    if (n <= MAX_NAME_LEN) return n;
    n = MAX_NAME_LEN;
    while (n > 0 && ((unsigned char)name[n] & 0xC0) == 0x80) n--; /* a whole UTF-8 char */
    return n;
}

static uint64_t gt_hash(const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
    return h;
}

/* The name's id, defining it (a kind-3 record) on first use; 0 when it cannot be written. */
static uint16_t gt_intern(const char *name, size_t n, uint64_t hash) {
    uint16_t id = 0;
    pthread_mutex_lock(&g_lock);
    g_active = 1;
    for (int i = 0; i < g_names; i++)
        if (g_name_hash[i] == hash) {
            id = (uint16_t)(i + 1);
            break;
        }
    if (!id && g_names < MAX_NAMES) {
        unsigned char d[sizeof(struct gt_record) + MAX_NAME_LEN + 8];
        size_t padded = (n + 7) & ~(size_t)7;
        struct gt_record r = {KIND_NAME, 0, (uint16_t)(g_names + 1), -1, -1, 0, 0, 0,
                              (int64_t)n};
        memset(d, 0, sizeof d);
        memcpy(d, &r, sizeof r);
        memcpy(d + sizeof r, name, n);
        if (gt_append(d, sizeof r + padded)) {
            g_name_hash[g_names++] = hash;
            id = (uint16_t)g_names;
        }
    }
    pthread_mutex_unlock(&g_lock);
    return id;
}

GT_EXPORT void graze_trace_region_begin(const char *name) {
    if (!gt_on()) return;
    uint64_t t = gt_now();
    if (!name || !*name) name = "region";
    if (t_depth == MAX_DEPTH) {
        t_overflow++;
        pthread_mutex_lock(&g_lock);
        g_dropped++;
        pthread_mutex_unlock(&g_lock);
        return;
    }
    size_t n = gt_name_len(name);
    uint64_t h = gt_hash(name, n);
    t_open[t_depth].hash = h;
    t_open[t_depth].id = gt_intern(name, n, h);
    t_open[t_depth].begin = t;
    t_depth++;
}

GT_EXPORT void graze_trace_region_end(const char *name) {
    if (!gt_on()) return;
    uint64_t t = gt_now();
    if (!name || !*name) name = "region";
    if (t_overflow > 0) {
        t_overflow--;
        return;
    }
    uint64_t h = gt_hash(name, gt_name_len(name));
    int i = t_depth - 1;
    while (i >= 0 && t_open[i].hash != h) i--;
    if (i < 0) return; /* an end without its begin: nothing to record */
    struct gt_open o = t_open[i];
    memmove(&t_open[i], &t_open[i + 1], (size_t)(t_depth - 1 - i) * sizeof o);
    t_depth--;
    struct gt_record r = {KIND_REGION, 0, o.id, -1, -1, 0, o.begin, t, -1};
    pthread_mutex_lock(&g_lock);
    if (!o.id || !gt_append(&r, sizeof r)) g_dropped++;
    pthread_mutex_unlock(&g_lock);
}

/* ---- the MPI wrappers -------------------------------------------------------------------

   A wrapper must forward a call untouched when tracing is off, and that includes a process
   whose MPI is the other flavour than this build's mpi.h: a handle is an int in MPICH and a
   pointer in Open MPI, so a C wrapper compiled for MPICH would cut an Open MPI handle to 32
   bits on its way through. On x86-64 each exported MPI_NAME is therefore a 7-instruction stub:
   tracing off and PMPI_NAME known (all are looked up in MPI_Init) -> jump straight to it with
   the caller's registers and stack as they were; otherwise -> the C wrapper gt_traced_NAME,
   declared with MPI_NAME's type from this flavour's mpi.h (so the compiler checks it). */
#if defined(__x86_64__)
#define GT_ENTRY(n)                                                                        \
    __asm__(".text\n.globl MPI_" #n "\n.type MPI_" #n ", @function\n"                     \
            "MPI_" #n ":\n"                                                                \
            "\tendbr64\n"                                                                  \
            "\tcmpl $0, g_on(%rip)\n"                                                      \
            "\tjne gt_traced_" #n "\n"                                                     \
            "\tmovq r_" #n "(%rip), %rax\n"                                                \
            "\ttestq %rax, %rax\n"                                                         \
            "\tjz gt_traced_" #n "\n"                                                      \
            "\tjmp *%rax\n"                                                                \
            ".size MPI_" #n ", .-MPI_" #n "\n");                                          \
    _Static_assert(1, "")
#define GT_FN(n)                                                                           \
    __attribute__((visibility("hidden"), used)) __typeof__(MPI_##n) gt_traced_##n;         \
    __attribute__((visibility("hidden"), used)) int gt_traced_##n
#else
/* Elsewhere the C wrapper is the exported function (the other-flavour case is unsafe). */
#define GT_ENTRY(n) _Static_assert(1, "")
#define GT_FN(n) GT_EXPORT int MPI_##n
#endif

/* ---- the MPI wrappers -------------------------------------------------------------------- */

/* Forward untouched when tracing is off (the arguments go through as they came). */
#define GT_OFF(n, ...)                                                                     \
    if (!gt_on()) return GT_REAL(n)(__VA_ARGS__)

static void gt_resolve_all(void);

GT_DECL(Init);
GT_EXPORT int MPI_Init(int *argc, char ***argv) {
    gt_resolve_all();
    GT_OFF(Init, argc, argv);
    uint64_t t0 = gt_now();
    int rc = GT_REAL(Init)(argc, argv);
    gt_after_init(t0, gt_now(), rc);
    return rc;
}

GT_DECL(Init_thread);
GT_EXPORT int MPI_Init_thread(int *argc, char ***argv, int required, int *provided) {
    gt_resolve_all();
    GT_OFF(Init_thread, argc, argv, required, provided);
    uint64_t t0 = gt_now();
    int rc = GT_REAL(Init_thread)(argc, argv, required, provided);
    gt_after_init(t0, gt_now(), rc);
    return rc;
}

GT_DECL(Finalize);
GT_ENTRY(Finalize);
GT_FN(Finalize)(void) {
    if (!gt_on()) return GT_REAL(Finalize)();
    int size = gt_comm_size(gt_world());
    uint64_t t0 = gt_now();
    int rc = GT_REAL(Finalize)();
    gt_call(OP_FINALIZE, -1, -1, size, t0, gt_now(), -1);
    gt_flush();
    return rc;
}

GT_DECL(Send);
GT_ENTRY(Send);
GT_FN(Send)(const void *buf, int count, MPI_Datatype dt, int dest, int tag,
                       MPI_Comm comm) {
    GT_OFF(Send, buf, count, dt, dest, tag, comm);
    uint64_t t0 = gt_now();
    int rc = GT_REAL(Send)(buf, count, dt, dest, tag, comm);
    uint64_t t1 = gt_now();
    gt_call(OP_SEND, gt_peer(dest), gt_tag(tag), gt_comm_size(comm), t0, t1,
            gt_bytes(count, dt));
    return rc;
}

GT_DECL(Ssend);
GT_ENTRY(Ssend);
GT_FN(Ssend)(const void *buf, int count, MPI_Datatype dt, int dest, int tag,
                        MPI_Comm comm) {
    GT_OFF(Ssend, buf, count, dt, dest, tag, comm);
    uint64_t t0 = gt_now();
    int rc = GT_REAL(Ssend)(buf, count, dt, dest, tag, comm);
    uint64_t t1 = gt_now();
    gt_call(OP_SSEND, gt_peer(dest), gt_tag(tag), gt_comm_size(comm), t0, t1,
            gt_bytes(count, dt));
    return rc;
}

GT_DECL(Recv);
GT_ENTRY(Recv);
GT_FN(Recv)(void *buf, int count, MPI_Datatype dt, int source, int tag,
                       MPI_Comm comm, MPI_Status *status) {
    GT_OFF(Recv, buf, count, dt, source, tag, comm, status);
    MPI_Status mine;
    MPI_Status *st = status == MPI_STATUS_IGNORE ? &mine : status;
    uint64_t t0 = gt_now();
    int rc = GT_REAL(Recv)(buf, count, dt, source, tag, comm, st);
    uint64_t t1 = gt_now();
    int peer = gt_peer(source), tg = gt_tag(tag);
    if (rc == MPI_SUCCESS && source == MPI_ANY_SOURCE) peer = gt_peer(st->MPI_SOURCE);
    if (rc == MPI_SUCCESS && tag == MPI_ANY_TAG) tg = gt_tag(st->MPI_TAG);
    gt_call(OP_RECV, peer, tg, gt_comm_size(comm), t0, t1, gt_bytes(count, dt));
    return rc;
}

GT_DECL(Isend);
GT_ENTRY(Isend);
GT_FN(Isend)(const void *buf, int count, MPI_Datatype dt, int dest, int tag,
                        MPI_Comm comm, MPI_Request *req) {
    GT_OFF(Isend, buf, count, dt, dest, tag, comm, req);
    uint64_t t0 = gt_now();
    int rc = GT_REAL(Isend)(buf, count, dt, dest, tag, comm, req);
    uint64_t t1 = gt_now();
    gt_call(OP_ISEND, gt_peer(dest), gt_tag(tag), gt_comm_size(comm), t0, t1,
            gt_bytes(count, dt));
    return rc;
}

GT_DECL(Irecv);
GT_ENTRY(Irecv);
GT_FN(Irecv)(void *buf, int count, MPI_Datatype dt, int source, int tag,
                        MPI_Comm comm, MPI_Request *req) {
    GT_OFF(Irecv, buf, count, dt, source, tag, comm, req);
    uint64_t t0 = gt_now();
    int rc = GT_REAL(Irecv)(buf, count, dt, source, tag, comm, req);
    uint64_t t1 = gt_now();
    gt_call(OP_IRECV, gt_peer(source), gt_tag(tag), gt_comm_size(comm), t0, t1,
            gt_bytes(count, dt));
    return rc;
}

GT_DECL(Wait);
GT_ENTRY(Wait);
GT_FN(Wait)(MPI_Request *req, MPI_Status *status) {
    GT_OFF(Wait, req, status);
    uint64_t t0 = gt_now();
    int rc = GT_REAL(Wait)(req, status);
    gt_call(OP_WAIT, -1, -1, 0, t0, gt_now(), -1);
    return rc;
}

GT_DECL(Waitall);
GT_ENTRY(Waitall);
GT_FN(Waitall)(int n, MPI_Request reqs[], MPI_Status statuses[]) {
    GT_OFF(Waitall, n, reqs, statuses);
    uint64_t t0 = gt_now();
    int rc = GT_REAL(Waitall)(n, reqs, statuses);
    gt_call(OP_WAITALL, -1, -1, 0, t0, gt_now(), -1);
    return rc;
}

GT_DECL(Waitany);
GT_ENTRY(Waitany);
GT_FN(Waitany)(int n, MPI_Request reqs[], int *index, MPI_Status *status) {
    GT_OFF(Waitany, n, reqs, index, status);
    uint64_t t0 = gt_now();
    int rc = GT_REAL(Waitany)(n, reqs, index, status);
    gt_call(OP_WAITANY, -1, -1, 0, t0, gt_now(), -1);
    return rc;
}

GT_DECL(Test);
GT_ENTRY(Test);
GT_FN(Test)(MPI_Request *req, int *flag, MPI_Status *status) {
    GT_OFF(Test, req, flag, status);
    uint64_t t0 = gt_now();
    int rc = GT_REAL(Test)(req, flag, status);
    gt_call(OP_TEST, -1, -1, 0, t0, gt_now(), -1);
    return rc;
}

GT_DECL(Sendrecv);
GT_ENTRY(Sendrecv);
GT_FN(Sendrecv)(const void *sbuf, int scount, MPI_Datatype stype, int dest,
                           int stag, void *rbuf, int rcount, MPI_Datatype rtype, int source,
                           int rtag, MPI_Comm comm, MPI_Status *status) {
    GT_OFF(Sendrecv, sbuf, scount, stype, dest, stag, rbuf, rcount, rtype, source, rtag, comm,
           status);
    uint64_t t0 = gt_now();
    int rc = GT_REAL(Sendrecv)(sbuf, scount, stype, dest, stag, rbuf, rcount, rtype, source,
                               rtag, comm, status);
    uint64_t t1 = gt_now();
    gt_call(OP_SENDRECV, gt_peer(dest), gt_tag(stag), gt_comm_size(comm), t0, t1,
            gt_bytes(scount, stype));
    return rc;
}

GT_DECL(Bcast);
GT_ENTRY(Bcast);
GT_FN(Bcast)(void *buf, int count, MPI_Datatype dt, int root, MPI_Comm comm) {
    GT_OFF(Bcast, buf, count, dt, root, comm);
    uint64_t t0 = gt_now();
    int rc = GT_REAL(Bcast)(buf, count, dt, root, comm);
    uint64_t t1 = gt_now();
    gt_call(OP_BCAST, gt_peer(root), -1, gt_comm_size(comm), t0, t1, gt_bytes(count, dt));
    return rc;
}

GT_DECL(Reduce);
GT_ENTRY(Reduce);
GT_FN(Reduce)(const void *sbuf, void *rbuf, int count, MPI_Datatype dt, MPI_Op op,
                         int root, MPI_Comm comm) {
    GT_OFF(Reduce, sbuf, rbuf, count, dt, op, root, comm);
    uint64_t t0 = gt_now();
    int rc = GT_REAL(Reduce)(sbuf, rbuf, count, dt, op, root, comm);
    uint64_t t1 = gt_now();
    gt_call(OP_REDUCE, gt_peer(root), -1, gt_comm_size(comm), t0, t1, gt_bytes(count, dt));
    return rc;
}

GT_DECL(Allreduce);
GT_ENTRY(Allreduce);
GT_FN(Allreduce)(const void *sbuf, void *rbuf, int count, MPI_Datatype dt,
                            MPI_Op op, MPI_Comm comm) {
    GT_OFF(Allreduce, sbuf, rbuf, count, dt, op, comm);
    uint64_t t0 = gt_now();
    int rc = GT_REAL(Allreduce)(sbuf, rbuf, count, dt, op, comm);
    uint64_t t1 = gt_now();
    gt_call(OP_ALLREDUCE, -1, -1, gt_comm_size(comm), t0, t1, gt_bytes(count, dt));
    return rc;
}

GT_DECL(Iallreduce);
GT_ENTRY(Iallreduce);
GT_FN(Iallreduce)(const void *sbuf, void *rbuf, int count, MPI_Datatype dt,
                             MPI_Op op, MPI_Comm comm, MPI_Request *req) {
    GT_OFF(Iallreduce, sbuf, rbuf, count, dt, op, comm, req);
    uint64_t t0 = gt_now();
    int rc = GT_REAL(Iallreduce)(sbuf, rbuf, count, dt, op, comm, req);
    uint64_t t1 = gt_now();
    gt_call(OP_IALLREDUCE, -1, -1, gt_comm_size(comm), t0, t1, gt_bytes(count, dt));
    return rc;
}

GT_DECL(Barrier);
GT_ENTRY(Barrier);
GT_FN(Barrier)(MPI_Comm comm) {
    GT_OFF(Barrier, comm);
    uint64_t t0 = gt_now();
    int rc = GT_REAL(Barrier)(comm);
    uint64_t t1 = gt_now();
    gt_call(OP_BARRIER, -1, -1, gt_comm_size(comm), t0, t1, -1);
    return rc;
}

GT_DECL(Gather);
GT_ENTRY(Gather);
GT_FN(Gather)(const void *sbuf, int scount, MPI_Datatype stype, void *rbuf,
                         int rcount, MPI_Datatype rtype, int root, MPI_Comm comm) {
    GT_OFF(Gather, sbuf, scount, stype, rbuf, rcount, rtype, root, comm);
    uint64_t t0 = gt_now();
    int rc = GT_REAL(Gather)(sbuf, scount, stype, rbuf, rcount, rtype, root, comm);
    uint64_t t1 = gt_now();
    int64_t b = sbuf == MPI_IN_PLACE ? gt_bytes(rcount, rtype) : gt_bytes(scount, stype);
    gt_call(OP_GATHER, gt_peer(root), -1, gt_comm_size(comm), t0, t1, b);
    return rc;
}

GT_DECL(Gatherv);
GT_ENTRY(Gatherv);
GT_FN(Gatherv)(const void *sbuf, int scount, MPI_Datatype stype, void *rbuf,
                          const int rcounts[], const int displs[], MPI_Datatype rtype,
                          int root, MPI_Comm comm) {
    GT_OFF(Gatherv, sbuf, scount, stype, rbuf, rcounts, displs, rtype, root, comm);
    uint64_t t0 = gt_now();
    int rc = GT_REAL(Gatherv)(sbuf, scount, stype, rbuf, rcounts, displs, rtype, root, comm);
    uint64_t t1 = gt_now();
    int me = gt_comm_rank(comm);
    int64_t b = sbuf != MPI_IN_PLACE ? gt_bytes(scount, stype)
                : me >= 0            ? gt_bytes(rcounts[me], rtype)
                                     : -1;
    gt_call(OP_GATHERV, gt_peer(root), -1, gt_comm_size(comm), t0, t1, b);
    return rc;
}

GT_DECL(Scatter);
GT_ENTRY(Scatter);
GT_FN(Scatter)(const void *sbuf, int scount, MPI_Datatype stype, void *rbuf,
                          int rcount, MPI_Datatype rtype, int root, MPI_Comm comm) {
    GT_OFF(Scatter, sbuf, scount, stype, rbuf, rcount, rtype, root, comm);
    uint64_t t0 = gt_now();
    int rc = GT_REAL(Scatter)(sbuf, scount, stype, rbuf, rcount, rtype, root, comm);
    uint64_t t1 = gt_now();
    int64_t b = rbuf == MPI_IN_PLACE ? gt_bytes(scount, stype) : gt_bytes(rcount, rtype);
    gt_call(OP_SCATTER, gt_peer(root), -1, gt_comm_size(comm), t0, t1, b);
    return rc;
}

GT_DECL(Scatterv);
GT_ENTRY(Scatterv);
GT_FN(Scatterv)(const void *sbuf, const int scounts[], const int displs[],
                           MPI_Datatype stype, void *rbuf, int rcount, MPI_Datatype rtype,
                           int root, MPI_Comm comm) {
    GT_OFF(Scatterv, sbuf, scounts, displs, stype, rbuf, rcount, rtype, root, comm);
    uint64_t t0 = gt_now();
    int rc = GT_REAL(Scatterv)(sbuf, scounts, displs, stype, rbuf, rcount, rtype, root, comm);
    uint64_t t1 = gt_now();
    int me = gt_comm_rank(comm);
    int64_t b = rbuf != MPI_IN_PLACE ? gt_bytes(rcount, rtype)
                : me >= 0            ? gt_bytes(scounts[me], stype)
                                     : -1;
    gt_call(OP_SCATTERV, gt_peer(root), -1, gt_comm_size(comm), t0, t1, b);
    return rc;
}

GT_DECL(Allgather);
GT_ENTRY(Allgather);
GT_FN(Allgather)(const void *sbuf, int scount, MPI_Datatype stype, void *rbuf,
                            int rcount, MPI_Datatype rtype, MPI_Comm comm) {
    GT_OFF(Allgather, sbuf, scount, stype, rbuf, rcount, rtype, comm);
    uint64_t t0 = gt_now();
    int rc = GT_REAL(Allgather)(sbuf, scount, stype, rbuf, rcount, rtype, comm);
    uint64_t t1 = gt_now();
    int64_t b = sbuf == MPI_IN_PLACE ? gt_bytes(rcount, rtype) : gt_bytes(scount, stype);
    gt_call(OP_ALLGATHER, -1, -1, gt_comm_size(comm), t0, t1, b);
    return rc;
}

GT_DECL(Allgatherv);
GT_ENTRY(Allgatherv);
GT_FN(Allgatherv)(const void *sbuf, int scount, MPI_Datatype stype, void *rbuf,
                             const int rcounts[], const int displs[], MPI_Datatype rtype,
                             MPI_Comm comm) {
    GT_OFF(Allgatherv, sbuf, scount, stype, rbuf, rcounts, displs, rtype, comm);
    uint64_t t0 = gt_now();
    int rc = GT_REAL(Allgatherv)(sbuf, scount, stype, rbuf, rcounts, displs, rtype, comm);
    uint64_t t1 = gt_now();
    int me = gt_comm_rank(comm);
    int64_t b = sbuf != MPI_IN_PLACE ? gt_bytes(scount, stype)
                : me >= 0            ? gt_bytes(rcounts[me], rtype)
                                     : -1;
    gt_call(OP_ALLGATHERV, -1, -1, gt_comm_size(comm), t0, t1, b);
    return rc;
}

GT_DECL(Alltoall);
GT_ENTRY(Alltoall);
GT_FN(Alltoall)(const void *sbuf, int scount, MPI_Datatype stype, void *rbuf,
                           int rcount, MPI_Datatype rtype, MPI_Comm comm) {
    GT_OFF(Alltoall, sbuf, scount, stype, rbuf, rcount, rtype, comm);
    uint64_t t0 = gt_now();
    int rc = GT_REAL(Alltoall)(sbuf, scount, stype, rbuf, rcount, rtype, comm);
    uint64_t t1 = gt_now();
    int n = gt_comm_size(comm);
    int64_t b = sbuf == MPI_IN_PLACE ? gt_bytes((int64_t)rcount * n, rtype)
                                     : gt_bytes((int64_t)scount * n, stype);
    gt_call(OP_ALLTOALL, -1, -1, n, t0, t1, b);
    return rc;
}

GT_DECL(Alltoallv);
GT_ENTRY(Alltoallv);
GT_FN(Alltoallv)(const void *sbuf, const int scounts[], const int sdispls[],
                            MPI_Datatype stype, void *rbuf, const int rcounts[],
                            const int rdispls[], MPI_Datatype rtype, MPI_Comm comm) {
    GT_OFF(Alltoallv, sbuf, scounts, sdispls, stype, rbuf, rcounts, rdispls, rtype, comm);
    uint64_t t0 = gt_now();
    int rc = GT_REAL(Alltoallv)(sbuf, scounts, sdispls, stype, rbuf, rcounts, rdispls, rtype,
                                comm);
    uint64_t t1 = gt_now();
    int n = gt_comm_size(comm);
    int in_place = sbuf == MPI_IN_PLACE;
    const int *c = in_place ? rcounts : scounts;
    int64_t total = 0;
    for (int i = 0; i < n; i++) total += c[i];
    gt_call(OP_ALLTOALLV, -1, -1, n, t0, t1, gt_bytes(total, in_place ? rtype : stype));
    return rc;
}

/* Every PMPI function looked up, so that the x86-64 stubs can forward without C. */
static void gt_resolve_all(void) {
    (void)GT_REAL(Init);
    (void)GT_REAL(Init_thread);
    (void)GT_REAL(Finalize);
    (void)GT_REAL(Send);
    (void)GT_REAL(Ssend);
    (void)GT_REAL(Recv);
    (void)GT_REAL(Isend);
    (void)GT_REAL(Irecv);
    (void)GT_REAL(Wait);
    (void)GT_REAL(Waitall);
    (void)GT_REAL(Waitany);
    (void)GT_REAL(Test);
    (void)GT_REAL(Sendrecv);
    (void)GT_REAL(Bcast);
    (void)GT_REAL(Reduce);
    (void)GT_REAL(Allreduce);
    (void)GT_REAL(Iallreduce);
    (void)GT_REAL(Barrier);
    (void)GT_REAL(Gather);
    (void)GT_REAL(Gatherv);
    (void)GT_REAL(Scatter);
    (void)GT_REAL(Scatterv);
    (void)GT_REAL(Allgather);
    (void)GT_REAL(Allgatherv);
    (void)GT_REAL(Alltoall);
    (void)GT_REAL(Alltoallv);
    (void)GT_REAL(Comm_size);
    (void)GT_REAL(Comm_rank);
    (void)GT_REAL(Type_size);
    (void)GT_REAL(Get_library_version);
}

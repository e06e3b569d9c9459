/*
 * graze_trace.h: user regions for graze's PMPI tracer (issue 16, docs/TRACE_FORMAT.md).
 *
 * `graze submit --trace` preloads libgraze-trace-<flavour>.so into every rank; it records each
 * MPI call, and these two functions mark a program's own phases:
 *
 *     graze_trace_region_begin("compute");
 *     ...
 *     graze_trace_region_end("compute");
 *
 * Regions may nest; a region is written when it ends. Names are UTF-8, cut to 255 bytes.
 *
 * Do not link against the library: it is only there in traced runs. Look the functions up
 * once at run time and do nothing when they are absent, e.g. with the helper below:
 *
 *     #define GRAZE_TRACE_LOOKUP
 *     #include "graze_trace.h"
 *     ...
 *     graze_trace_fns t = graze_trace_lookup();   // once, after main starts
 *     if (t.begin) t.begin("compute");
 */
#ifndef GRAZE_TRACE_H
#define GRAZE_TRACE_H

#ifdef __cplusplus
extern "C" {
#endif

/* Begin the region `name` on the calling thread (a no-op when tracing is off). */
void graze_trace_region_begin(const char *name);
/* End the innermost open region called `name` on the calling thread and record it. */
void graze_trace_region_end(const char *name);

#ifdef GRAZE_TRACE_LOOKUP
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
typedef struct {
    void (*begin)(const char *);
    void (*end)(const char *);
} graze_trace_fns;

/* Both pointers set when the tracer is loaded, both NULL otherwise. */
static inline graze_trace_fns graze_trace_lookup(void) {
    graze_trace_fns f;
    f.begin = (void (*)(const char *))dlsym(RTLD_DEFAULT, "graze_trace_region_begin");
    f.end = (void (*)(const char *))dlsym(RTLD_DEFAULT, "graze_trace_region_end");
    if (!f.begin || !f.end) {
        f.begin = 0;
        f.end = 0;
    }
    return f;
}
#endif

#ifdef __cplusplus
}
#endif

#endif /* GRAZE_TRACE_H */

//! graze trace's user regions (issue 16): under `graze submit --trace` graze preloads its PMPI
//! tracer, which exports `graze_trace_region_begin/end` (`trace/c/graze_trace.h`); graze-pi
//! marks its "sample" and "allreduce" phases with them. The functions are looked up once with
//! `dlsym(RTLD_DEFAULT, ...)`; when the tracer is not loaded, [`TraceRegions::mark`] is one
//! predictable branch per phase, and the sampling kernel itself is untouched.

use std::ffi::{c_char, CStr};

type RegionFn = unsafe extern "C" fn(*const c_char);

/// The tracer's region functions, when it is loaded into this process.
#[derive(Debug, Clone, Copy)]
pub struct TraceRegions {
    fns: Option<(RegionFn, RegionFn)>,
}

impl TraceRegions {
    /// Looks the tracer up in the process (once, at start).
    pub fn lookup() -> Self {
        // SAFETY: dlsym with RTLD_DEFAULT and NUL-terminated names has no preconditions.
        let (b, e) = unsafe {
            (
                libc::dlsym(libc::RTLD_DEFAULT, c"graze_trace_region_begin".as_ptr()),
                libc::dlsym(libc::RTLD_DEFAULT, c"graze_trace_region_end".as_ptr()),
            )
        };
        if b.is_null() || e.is_null() {
            return Self { fns: None };
        }
        // SAFETY: both symbols are graze's tracer's `void f(const char *)` (graze_trace.h).
        let fns = unsafe {
            (
                std::mem::transmute::<*mut libc::c_void, RegionFn>(b),
                std::mem::transmute::<*mut libc::c_void, RegionFn>(e),
            )
        };
        Self { fns: Some(fns) }
    }

    /// Whether the tracer is loaded.
    pub fn enabled(&self) -> bool {
        self.fns.is_some()
    }

    /// Runs `f` inside the region `name`.
    #[inline]
    pub fn mark<T>(&self, name: &CStr, f: impl FnOnce() -> T) -> T {
        match self.fns {
            None => f(),
            Some((begin, end)) => {
                // SAFETY: `name` is NUL-terminated and outlives both calls.
                unsafe { begin(name.as_ptr()) };
                let v = f();
                // SAFETY: as above.
                unsafe { end(name.as_ptr()) };
                v
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_the_tracer_regions_only_run_the_closure() {
        let t = TraceRegions::lookup();
        assert!(
            !t.enabled(),
            "the unit tests run without the tracer preloaded"
        );
        assert_eq!(t.mark(c"sample", || 41 + 1), 42);
    }
}

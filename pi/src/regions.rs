//! User regions of graze's MPI tracer (`graze submit --trace`): graze-pi marks each round's
//! `sample` and `allreduce` phases. The tracer's `graze_trace_region_begin` / `_end` are looked
//! up once with `dlsym(RTLD_DEFAULT, ...)`; when no tracer is preloaded (an untraced run) a
//! region costs a branch.

use std::ffi::{c_char, c_void, CStr};
use std::sync::OnceLock;

type RegionFn = unsafe extern "C" fn(*const c_char);

struct Api {
    begin: RegionFn,
    end: RegionFn,
}

static API: OnceLock<Option<Api>> = OnceLock::new();

fn lookup(name: &CStr) -> Option<RegionFn> {
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name only reads.
    let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: the tracer exports these names as `void f(const char *)` (trace/c/graze_trace.h).
    Some(unsafe { std::mem::transmute::<*mut c_void, RegionFn>(p) })
}

fn api() -> Option<&'static Api> {
    API.get_or_init(|| {
        Some(Api {
            begin: lookup(c"graze_trace_region_begin")?,
            end: lookup(c"graze_trace_region_end")?,
        })
    })
    .as_ref()
}

/// A region of the tracer's timeline, from `new` to its drop.
pub struct Region(&'static CStr);

impl Region {
    /// Begin region `name`.
    pub fn new(name: &'static CStr) -> Region {
        if let Some(a) = api() {
            // SAFETY: a valid NUL-terminated string that lives for the whole program.
            unsafe { (a.begin)(name.as_ptr()) };
        }
        Region(name)
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        if let Some(a) = api() {
            // SAFETY: as in `new`.
            unsafe { (a.end)(self.0.as_ptr()) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_tracer_regions_do_nothing() {
        // No tracer is preloaded into the test binary.
        assert!(api().is_none());
        drop(Region::new(c"sample"));
    }
}

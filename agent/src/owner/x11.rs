//! The graphical session's idle time, from the X server's screen-saver extension
//! (`XScreenSaverQueryInfo`, the same counter `xprintidle` reads).
//!
//! libX11 and libXss are loaded at run time (`x11-dl`, dlopen), never linked: the agent
//! starts on a PC or server without X libraries, and this source then reports itself
//! unavailable. It never crashes the agent:
//!
//! - no display (unset `DISPLAY`, no server): `XOpenDisplay` returns NULL, which is checked
//!   (the `user-idle` crate's X11 backend does not check it and segfaults);
//! - the server goes away while connected: Xlib's default I/O error handling calls `exit()`.
//!   The source installs an I/O error *exit* handler that returns instead
//!   (`XSetIOErrorExitHandler`, libX11 1.7 and later, looked up at run time) and drops the
//!   dead connection; with an older libX11 the source refuses to connect at all.
//!
//! Xlib is used from one thread at a time (the agent's owning task), so `XInitThreads` is
//! not needed.

use super::source::IdleSource;
use std::ffi::{c_void, CString};
use std::os::raw::c_int;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};
use x11_dl::xlib::{Display, Xlib};
use x11_dl::xss::Xss;

/// Set by the I/O error handlers: the connection is dead and must not be used again.
static IO_ERROR: AtomicBool = AtomicBool::new(false);

/// How often to retry opening the display after it failed.
const RETRY: Duration = Duration::from_secs(5);

unsafe extern "C" fn on_io_error(_d: *mut Display) -> c_int {
    IO_ERROR.store(true, Ordering::SeqCst);
    0
}

unsafe extern "C" fn on_io_error_exit(_d: *mut Display, _data: *mut c_void) {
    IO_ERROR.store(true, Ordering::SeqCst);
}

unsafe extern "C" fn on_error(_d: *mut Display, _e: *mut x11_dl::xlib::XErrorEvent) -> c_int {
    0
}

type SetExitHandler = unsafe extern "C" fn(
    *mut Display,
    Option<unsafe extern "C" fn(*mut Display, *mut c_void)>,
    *mut c_void,
);

struct Conn {
    display: *mut Display,
    root: u64,
    info: *mut x11_dl::xss::XScreenSaverInfo,
}

/// The X screen-saver idle source.
pub(crate) struct X11Source {
    /// Display name, e.g. `:0`; `None` reads `$DISPLAY`.
    display: Option<String>,
    libs: Option<(Xlib, Xss, SetExitHandler)>,
    conn: Option<Conn>,
    next_try: Option<Instant>,
    last_error: String,
}

// SAFETY: the raw pointers are only used through `&mut self`, from one thread at a time.
unsafe impl Send for X11Source {}

impl X11Source {
    /// A source for `display` (`None`: `$DISPLAY`).
    pub(crate) fn new(display: Option<String>) -> X11Source {
        X11Source {
            display,
            libs: None,
            conn: None,
            next_try: None,
            last_error: String::new(),
        }
    }

    /// The display name shown in the status.
    pub(crate) fn display_name(&self) -> String {
        self.display
            .clone()
            .or_else(|| std::env::var("DISPLAY").ok())
            .unwrap_or_default()
    }

    fn load() -> Result<(Xlib, Xss, SetExitHandler), String> {
        let xlib = Xlib::open().map_err(|e| format!("libX11 not loadable: {e}"))?;
        let xss = Xss::open().map_err(|e| format!("libXss not loadable: {e}"))?;
        // SAFETY: dlopen/dlsym with NUL-terminated names; RTLD_NOLOAD only finds the
        // library x11-dl already loaded, and the symbol's C signature is SetExitHandler.
        let set_exit = unsafe {
            let name = CString::new("libX11.so.6").map_err(|e| e.to_string())?;
            let h = libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_NOLOAD);
            let sym = CString::new("XSetIOErrorExitHandler").map_err(|e| e.to_string())?;
            let f = if h.is_null() {
                std::ptr::null_mut()
            } else {
                libc::dlsym(h, sym.as_ptr())
            };
            if f.is_null() {
                return Err("libX11 older than 1.7 (no XSetIOErrorExitHandler): a lost X server would end the agent, so this source is off".into());
            }
            std::mem::transmute::<*mut c_void, SetExitHandler>(f)
        };
        Ok((xlib, xss, set_exit))
    }

    fn connect(&mut self) -> Result<(), String> {
        if self.libs.is_none() {
            self.libs = Some(Self::load()?);
        }
        let Some((xlib, xss, set_exit)) = &self.libs else {
            return Err("X libraries not loaded".into());
        };
        let name = match &self.display {
            Some(d) => {
                Some(CString::new(d.as_str()).map_err(|_| format!("bad display name '{d}'"))?)
            }
            None => None,
        };
        let shown = self.display_name();
        if name.is_none() && shown.is_empty() {
            return Err("no display: DISPLAY is not set".into());
        }
        // SAFETY: plain Xlib calls on pointers Xlib returned, each checked for NULL.
        unsafe {
            (xlib.XSetErrorHandler)(Some(on_error));
            (xlib.XSetIOErrorHandler)(Some(on_io_error));
            let d = (xlib.XOpenDisplay)(name.as_ref().map_or(std::ptr::null(), |n| n.as_ptr()));
            if d.is_null() {
                return Err(format!("cannot open X display '{shown}'"));
            }
            set_exit(d, Some(on_io_error_exit), std::ptr::null_mut());
            let (mut ev, mut err) = (0, 0);
            if (xss.XScreenSaverQueryExtension)(d, &mut ev, &mut err) == 0 {
                (xlib.XCloseDisplay)(d);
                return Err(format!(
                    "X display '{shown}' has no MIT-SCREEN-SAVER extension"
                ));
            }
            let info = (xss.XScreenSaverAllocInfo)();
            if info.is_null() {
                (xlib.XCloseDisplay)(d);
                return Err("XScreenSaverAllocInfo failed".into());
            }
            let root = (xlib.XDefaultRootWindow)(d);
            IO_ERROR.store(false, Ordering::SeqCst);
            self.conn = Some(Conn {
                display: d,
                root,
                info,
            });
        }
        Ok(())
    }

    /// The X server's idle time; `Ok(None)` when there is no X session to watch.
    pub(crate) fn idle(&mut self, now: Instant) -> Result<Option<Duration>, String> {
        if self.conn.is_none() {
            if self.next_try.is_some_and(|t| now < t) {
                return Ok(None);
            }
            if let Err(e) = self.connect() {
                self.next_try = Some(now + RETRY);
                if e != self.last_error {
                    tracing::info!(display = %self.display_name(), error = %e, "X idle source unavailable");
                    self.last_error = e;
                }
                return Ok(None);
            }
            self.last_error.clear();
            tracing::info!(display = %self.display_name(), "X idle source connected");
        }
        let (Some(c), Some((xlib, xss, _))) = (&self.conn, &self.libs) else {
            return Ok(None);
        };
        // SAFETY: the connection and info block are live (checked at connect); after an
        // I/O error the connection is dropped without further calls.
        let ms = unsafe {
            let ok = (xss.XScreenSaverQueryInfo)(c.display, c.root, c.info);
            if ok == 0 || IO_ERROR.load(Ordering::SeqCst) {
                None
            } else {
                Some((*c.info).idle)
            }
        };
        match ms {
            Some(ms) => Ok(Some(Duration::from_millis(ms))),
            None => {
                // The server went away: leak the dead Display (Xlib must not touch it again).
                let lost = IO_ERROR.load(Ordering::SeqCst);
                if let Some(c) = self.conn.take() {
                    if !lost {
                        // SAFETY: a live connection closed once; info freed with XFree.
                        unsafe {
                            (xlib.XFree)(c.info.cast());
                            (xlib.XCloseDisplay)(c.display);
                        }
                    }
                }
                self.next_try = Some(now + RETRY);
                tracing::warn!(display = %self.display_name(), "lost the X display");
                Ok(None)
            }
        }
    }
}
/// The graphical session as an [`IdleSource`].
pub(crate) struct X11Idle {
    pub(crate) src: X11Source,
}

impl IdleSource for X11Idle {
    fn name(&self) -> String {
        format!("x11:{}", self.src.display_name())
    }
    fn idle(&mut self, now: Instant, _wall: SystemTime) -> Result<Option<Duration>, String> {
        self.src.idle(now)
    }
}

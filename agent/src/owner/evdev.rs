//! Linux input devices (`/dev/input/event*`), event-driven.
//!
//! One reader thread per readable device blocks in `read(2)`; every key, button, motion or
//! touch event records its kernel timestamp (`CLOCK_REALTIME` by default) and wakes the
//! agent's loop at once, so release does not wait for the next 50 ms tick. Devices are
//! looked for again every few seconds while none is open (hot-plug, permissions granted).

use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;

/// Size of `struct input_event` on 64-bit Linux: timeval (16), type, code (2 + 2), value (4).
pub(crate) const EVENT_SIZE: usize = 24;
/// Event types that mean a person did something.
const EV_KEY: u16 = 1;
const EV_REL: u16 = 2;
const EV_ABS: u16 = 3;
/// How often to look for devices while none is open.
const RESCAN: Duration = Duration::from_secs(5);

/// One decoded input event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct InputEvent {
    /// Kernel timestamp, ms since the Unix epoch.
    pub(crate) at_ms: u64,
    /// `EV_*` type.
    pub(crate) kind: u16,
    /// Key or axis code.
    pub(crate) code: u16,
    /// Value (1 press, 0 release, 2 repeat; motion delta).
    pub(crate) value: i32,
}

impl InputEvent {
    /// True for keys, buttons, relative and absolute motion (not sync or misc reports).
    pub(crate) fn is_activity(&self) -> bool {
        matches!(self.kind, EV_KEY | EV_REL | EV_ABS)
    }
}

/// Decode whole events from `buf`; a trailing partial event is ignored.
pub(crate) fn parse_events(buf: &[u8]) -> Vec<InputEvent> {
    buf.chunks_exact(EVENT_SIZE)
        .map(|e| {
            let n64 = |r: std::ops::Range<usize>| {
                let mut a = [0u8; 8];
                a.copy_from_slice(&e[r]);
                i64::from_ne_bytes(a)
            };
            let (sec, usec) = (n64(0..8), n64(8..16));
            let at_ms = u64::try_from(sec)
                .unwrap_or(0)
                .saturating_mul(1000)
                .saturating_add(u64::try_from(usec / 1000).unwrap_or(0));
            InputEvent {
                at_ms,
                kind: u16::from_ne_bytes([e[16], e[17]]),
                code: u16::from_ne_bytes([e[18], e[19]]),
                value: i32::from_ne_bytes([e[20], e[21], e[22], e[23]]),
            }
        })
        .collect()
}

/// The `evdev` idle source.
pub(crate) struct EvdevSource {
    dir: PathBuf,
    wake: Arc<Notify>,
    /// Latest activity, ms since the Unix epoch (0: none yet).
    last_ms: Arc<AtomicU64>,
    /// Reader threads alive.
    open: Arc<AtomicUsize>,
    started: Option<Instant>,
    next_scan: Option<Instant>,
}

impl EvdevSource {
    /// Watch `dir/event*` (normally `/dev/input`), notifying `wake` on activity.
    pub(crate) fn new(dir: impl Into<PathBuf>, wake: Arc<Notify>) -> EvdevSource {
        EvdevSource {
            dir: dir.into(),
            wake,
            last_ms: Arc::new(AtomicU64::new(0)),
            open: Arc::new(AtomicUsize::new(0)),
            started: None,
            next_scan: None,
        }
    }

    fn scan(&mut self) {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for e in rd.flatten() {
            let name = e.file_name();
            if !name.to_string_lossy().starts_with("event") {
                continue;
            }
            let path = e.path();
            let Ok(f) = std::fs::File::open(&path) else {
                continue;
            };
            let (last, open, wake) = (self.last_ms.clone(), self.open.clone(), self.wake.clone());
            open.fetch_add(1, Ordering::SeqCst);
            let spawned = std::thread::Builder::new()
                .name("evdev".into())
                .spawn(move || {
                    read_device(f, &last, &wake);
                    open.fetch_sub(1, Ordering::SeqCst);
                });
            match spawned {
                Ok(_) => tracing::info!(device = %path.display(), "watching input device"),
                Err(e) => {
                    self.open.fetch_sub(1, Ordering::SeqCst);
                    tracing::warn!(error = %e, "cannot start an input reader thread");
                }
            }
        }
    }
}

/// Read events until the device goes away.
fn read_device(mut f: std::fs::File, last: &AtomicU64, wake: &Notify) {
    let mut buf = [0u8; EVENT_SIZE * 64];
    let mut have = 0;
    loop {
        match f.read(&mut buf[have..]) {
            Ok(0) | Err(_) => return,
            Ok(n) => have += n,
        }
        let whole = have - have % EVENT_SIZE;
        let latest = parse_events(&buf[..whole])
            .into_iter()
            .filter(InputEvent::is_activity)
            .map(|e| e.at_ms)
            .max();
        buf.copy_within(whole..have, 0);
        have -= whole;
        if let Some(at) = latest {
            last.fetch_max(at, Ordering::SeqCst);
            wake.notify_one();
        }
    }
}

impl crate::owner::source::IdleSource for EvdevSource {
    fn name(&self) -> String {
        "evdev".into()
    }

    fn idle(&mut self, now: Instant, wall: SystemTime) -> Result<Option<Duration>, String> {
        let started = *self.started.get_or_insert(now);
        if self.open.load(Ordering::SeqCst) == 0 && self.next_scan.is_none_or(|t| now >= t) {
            self.next_scan = Some(now + RESCAN);
            self.scan();
        }
        if self.open.load(Ordering::SeqCst) == 0 {
            return Ok(None);
        }
        let last = self.last_ms.load(Ordering::SeqCst);
        if last == 0 {
            return Ok(Some(now.saturating_duration_since(started)));
        }
        let at = UNIX_EPOCH + Duration::from_millis(last);
        Ok(Some(wall.duration_since(at).unwrap_or(Duration::ZERO)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::owner::source::IdleSource;
    use std::io::Write;

    fn event(sec: i64, usec: i64, kind: u16, code: u16, value: i32) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend(sec.to_ne_bytes());
        b.extend(usec.to_ne_bytes());
        b.extend(kind.to_ne_bytes());
        b.extend(code.to_ne_bytes());
        b.extend(value.to_ne_bytes());
        b
    }

    #[test]
    fn parses_kernel_events() {
        let mut b = event(1_700_000_000, 250_000, EV_KEY, 30, 1);
        b.extend(event(1_700_000_000, 251_000, 0, 0, 0)); // EV_SYN
        b.extend([1, 2, 3]); // partial
        let ev = parse_events(&b);
        assert_eq!(ev.len(), 2);
        assert_eq!(
            ev[0],
            InputEvent {
                at_ms: 1_700_000_000_250,
                kind: EV_KEY,
                code: 30,
                value: 1
            }
        );
        assert!(ev[0].is_activity());
        assert!(!ev[1].is_activity());
        assert!(event(0, 0, EV_REL, 0, -3).len() == EVENT_SIZE);
    }

    /// The whole source on a FIFO standing in for a device (this machine has no
    /// /dev/input): found by its name, read by its thread, timestamps used, loop woken.
    #[tokio::test]
    async fn wiring_with_a_fifo_device() {
        let dir = tempfile::tempdir().unwrap();
        let wake = Arc::new(Notify::new());
        let mut src = EvdevSource::new(dir.path(), wake.clone());
        let now = Instant::now();
        assert_eq!(src.idle(now, SystemTime::now()).unwrap(), None, "no device");

        let fifo = dir.path().join("event3");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // Opening a FIFO for reading blocks until a writer comes: open the writer first.
        let writer =
            std::thread::spawn(move || std::fs::OpenOptions::new().write(true).open(fifo).unwrap());
        src.next_scan = None;
        let later = now + Duration::from_secs(1);
        let d = src.idle(later, SystemTime::now()).unwrap().unwrap();
        assert!(
            d <= Duration::from_secs(1),
            "no input yet: idle since start, {d:?}"
        );
        let mut w = writer.join().unwrap();

        let woken = wake.notified();
        let t = SystemTime::now() - Duration::from_secs(30);
        let ms = t.duration_since(UNIX_EPOCH).unwrap();
        w.write_all(&event(
            ms.as_secs() as i64,
            i64::from(ms.subsec_micros()),
            EV_KEY,
            30,
            1,
        ))
        .unwrap();
        tokio::time::timeout(Duration::from_secs(5), woken)
            .await
            .unwrap();
        let d = src.idle(later, SystemTime::now()).unwrap().unwrap();
        assert!(
            d >= Duration::from_secs(29) && d <= Duration::from_secs(32),
            "kernel timestamp used: {d:?}"
        );
        drop(w);
        // The device went away: the reader ends and the source has nothing to watch.
        for _ in 0..100 {
            if src.open.load(Ordering::SeqCst) == 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(src.open.load(Ordering::SeqCst), 0);
    }
}

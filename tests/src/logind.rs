//! A stand-in for systemd-logind, which does not run here: a private `dbus-daemon` started
//! by the test (its socket in a temp dir) and, on it, a zbus server owning
//! `org.freedesktop.login1`.
//!
//! It implements the part of logind's D-Bus interface graze reads, with the names, types
//! and signals of logind's documentation (org.freedesktop.login1(5)):
//!
//! - `/org/freedesktop/login1`, `org.freedesktop.login1.Manager`: `ListSessions() ->
//!   a(susso)`, `ListInhibitors() -> a(ssssuu)`, the properties `BlockInhibited` and
//!   `DelayInhibited` (`s`, colon-separated), `IdleHint` (`b`), `IdleSinceHint` and
//!   `IdleSinceHintMonotonic` (`t`), and the signals `SessionNew(so)`, `SessionRemoved(so)`;
//! - `/org/freedesktop/login1/session/ID` (ID escaped as logind escapes bus labels),
//!   `org.freedesktop.login1.Session`: `Id`, `Name`, `Type`, `Class`, `State` (`s`),
//!   `Active`, `Remote`, `IdleHint` (`b`), `IdleSinceHint`, `IdleSinceHintMonotonic` (`t`,
//!   µs of CLOCK_REALTIME and CLOCK_MONOTONIC);
//! - `org.freedesktop.DBus.Properties.PropertiesChanged` with the new values, one signal per
//!   change carrying the properties logind sends together (`IdleHint`, `IdleSinceHint`,
//!   `IdleSinceHintMonotonic`; `BlockInhibited`).
//!
//! Not implemented: `Inhibit()` (an fd-holding call): the test adds and removes inhibitors
//! directly ([`FakeLogind::inhibit`]), which changes what `ListInhibitors` and
//! `BlockInhibited` say exactly as a taken and a released inhibitor do.

use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use zbus::zvariant::{ObjectPath, OwnedObjectPath, Value};

const MANAGER_PATH: &str = "/org/freedesktop/login1";
const MANAGER: &str = "org.freedesktop.login1.Manager";
const SESSION: &str = "org.freedesktop.login1.Session";

#[derive(Clone, Debug)]
struct SessionState {
    kind: String,
    class: String,
    active: bool,
    idle_hint: bool,
    idle_since_us: u64,
    idle_since_mono_us: u64,
}

#[derive(Clone, Debug)]
struct Inhibitor {
    what: String,
    who: String,
    why: String,
    mode: String,
}

#[derive(Default)]
struct State {
    sessions: BTreeMap<String, SessionState>,
    inhibitors: BTreeMap<u32, Inhibitor>,
    next_inhibitor: u32,
}

impl State {
    /// The colon-separated union of the `what`s of the inhibitors of `mode`, in logind's
    /// order.
    fn inhibited(&self, mode: &str) -> String {
        const ORDER: [&str; 5] = [
            "shutdown",
            "sleep",
            "idle",
            "handle-power-key",
            "handle-lid-switch",
        ];
        ORDER
            .iter()
            .filter(|w| {
                self.inhibitors
                    .values()
                    .any(|i| i.mode == mode && i.what.split(':').any(|x| x == **w))
            })
            .copied()
            .collect::<Vec<_>>()
            .join(":")
    }
}

type Shared = Arc<Mutex<State>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, State> {
    s.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// logind's object path of session `id` (`bus_label_escape`: bytes other than ASCII letters
/// and digits, and a leading digit, become `_XX`).
pub fn session_path(id: &str) -> String {
    let mut out = String::from("/org/freedesktop/login1/session/");
    for (i, b) in id.bytes().enumerate() {
        if b.is_ascii_alphabetic() || (i > 0 && b.is_ascii_digit()) {
            out.push(b as char);
        } else {
            out.push_str(&format!("_{b:02x}"));
        }
    }
    out
}

fn realtime_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn monotonic_us() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000
}

struct Manager {
    state: Shared,
}

#[zbus::interface(name = "org.freedesktop.login1.Manager")]
impl Manager {
    fn list_sessions(&self) -> Vec<(String, u32, String, String, OwnedObjectPath)> {
        lock(&self.state)
            .sessions
            .keys()
            .map(|id| {
                let path = ObjectPath::try_from(session_path(id)).unwrap();
                (
                    id.clone(),
                    1000,
                    "owner".into(),
                    "seat0".into(),
                    path.into(),
                )
            })
            .collect()
    }

    fn list_inhibitors(&self) -> Vec<(String, String, String, String, u32, u32)> {
        lock(&self.state)
            .inhibitors
            .values()
            .map(|i| {
                (
                    i.what.clone(),
                    i.who.clone(),
                    i.why.clone(),
                    i.mode.clone(),
                    1000,
                    4242,
                )
            })
            .collect()
    }

    #[zbus(property)]
    fn block_inhibited(&self) -> String {
        lock(&self.state).inhibited("block")
    }

    #[zbus(property)]
    fn delay_inhibited(&self) -> String {
        lock(&self.state).inhibited("delay")
    }

    /// logind's aggregate over the sessions (graze reads the sessions').
    #[zbus(property)]
    fn idle_hint(&self) -> bool {
        let s = lock(&self.state);
        !s.sessions.is_empty() && s.sessions.values().all(|x| x.idle_hint)
    }

    #[zbus(property)]
    fn idle_since_hint(&self) -> u64 {
        0
    }

    #[zbus(property)]
    fn idle_since_hint_monotonic(&self) -> u64 {
        0
    }

    #[zbus(signal)]
    async fn session_new(
        emitter: &zbus::object_server::SignalEmitter<'_>,
        id: &str,
        path: ObjectPath<'_>,
    ) -> zbus::Result<()>;

    #[zbus(signal)]
    async fn session_removed(
        emitter: &zbus::object_server::SignalEmitter<'_>,
        id: &str,
        path: ObjectPath<'_>,
    ) -> zbus::Result<()>;
}

struct Session {
    id: String,
    state: Shared,
}

impl Session {
    fn get<T>(&self, f: impl FnOnce(&SessionState) -> T) -> zbus::fdo::Result<T> {
        lock(&self.state)
            .sessions
            .get(&self.id)
            .map(f)
            .ok_or_else(|| zbus::fdo::Error::UnknownObject(self.id.clone()))
    }
}

#[zbus::interface(name = "org.freedesktop.login1.Session")]
impl Session {
    #[zbus(property)]
    fn id(&self) -> String {
        self.id.clone()
    }

    #[zbus(property)]
    fn name(&self) -> String {
        "owner".into()
    }

    #[zbus(property, name = "Type")]
    fn kind(&self) -> zbus::fdo::Result<String> {
        self.get(|s| s.kind.clone())
    }

    #[zbus(property)]
    fn class(&self) -> zbus::fdo::Result<String> {
        self.get(|s| s.class.clone())
    }

    #[zbus(property)]
    fn active(&self) -> zbus::fdo::Result<bool> {
        self.get(|s| s.active)
    }

    #[zbus(property)]
    fn state(&self) -> zbus::fdo::Result<String> {
        self.get(|s| if s.active { "active" } else { "online" }.to_string())
    }

    #[zbus(property)]
    fn remote(&self) -> bool {
        false
    }

    #[zbus(property)]
    fn idle_hint(&self) -> zbus::fdo::Result<bool> {
        self.get(|s| s.idle_hint)
    }

    #[zbus(property)]
    fn idle_since_hint(&self) -> zbus::fdo::Result<u64> {
        self.get(|s| s.idle_since_us)
    }

    #[zbus(property)]
    fn idle_since_hint_monotonic(&self) -> zbus::fdo::Result<u64> {
        self.get(|s| s.idle_since_mono_us)
    }
}

/// A private bus with a stand-in logind on it; both are stopped on drop.
pub struct FakeLogind {
    bus: Child,
    /// The bus's address, `unix:path=...`.
    pub address: String,
    _dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
    conn: Option<zbus::Connection>,
    state: Shared,
}

impl FakeLogind {
    /// Start `dbus-daemon` on a socket in a temp dir and serve `org.freedesktop.login1` on it.
    pub fn start() -> FakeLogind {
        let dir = tempfile::Builder::new()
            .prefix("graze-logind-")
            .tempdir()
            .unwrap();
        let socket: PathBuf = dir.path().join("bus");
        let conf = dir.path().join("bus.conf");
        std::fs::write(
            &conf,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
                socket.display()
            ),
        )
        .unwrap();
        let mut bus = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", conf.display()))
            .args(["--print-address", "--nofork"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "dbus-daemon (Debian package dbus-daemon) must be installed: run scripts/setup",
            );
        // The address is printed once the bus listens.
        let mut address = String::new();
        std::io::BufReader::new(bus.stdout.take().unwrap())
            .read_line(&mut address)
            .unwrap();
        let address = address.trim().to_string();
        assert!(
            address.starts_with("unix:"),
            "dbus-daemon printed '{address}'"
        );
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let state: Shared = Arc::default();
        let conn = rt.block_on(async {
            let conn = zbus::connection::Builder::address(address.as_str())
                .unwrap()
                .name("org.freedesktop.login1")
                .unwrap()
                .serve_at(
                    MANAGER_PATH,
                    Manager {
                        state: state.clone(),
                    },
                )
                .unwrap()
                .build()
                .await
                .expect("serving org.freedesktop.login1 on the test bus");
            conn
        });
        FakeLogind {
            bus,
            address,
            _dir: dir,
            rt,
            conn: Some(conn),
            state,
        }
    }

    /// The idle-source spec for an agent: `logind:ADDRESS`.
    pub fn spec(&self) -> String {
        format!("logind:{}", self.address)
    }

    fn conn(&self) -> &zbus::Connection {
        self.conn.as_ref().expect("the stand-in logind is stopped")
    }

    /// Log a user in: a session `id` of `kind` (`x11`, `wayland`, `tty`) and `class`
    /// (`user`, `greeter`), idle for `idle` (`None`: active now). Sends `SessionNew`.
    pub fn add_session(&self, id: &str, kind: &str, class: &str, idle: Option<Duration>) {
        let (since, since_mono) = since(idle.unwrap_or_default());
        lock(&self.state).sessions.insert(
            id.into(),
            SessionState {
                kind: kind.into(),
                class: class.into(),
                active: true,
                idle_hint: idle.is_some(),
                idle_since_us: since,
                idle_since_mono_us: since_mono,
            },
        );
        let path = session_path(id);
        let conn = self.conn().clone();
        let state = self.state.clone();
        self.rt.block_on(async move {
            conn.object_server()
                .at(
                    path.as_str(),
                    Session {
                        id: id.into(),
                        state,
                    },
                )
                .await
                .unwrap();
            conn.emit_signal(
                None::<&str>,
                MANAGER_PATH,
                MANAGER,
                "SessionNew",
                &(id, ObjectPath::try_from(path.as_str()).unwrap()),
            )
            .await
            .unwrap();
        });
    }

    /// The desktop of session `id` sets its idle hint: idle since `idle` ago, or (`None`)
    /// active now, as logind's `SetIdleHint` does: one `PropertiesChanged` with `IdleHint`,
    /// `IdleSinceHint` and `IdleSinceHintMonotonic`.
    pub fn set_idle(&self, id: &str, idle: Option<Duration>) {
        let (since, since_mono) = since(idle.unwrap_or_default());
        {
            let mut st = lock(&self.state);
            let s = st.sessions.get_mut(id).expect("no such session");
            s.idle_hint = idle.is_some();
            s.idle_since_us = since;
            s.idle_since_mono_us = since_mono;
        }
        let changed: HashMap<&str, Value<'_>> = [
            ("IdleHint", Value::from(idle.is_some())),
            ("IdleSinceHint", Value::from(since)),
            ("IdleSinceHintMonotonic", Value::from(since_mono)),
        ]
        .into_iter()
        .collect();
        self.properties_changed(&session_path(id), SESSION, changed);
    }

    /// Log session `id` out: `SessionRemoved`.
    pub fn remove_session(&self, id: &str) {
        lock(&self.state).sessions.remove(id);
        let path = session_path(id);
        let conn = self.conn().clone();
        self.rt.block_on(async move {
            conn.object_server()
                .remove::<Session, _>(path.as_str())
                .await
                .unwrap();
            conn.emit_signal(
                None::<&str>,
                MANAGER_PATH,
                MANAGER,
                "SessionRemoved",
                &(id, ObjectPath::try_from(path.as_str()).unwrap()),
            )
            .await
            .unwrap();
        });
    }

    /// Someone takes an inhibitor (`what` e.g. `idle`, `mode` `block` or `delay`); returns
    /// its id for [`FakeLogind::release`].
    pub fn inhibit(&self, what: &str, who: &str, why: &str, mode: &str) -> u32 {
        let id = {
            let mut st = lock(&self.state);
            st.next_inhibitor += 1;
            let id = st.next_inhibitor;
            st.inhibitors.insert(
                id,
                Inhibitor {
                    what: what.into(),
                    who: who.into(),
                    why: why.into(),
                    mode: mode.into(),
                },
            );
            id
        };
        self.inhibitors_changed();
        id
    }

    /// The inhibitor `id` is released (its fd closed).
    pub fn release(&self, id: u32) {
        lock(&self.state).inhibitors.remove(&id);
        self.inhibitors_changed();
    }

    fn inhibitors_changed(&self) {
        let (block, delay) = {
            let st = lock(&self.state);
            (st.inhibited("block"), st.inhibited("delay"))
        };
        let changed: HashMap<&str, Value<'_>> = [
            ("BlockInhibited", Value::from(block)),
            ("DelayInhibited", Value::from(delay)),
        ]
        .into_iter()
        .collect();
        self.properties_changed(MANAGER_PATH, MANAGER, changed);
    }

    fn properties_changed(&self, path: &str, iface: &str, changed: HashMap<&str, Value<'_>>) {
        let invalidated: Vec<&str> = Vec::new();
        self.rt
            .block_on(self.conn().emit_signal(
                None::<&str>,
                path,
                "org.freedesktop.DBus.Properties",
                "PropertiesChanged",
                &(iface, changed, invalidated),
            ))
            .unwrap();
    }

    /// SIGKILL the bus (logind's connection goes with it).
    pub fn kill_bus(&mut self) {
        let _ = self.bus.kill();
        let _ = self.bus.wait();
    }
}

/// `IdleSinceHint` and `IdleSinceHintMonotonic` for `ago` before now (the monotonic one 0 if
/// the machine has been up for less).
fn since(ago: Duration) -> (u64, u64) {
    let ago = ago.as_micros() as u64;
    (
        realtime_us().saturating_sub(ago),
        monotonic_us().saturating_sub(ago),
    )
}

impl Drop for FakeLogind {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            self.rt.block_on(async move { drop(c) });
        }
        self.kill_bus();
    }
}

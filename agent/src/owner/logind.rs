//! systemd-logind (`org.freedesktop.login1`) as an idle source, event-driven.
//!
//! What is read, from logind's documented D-Bus interface (org.freedesktop.login1(5)):
//!
//! - `Manager.ListSessions() -> a(susso)`, then each session object's properties on
//!   `org.freedesktop.login1.Session`: `Type` (`x11`, `wayland`, `mir` are graphical),
//!   `Class` (`user`; greeters and lock screens are not the owner), `Active`, `IdleHint`,
//!   `IdleSinceHint` (CLOCK_REALTIME, µs) and `IdleSinceHintMonotonic` (CLOCK_MONOTONIC, µs);
//! - the Manager's `BlockInhibited` property (`shutdown:sleep:idle`, a colon-separated list)
//!   and `ListInhibitors() -> a(ssssuu)` (what, who, why, mode, uid, pid);
//! - signals: `PropertiesChanged` of the Manager and of every session object,
//!   `Manager.SessionNew`/`SessionRemoved`, and the bus's `NameOwnerChanged` for
//!   `org.freedesktop.login1` (logind leaving or restarting).
//!
//! The rule: the owner's idle time is the minimum over the graphical user sessions (a session
//! whose `IdleHint` is false is active now; an idle one has been idle since its
//! `IdleSinceHintMonotonic`, else its `IdleSinceHint`); with no such session, nobody is at the
//! PC: idle since the last one ended (or since the source first looked). An idle inhibitor
//! (`BlockInhibited` contains `idle`, or a listed `idle` inhibitor of mode `block`) means the
//! owner is present whatever the idle time (`IdleSource::presence`: `inhibitor 'WHO: WHY'`).
//!
//! A desktop sets `IdleHint` only after its own idle delay (GNOME's 5 minutes by default),
//! so this source sees idleness later than `x11` or `evdev` do; a desktop that never sets it
//! keeps the PC busy (the safe side). Terminal and SSH sessions are the `tty` source's.
//!
//! One tokio task owns the D-Bus connection: it subscribes to the signals first, then reads
//! the state, then applies each signal to the shared view and wakes the agent's loop at once
//! (so an `IdleHint` turning false reaches the owner watch without waiting for a tick). No
//! bus, no logind, or a bus or logind that goes away later: the source is unavailable (the
//! agent goes on) and the task connects again with a backoff of 1 s doubling to 30 s.

use super::source::IdleSource;
use futures_lite::StreamExt;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;
use zbus::message::Type as MsgType;
use zbus::zvariant::{OwnedObjectPath, OwnedValue, Value};
use zbus::{Connection, MatchRule, MessageStream};

const LOGIN1: &str = "org.freedesktop.login1";
const MANAGER_PATH: &str = "/org/freedesktop/login1";
const MANAGER: &str = "org.freedesktop.login1.Manager";
const SESSION: &str = "org.freedesktop.login1.Session";
const PROPERTIES: &str = "org.freedesktop.DBus.Properties";
/// Connecting, and every call to logind, gives up after this.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Reconnect backoff: from the first to the last.
const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);
/// Longest `who` and `why` of an inhibitor kept, in bytes.
const MAX_TEXT: usize = 80;

/// One login session, as far as this source cares.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Session {
    pub(crate) kind: String,
    pub(crate) class: String,
    pub(crate) active: bool,
    pub(crate) idle_hint: bool,
    /// `IdleSinceHint`, µs since the Unix epoch; 0 unknown.
    pub(crate) idle_since_us: u64,
    /// `IdleSinceHintMonotonic`, µs of CLOCK_MONOTONIC; 0 unknown.
    pub(crate) idle_since_mono_us: u64,
    /// When this source saw the session become idle (CLOCK_MONOTONIC, µs), for a hint
    /// without either time.
    pub(crate) seen_idle_mono_us: u64,
}

impl Session {
    /// A graphical session of a user (not a greeter, lock screen or background service).
    pub(crate) fn is_owners(&self) -> bool {
        matches!(self.kind.as_str(), "x11" | "wayland" | "mir") && self.class == "user"
    }

    /// Apply one property (from `GetAll` or `PropertiesChanged`); others are ignored.
    /// `now_mono_us` stamps a session seen turning idle.
    pub(crate) fn apply(&mut self, name: &str, v: &Value<'_>, now_mono_us: u64) {
        match name {
            "Type" => set_str(&mut self.kind, v),
            "Class" => set_str(&mut self.class, v),
            "Active" => set(&mut self.active, v),
            "IdleHint" => {
                let was = self.idle_hint;
                set(&mut self.idle_hint, v);
                if self.idle_hint && !was {
                    self.seen_idle_mono_us = now_mono_us;
                }
            }
            "IdleSinceHint" => set(&mut self.idle_since_us, v),
            "IdleSinceHintMonotonic" => set(&mut self.idle_since_mono_us, v),
            _ => {}
        }
    }

    /// How long this session has been idle: zero while `IdleHint` is false.
    pub(crate) fn idle(&self, now_mono_us: u64, wall_us: u64) -> Duration {
        if !self.idle_hint {
            return Duration::ZERO;
        }
        let us = if self.idle_since_mono_us > 0 {
            now_mono_us.saturating_sub(self.idle_since_mono_us)
        } else if self.idle_since_us > 0 {
            wall_us.saturating_sub(self.idle_since_us)
        } else {
            now_mono_us.saturating_sub(self.seen_idle_mono_us)
        };
        Duration::from_micros(us)
    }
}

fn set<T: for<'a> TryFrom<&'a Value<'a>>>(slot: &mut T, v: &Value<'_>) {
    if let Ok(x) = T::try_from(v) {
        *slot = x;
    }
}

fn set_str(slot: &mut String, v: &Value<'_>) {
    if let Ok(s) = <&str>::try_from(v) {
        *slot = s.to_string();
    }
}

/// An inhibitor from `ListInhibitors`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Inhibitor {
    /// Colon-separated: `idle`, `sleep:idle`, ...
    pub(crate) what: String,
    pub(crate) who: String,
    pub(crate) why: String,
    /// `block` or `delay`.
    pub(crate) mode: String,
}

impl Inhibitor {
    fn blocks_idle(&self) -> bool {
        self.mode == "block" && has_idle(&self.what)
    }
}

fn has_idle(what: &str) -> bool {
    what.split(':').any(|w| w == "idle")
}

/// What logind says now: the pure part of the source (no clock, no I/O).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct View {
    /// Sessions by object path.
    pub(crate) sessions: BTreeMap<String, Session>,
    /// The Manager's `BlockInhibited`.
    pub(crate) block_inhibited: String,
    pub(crate) inhibitors: Vec<Inhibitor>,
    /// Since when no graphical user session exists (CLOCK_MONOTONIC, µs).
    pub(crate) nobody_since_mono_us: u64,
}

impl View {
    /// A session's properties arrived (all of them, or the changed ones).
    pub(crate) fn update_session<'a>(
        &mut self,
        path: &str,
        props: impl IntoIterator<Item = (&'a str, &'a Value<'a>)>,
        now_mono_us: u64,
    ) {
        let s = self.sessions.entry(path.to_string()).or_default();
        for (name, v) in props {
            s.apply(name, v, now_mono_us);
        }
        self.note_nobody(now_mono_us);
    }

    /// Changed properties of a session already known (`PropertiesChanged`); a late signal of
    /// a session already removed does not bring it back.
    pub(crate) fn change_session<'a>(
        &mut self,
        path: &str,
        props: impl IntoIterator<Item = (&'a str, &'a Value<'a>)>,
        now_mono_us: u64,
    ) {
        if let Some(s) = self.sessions.get_mut(path) {
            for (name, v) in props {
                s.apply(name, v, now_mono_us);
            }
            self.note_nobody(now_mono_us);
        }
    }

    /// A session ended.
    pub(crate) fn remove_session(&mut self, path: &str, now_mono_us: u64) {
        self.sessions.remove(path);
        self.note_nobody(now_mono_us);
    }

    /// Keep `nobody_since` at the moment the last owner's session went.
    fn note_nobody(&mut self, now_mono_us: u64) {
        if self.sessions.values().any(Session::is_owners) {
            self.nobody_since_mono_us = 0;
        } else if self.nobody_since_mono_us == 0 {
            self.nobody_since_mono_us = now_mono_us;
        }
    }

    /// `BlockInhibited` changed. Listed idle inhibitors are dropped at once when it no longer
    /// says `idle` (the list is fetched again after).
    pub(crate) fn set_block_inhibited(&mut self, v: &str) {
        self.block_inhibited = v.to_string();
        if !has_idle(v) {
            self.inhibitors.retain(|i| !i.blocks_idle());
        }
    }

    /// The owner's idle time: the minimum over the graphical user sessions, or since the
    /// last of them ended.
    pub(crate) fn idle(&self, now_mono_us: u64, wall_us: u64) -> Duration {
        self.sessions
            .values()
            .filter(|s| s.is_owners())
            .map(|s| s.idle(now_mono_us, wall_us))
            .min()
            .unwrap_or_else(|| {
                Duration::from_micros(now_mono_us.saturating_sub(self.nobody_since_mono_us))
            })
    }

    /// Why the owner is present whatever the idle time: an idle inhibitor, `inhibitor
    /// 'WHO: WHY'` (several: `inhibitors 'A: X', 'B: Y'`).
    pub(crate) fn presence(&self) -> Option<String> {
        let listed: Vec<String> = self
            .inhibitors
            .iter()
            .filter(|i| i.blocks_idle())
            .map(|i| {
                if i.why.is_empty() {
                    i.who.clone()
                } else {
                    format!("{}: {}", i.who, i.why)
                }
            })
            .collect();
        match listed.len() {
            0 if has_idle(&self.block_inhibited) => Some("an idle inhibitor".into()),
            0 => None,
            1 => Some(format!("inhibitor '{}'", listed[0])),
            _ => Some(format!("inhibitors '{}'", listed.join("', '"))),
        }
    }
}

/// What the task last knew.
#[derive(Debug)]
enum Link {
    /// The first connection is being made.
    Connecting,
    /// No bus or no logind, and why (logged by the task; read here by the tests).
    Down(#[cfg_attr(not(test), allow(dead_code))] String),
    Up(View),
}

/// The `logind` idle source: reads the view its task keeps.
pub(crate) struct LogindSource {
    name: String,
    link: Arc<Mutex<Link>>,
    presence: Option<String>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl LogindSource {
    /// Start following logind on `address` (`None`: the system bus), waking `wake` on every
    /// change. Without a tokio runtime the source stays unavailable.
    pub(crate) fn start(address: Option<String>, _started: Instant, wake: Arc<Notify>) -> Self {
        let name = match &address {
            Some(a) => format!("logind:{a}"),
            None => "logind".into(),
        };
        let link = Arc::new(Mutex::new(Link::Connecting));
        let task = match tokio::runtime::Handle::try_current() {
            Ok(h) => Some(h.spawn(follow_forever(address, link.clone(), wake))),
            Err(_) => {
                *lock(&link) = Link::Down("no tokio runtime".into());
                None
            }
        };
        LogindSource {
            name,
            link,
            presence: None,
            task,
        }
    }
}

impl Drop for LogindSource {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

fn lock(m: &Mutex<Link>) -> std::sync::MutexGuard<'_, Link> {
    // The task never panics while holding the lock; a poisoned one still holds a whole value.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// CLOCK_MONOTONIC in µs: the clock of logind's `IdleSinceHintMonotonic`.
fn monotonic_us() -> u64 {
    graze_net::monotonic_ns() / 1000
}

impl IdleSource for LogindSource {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn idle(&mut self, _now: Instant, wall: SystemTime) -> Result<Option<Duration>, String> {
        let link = lock(&self.link);
        let Link::Up(view) = &*link else {
            self.presence = None;
            return Ok(None);
        };
        let wall_us = wall
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        self.presence = view.presence();
        Ok(Some(view.idle(monotonic_us(), wall_us)))
    }

    fn presence(&self) -> Option<String> {
        self.presence.clone()
    }
}

/// Follow logind, reconnecting after every loss.
async fn follow_forever(address: Option<String>, link: Arc<Mutex<Link>>, wake: Arc<Notify>) {
    let mut retry = RETRY_MIN;
    let mut last_error = String::new();
    loop {
        let (error, was_up) = follow(address.as_deref(), &link, &wake).await;
        *lock(&link) = Link::Down(error.clone());
        wake.notify_one();
        if was_up {
            retry = RETRY_MIN;
        }
        if was_up || error != last_error {
            tracing::warn!(error = %error, "logind idle source unavailable; trying again");
            last_error = error;
        }
        tokio::time::sleep(retry).await;
        retry = (retry * 2).min(RETRY_MAX);
    }
}

/// One connection's life: why it ended, and whether logind was followed at all.
async fn follow(address: Option<&str>, link: &Mutex<Link>, wake: &Notify) -> (String, bool) {
    let conn = match tokio::time::timeout(CALL_TIMEOUT, connect(address)).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return (e, false),
        Err(_) => return ("connecting to the bus timed out".into(), false),
    };
    // Subscribe first, so no change falls between reading the state and following it.
    let (mut signals, mut owner) = match subscribe(&conn).await {
        Ok(s) => s,
        Err(e) => return (format!("subscribing to logind's signals: {e}"), false),
    };
    let mut view = View::default();
    if let Err(e) = load(&conn, &mut view).await {
        return (e, false);
    }
    tracing::info!(
        sessions = view.sessions.len(),
        block_inhibited = %view.block_inhibited,
        "following logind"
    );
    *lock(link) = Link::Up(view);
    wake.notify_one();
    loop {
        tokio::select! {
            m = signals.next() => match m {
                Some(Ok(m)) => {
                    on_signal(&conn, link, &m).await;
                    wake.notify_one();
                }
                Some(Err(e)) => return (format!("the bus connection failed: {e}"), true),
                None => return ("the bus closed the connection".into(), true),
            },
            m = owner.next() => match m {
                Some(Ok(m)) => {
                    let gone = m
                        .body()
                        .deserialize::<(String, String, String)>()
                        .is_ok_and(|(_, _, new)| new.is_empty());
                    return (
                        if gone { "logind left the bus" } else { "logind restarted" }.into(),
                        true,
                    );
                }
                Some(Err(e)) => return (format!("the bus connection failed: {e}"), true),
                None => return ("the bus closed the connection".into(), true),
            },
        }
    }
}

async fn connect(address: Option<&str>) -> Result<Connection, String> {
    let builder = match address {
        Some(a) => zbus::connection::Builder::address(a)
            .map_err(|e| format!("bad D-Bus address '{a}': {e}"))?,
        None => zbus::connection::Builder::system()
            .map_err(|e| format!("no system bus address: {e}"))?,
    };
    builder
        .method_timeout(CALL_TIMEOUT)
        .build()
        .await
        .map_err(|e| match address {
            Some(a) => format!("cannot connect to the D-Bus bus at '{a}': {e}"),
            None => format!("cannot connect to the system bus: {e}"),
        })
}

/// Every signal logind sends, and the bus's word when logind's name changes owner.
async fn subscribe(conn: &Connection) -> zbus::Result<(MessageStream, MessageStream)> {
    let signals = MatchRule::builder()
        .msg_type(MsgType::Signal)
        .sender(LOGIN1)?
        .path_namespace(MANAGER_PATH)?
        .build();
    let owner = MatchRule::builder()
        .msg_type(MsgType::Signal)
        .sender("org.freedesktop.DBus")?
        .interface("org.freedesktop.DBus")?
        .member("NameOwnerChanged")?
        .add_arg(LOGIN1)?
        .build();
    Ok((
        MessageStream::for_match_rule(signals, conn, Some(256)).await?,
        MessageStream::for_match_rule(owner, conn, Some(16)).await?,
    ))
}

/// Read the whole state: sessions, their properties, the inhibitors.
async fn load(conn: &Connection, view: &mut View) -> Result<(), String> {
    let sessions: Vec<(String, u32, String, String, OwnedObjectPath)> =
        call(conn, MANAGER_PATH, MANAGER, "ListSessions", &())
            .await
            .map_err(|e| format!("logind ListSessions: {e}"))?;
    let now = monotonic_us();
    view.nobody_since_mono_us = now;
    for (_, _, _, _, path) in sessions {
        let props = session_props(conn, path.as_str()).await?;
        view.update_session(
            path.as_str(),
            props.iter().map(|(k, v)| (k.as_str(), &**v)),
            now,
        );
    }
    view.note_nobody(now);
    refresh_inhibitors(conn, view).await
}

async fn call<B, R>(
    conn: &Connection,
    path: &str,
    iface: &str,
    method: &str,
    body: &B,
) -> Result<R, String>
where
    B: serde::Serialize + zbus::zvariant::DynamicType,
    R: for<'d> serde::Deserialize<'d> + zbus::zvariant::Type,
{
    let reply = conn
        .call_method(Some(LOGIN1), path, Some(iface), method, body)
        .await
        .map_err(|e| e.to_string())?;
    reply.body().deserialize::<R>().map_err(|e| e.to_string())
}

async fn session_props(
    conn: &Connection,
    path: &str,
) -> Result<HashMap<String, OwnedValue>, String> {
    call(conn, path, PROPERTIES, "GetAll", &(SESSION,))
        .await
        .map_err(|e| format!("logind session {path} properties: {e}"))
}

async fn refresh_inhibitors(conn: &Connection, view: &mut View) -> Result<(), String> {
    let block: OwnedValue = call(
        conn,
        MANAGER_PATH,
        PROPERTIES,
        "Get",
        &(MANAGER, "BlockInhibited"),
    )
    .await
    .map_err(|e| format!("logind BlockInhibited: {e}"))?;
    let list: Vec<(String, String, String, String, u32, u32)> =
        call(conn, MANAGER_PATH, MANAGER, "ListInhibitors", &())
            .await
            .map_err(|e| format!("logind ListInhibitors: {e}"))?;
    let clip = |s: String| graze_proto::clip(s, MAX_TEXT, "…");
    view.inhibitors = list
        .into_iter()
        .map(|(what, who, why, mode, _, _)| Inhibitor {
            what,
            who: clip(who),
            why: clip(why),
            mode,
        })
        .collect();
    view.set_block_inhibited(<&str>::try_from(&*block).unwrap_or(""));
    Ok(())
}

/// Apply one of logind's signals to the shared view. Calls back to logind (a new session's
/// properties, the inhibitor list) happen outside the lock; one that fails (the session went
/// meanwhile) is logged and skipped: the connection goes on, and logind itself going away
/// is seen by `NameOwnerChanged`.
async fn on_signal(conn: &Connection, link: &Mutex<Link>, m: &zbus::Message) {
    let hdr = m.header();
    let (Some(path), Some(iface), Some(member)) = (hdr.path(), hdr.interface(), hdr.member())
    else {
        return;
    };
    let now = monotonic_us();
    let with_view = |f: &mut dyn FnMut(&mut View)| {
        if let Link::Up(v) = &mut *lock(link) {
            f(v);
        }
    };
    let props_of = |p: &HashMap<String, OwnedValue>| -> Vec<(String, OwnedValue)> {
        p.iter()
            .filter_map(|(k, v)| Some((k.clone(), v.try_clone().ok()?)))
            .collect()
    };
    match (iface.as_str(), member.as_str()) {
        (PROPERTIES, "PropertiesChanged") => {
            let Ok((on, changed, invalidated)) =
                m.body()
                    .deserialize::<(String, HashMap<String, OwnedValue>, Vec<String>)>()
            else {
                return;
            };
            if on == SESSION {
                let mut props = props_of(&changed);
                if !invalidated.is_empty() {
                    match session_props(conn, path.as_str()).await {
                        Ok(all) => props = props_of(&all),
                        Err(e) => tracing::debug!(error = %e, "logind session changed"),
                    }
                }
                with_view(&mut |v| {
                    v.change_session(
                        path.as_str(),
                        props.iter().map(|(k, x)| (k.as_str(), &**x)),
                        now,
                    );
                });
            } else if on == MANAGER
                && (changed.contains_key("BlockInhibited")
                    || invalidated.iter().any(|p| p == "BlockInhibited"))
            {
                if let Some(b) = changed.get("BlockInhibited") {
                    let b = <&str>::try_from(&**b).unwrap_or("").to_string();
                    with_view(&mut |v| v.set_block_inhibited(&b));
                }
                // Who and why: the list, fetched after the change.
                let mut fresh = View::default();
                match refresh_inhibitors(conn, &mut fresh).await {
                    Ok(()) => with_view(&mut |v| {
                        v.block_inhibited = fresh.block_inhibited.clone();
                        v.inhibitors = fresh.inhibitors.clone();
                    }),
                    Err(e) => tracing::warn!(error = %e, "reading logind's inhibitors"),
                }
            }
        }
        (MANAGER, "SessionNew") => {
            let Ok((_, p)) = m.body().deserialize::<(String, OwnedObjectPath)>() else {
                return;
            };
            match session_props(conn, p.as_str()).await {
                Ok(props) => with_view(&mut |v| {
                    v.update_session(
                        p.as_str(),
                        props.iter().map(|(k, x)| (k.as_str(), &**x)),
                        now,
                    );
                }),
                Err(e) => tracing::debug!(error = %e, "a new logind session"),
            }
        }
        (MANAGER, "SessionRemoved") => {
            if let Ok((_, p)) = m.body().deserialize::<(String, OwnedObjectPath)>() {
                with_view(&mut |v| v.remove_session(p.as_str(), now));
            }
        }
        _ => {}
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000;

    fn session(
        kind: &str,
        class: &str,
        idle: bool,
        since_mono_s: u64,
    ) -> Vec<(&'static str, Value<'static>)> {
        vec![
            ("Type", Value::from(kind.to_string())),
            ("Class", Value::from(class.to_string())),
            ("Active", Value::from(true)),
            ("IdleHint", Value::from(idle)),
            ("IdleSinceHint", Value::from(0u64)),
            ("IdleSinceHintMonotonic", Value::from(since_mono_s * S)),
            ("Remote", Value::from(false)),
        ]
    }

    fn add(v: &mut View, path: &str, props: &[(&'static str, Value<'static>)], now: u64) {
        v.update_session(path, props.iter().map(|(k, x)| (*k, x)), now);
    }

    #[test]
    fn idle_is_the_minimum_over_graphical_user_sessions() {
        let mut v = View::default();
        v.note_nobody(100 * S);
        assert_eq!(
            v.idle(160 * S, 0),
            Duration::from_secs(60),
            "nobody since the start"
        );
        add(
            &mut v,
            "/s/2",
            &session("wayland", "user", true, 1000),
            1000 * S,
        );
        add(
            &mut v,
            "/s/3",
            &session("x11", "user", true, 1100),
            1100 * S,
        );
        // Not the owner's: a text session, a greeter.
        add(&mut v, "/s/4", &session("tty", "user", false, 0), 1100 * S);
        add(
            &mut v,
            "/s/c1",
            &session("x11", "greeter", false, 0),
            1100 * S,
        );
        assert_eq!(v.idle(1200 * S, 0), Duration::from_secs(100));
        // The owner moves the mouse in session 2: IdleHint false, active now.
        let changed = [("IdleHint", Value::from(false))];
        add(&mut v, "/s/2", &changed, 1200 * S);
        assert_eq!(v.idle(1201 * S, 0), Duration::ZERO);
        // Both sessions end: idle since the last one went; a late change brings none back.
        v.remove_session("/s/2", 1300 * S);
        v.change_session("/s/2", changed.iter().map(|(k, x)| (*k, x)), 1301 * S);
        assert!(!v.sessions.contains_key("/s/2"));
        assert_eq!(v.nobody_since_mono_us, 0, "session 3 is still there");
        v.remove_session("/s/3", 1400 * S);
        assert_eq!(v.idle(1430 * S, 0), Duration::from_secs(30));
    }

    #[test]
    fn idle_since_falls_back_to_realtime_then_to_when_seen() {
        let mut s = Session {
            kind: "x11".into(),
            class: "user".into(),
            ..Session::default()
        };
        s.apply("IdleHint", &Value::from(true), 50 * S);
        assert_eq!(s.seen_idle_mono_us, 50 * S);
        assert_eq!(s.idle(80 * S, 0), Duration::from_secs(30), "when seen");
        s.apply("IdleSinceHint", &Value::from(1_700_000_000 * S), 0);
        assert_eq!(
            s.idle(80 * S, 1_700_000_045 * S),
            Duration::from_secs(45),
            "realtime"
        );
        s.apply("IdleSinceHintMonotonic", &Value::from(70 * S), 0);
        assert_eq!(s.idle(80 * S, 1_700_000_045 * S), Duration::from_secs(10));
        // A wrongly typed value is ignored.
        s.apply("IdleHint", &Value::from("yes"), 0);
        assert!(s.idle_hint);
    }

    #[test]
    fn idle_inhibitors_are_presence() {
        let mut v = View::default();
        assert_eq!(v.presence(), None);
        v.set_block_inhibited("shutdown:sleep");
        v.inhibitors = vec![Inhibitor {
            what: "sleep".into(),
            who: "NetworkManager".into(),
            why: "".into(),
            mode: "delay".into(),
        }];
        assert_eq!(v.presence(), None, "not idle, not block");
        v.set_block_inhibited("sleep:idle");
        assert_eq!(
            v.presence().unwrap(),
            "an idle inhibitor",
            "list not read yet"
        );
        v.inhibitors.push(Inhibitor {
            what: "idle".into(),
            who: "mpv".into(),
            why: "playing video".into(),
            mode: "block".into(),
        });
        assert_eq!(v.presence().unwrap(), "inhibitor 'mpv: playing video'");
        v.inhibitors.push(Inhibitor {
            what: "sleep:idle".into(),
            who: "GNOME Shell".into(),
            why: "presentation".into(),
            mode: "block".into(),
        });
        assert_eq!(
            v.presence().unwrap(),
            "inhibitors 'mpv: playing video', 'GNOME Shell: presentation'"
        );
        // Released: presence ends with BlockInhibited, before the list is read again.
        v.set_block_inhibited("sleep");
        assert_eq!(v.presence(), None);
        assert_eq!(v.inhibitors.len(), 1);
    }

    #[tokio::test]
    async fn no_bus_is_unavailable_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let addr = format!("unix:path={}", dir.path().join("none").display());
        let wake = Arc::new(Notify::new());
        let mut src = LogindSource::start(Some(addr.clone()), Instant::now(), wake.clone());
        assert_eq!(src.name(), format!("logind:{addr}"));
        tokio::time::timeout(Duration::from_secs(10), wake.notified())
            .await
            .unwrap();
        assert_eq!(src.idle(Instant::now(), SystemTime::now()).unwrap(), None);
        assert!(matches!(&*lock(&src.link), Link::Down(e) if e.contains("cannot connect")));
    }
}

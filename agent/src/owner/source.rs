//! The idle-source trait every owner source implements (a leaf: the sources and the
//! owner watch both use it).

use std::time::{Duration, Instant, SystemTime};

/// Below this idle time the owner counts as active (rather than idle but waiting).
pub(crate) const OWNER_ACTIVE: Duration = Duration::from_secs(2);

/// Something that knows how long the owner has been idle. Real keyboard, mouse and terminal
/// sources implement this too.
pub(crate) trait IdleSource: Send {
    /// Name shown in the node status, e.g. `file:/tmp/x`.
    fn name(&self) -> String;
    /// Time since the owner's last input; `Ok(None)` when there is nothing to watch on this
    /// PC now (no X display, no input device, nobody logged in on a terminal): the source
    /// is skipped. An error means the source is broken: the owner counts as active.
    fn idle(&mut self, now: Instant, wall: SystemTime) -> Result<Option<Duration>, String>;
    /// Why the owner counts as present whatever the idle time, e.g. `inhibitor 'mpv:
    /// playing video'` (an idle inhibitor); asked only of a source whose `idle` just
    /// answered `Ok(Some(_))`. Most sources know no such thing.
    fn presence(&self) -> Option<String> {
        None
    }
}

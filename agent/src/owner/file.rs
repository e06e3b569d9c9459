//! The simple idle sources: a file's modification time, and always idle.

use super::source::{IdleSource, OWNER_ACTIVE};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

/// Idle time from a file's modification time: `touch FILE` means "the owner is here".
#[derive(Debug)]
pub(crate) struct FileSource {
    pub(crate) path: PathBuf,
}

impl IdleSource for FileSource {
    fn name(&self) -> String {
        format!("file:{}", self.path.display())
    }

    fn idle(&mut self, _now: Instant, wall: SystemTime) -> Result<Option<Duration>, String> {
        let meta = std::fs::metadata(&self.path)
            .map_err(|e| format!("cannot read '{}': {e}", self.path.display()))?;
        let mtime = meta
            .modified()
            .map_err(|e| format!("no modification time for '{}': {e}", self.path.display()))?;
        // A modification time in the future counts as "now".
        Ok(Some(wall.duration_since(mtime).unwrap_or(Duration::ZERO)))
    }
}

/// Always idle, since the agent started (and never less than [`OWNER_ACTIVE`]).
#[derive(Debug)]
pub(crate) struct AlwaysIdle {
    pub(crate) since: Instant,
}

impl IdleSource for AlwaysIdle {
    fn name(&self) -> String {
        "always-idle".into()
    }

    fn idle(&mut self, now: Instant, _wall: SystemTime) -> Result<Option<Duration>, String> {
        // Never "owner active", not even in the first seconds: there is no owner.
        Ok(Some(
            now.saturating_duration_since(self.since).max(OWNER_ACTIVE),
        ))
    }
}

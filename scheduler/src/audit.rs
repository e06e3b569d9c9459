//! The audit trail: every submit, cancel, drain and refused connection, with who and why.
//!
//! Each record goes to tracing (target `audit`) and, as one line, to the append-only
//! `STATE/audit.log`: `TIME who=NAME role=ROLE action=ACTION result=ok|refused [k=v]... reason`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// File name of the audit log in the state directory.
pub const AUDIT_FILE: &str = "audit.log";

/// Outcome of an audited action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Done.
    Ok,
    /// Refused.
    Refused,
}

/// Appends audit records. Cheap to clone; writes are whole lines on an `O_APPEND` file.
#[derive(Clone, Debug)]
pub struct Audit {
    file: Option<Arc<std::fs::File>>,
    path: PathBuf,
}

impl Audit {
    /// Open (or create) `STATE/audit.log`, owner-readable only.
    pub fn open(state_dir: &Path) -> std::io::Result<Audit> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = state_dir.join(AUDIT_FILE);
        let f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&path)?;
        Ok(Audit {
            file: Some(Arc::new(f)),
            path,
        })
    }

    /// Record one action. `who` is the identity name (or `-` when unknown), `role` its role,
    /// `fields` extra `key=value` pairs, `reason` free text (quoted).
    pub fn record(
        &self,
        who: &str,
        role: &str,
        action: &str,
        outcome: Outcome,
        fields: &[(&str, String)],
        reason: &str,
    ) {
        let result = match outcome {
            Outcome::Ok => "ok",
            Outcome::Refused => "refused",
        };
        let extra: String = fields.iter().map(|(k, v)| format!(" {k}={v}")).collect();
        match outcome {
            Outcome::Ok => {
                tracing::info!(target: "audit", who, role, action, result, fields = %extra.trim(), reason)
            }
            Outcome::Refused => {
                tracing::warn!(target: "audit", who, role, action, result, fields = %extra.trim(), reason)
            }
        }
        let Some(f) = &self.file else {
            return;
        };
        let line = format!(
            "{} who={} role={} action={action} result={result}{extra} reason={:?}\n",
            humantime::format_rfc3339_millis(std::time::SystemTime::now()),
            clean(who),
            clean(role),
            reason
        );
        if let Err(e) = (&**f).write_all(line.as_bytes()) {
            tracing::error!(path = %self.path.display(), error = %e, "cannot write the audit log");
        }
    }
}

/// Names come from the token store, but keep a line one line whatever they hold.
fn clean(s: &str) -> String {
    if s.is_empty() {
        return "-".into();
    }
    s.chars()
        .map(|c| {
            if c.is_whitespace() || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn appends_lines() {
        let dir = tempfile::tempdir().unwrap();
        let a = Audit::open(dir.path()).unwrap();
        a.record(
            "alice",
            "user",
            "submit",
            Outcome::Ok,
            &[("job", "3".into())],
            "",
        );
        let b = Audit::open(dir.path()).unwrap();
        b.record(
            "bad name\n",
            "user",
            "cancel",
            Outcome::Refused,
            &[("job", "4".into())],
            "job 4 belongs to 'bob'",
        );
        let text = std::fs::read_to_string(dir.path().join(AUDIT_FILE)).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(
            lines[0].contains("who=alice role=user action=submit result=ok job=3"),
            "{text}"
        );
        assert!(
            lines[1].contains(
                "who=bad_name_ role=user action=cancel result=refused job=4 reason=\"job 4 belongs to 'bob'\""
            ),
            "{text}"
        );
    }
}

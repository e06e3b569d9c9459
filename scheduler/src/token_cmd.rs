//! `graze-scheduler token create|revoke|list`: token management on the head node.

use crate::auth::{TokenRole, TokenStore};
use crate::config::TokenCommand;
use anyhow::{Context, Result};
use graze_net::Access;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Run a token command against `state_dir`; returns what to print on stdout.
pub fn run(cmd: &TokenCommand, state_dir: &Path) -> Result<String> {
    let store = TokenStore::new(state_dir);
    match cmd {
        TokenCommand::Create { role, name, node } => {
            let access_path = state_dir.join("access.toml");
            let base = Access::load(&access_path).with_context(|| {
                format!(
                    "reading the scheduler's address and fingerprint from {} (start graze-scheduler with this state directory once first)",
                    access_path.display()
                )
            })?;
            if !store.path().exists() {
                // A state dir from before roles: its access.toml token is the admin token.
                store.bootstrap(&base.token, now_ms())?;
            }
            let token = store.create(name, *role, node.as_deref(), now_ms())?;
            let access = Access { token, ..base };
            let body = toml::to_string(&access).context("formatting the access file")?;
            Ok(format!(
                "# graze access file for '{name}' (role {role}). Whoever holds it acts as '{name}':\n\
                 # keep it private (chmod 600). Revoke with `graze-scheduler token revoke {name}`.\n{body}"
            ))
        }
        TokenCommand::Revoke { name } => {
            let gone = store.revoke(name)?;
            Ok(format!(
                "revoked token '{}' (role {}); its next connection is refused\n",
                gone.name, gone.role
            ))
        }
        TokenCommand::List => {
            let mut out = String::new();
            let rows: Vec<(String, TokenRole, String, String)> = store
                .list()?
                .into_iter()
                .map(|t| {
                    let created = humantime::format_rfc3339_seconds(
                        UNIX_EPOCH + std::time::Duration::from_millis(t.created_ms),
                    )
                    .to_string();
                    (
                        t.name,
                        t.role,
                        created,
                        t.node.unwrap_or_else(|| "-".into()),
                    )
                })
                .collect();
            let w = rows.iter().map(|r| r.0.len()).max().unwrap_or(4).max(4);
            let nw = rows.iter().map(|r| r.3.len()).max().unwrap_or(4).max(4);
            out.push_str(&format!(
                "{:<w$}  {:<5}  {:<nw$}  CREATED\n",
                "NAME", "ROLE", "NODE"
            ));
            for (n, r, c, node) in rows {
                out.push_str(&format!(
                    "{n:<w$}  {:<5}  {node:<nw$}  {c}\n",
                    r.to_string()
                ));
            }
            Ok(out)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn create_prints_a_working_access_file() {
        let dir = tempfile::tempdir().unwrap();
        let base = Access {
            scheduler: "127.0.0.1:7700".into(),
            fingerprint: graze_net::fingerprint(b"c"),
            token: "boot".into(),
        };
        base.save(&dir.path().join("access.toml")).unwrap();
        let text = run(
            &TokenCommand::Create {
                role: TokenRole::User,
                name: "alice".into(),
                node: None,
            },
            dir.path(),
        )
        .unwrap();
        let p = dir.path().join("alice.toml");
        std::fs::write(&p, &text).unwrap();
        let a = Access::load(&p).unwrap();
        assert_eq!(a.scheduler, base.scheduler);
        assert_eq!(a.fingerprint, base.fingerprint);
        let store = TokenStore::new(dir.path());
        assert_eq!(store.lookup(&a.token).unwrap().unwrap().name, "alice");
        // The old single token became the admin.
        assert_eq!(
            store.lookup("boot").unwrap().unwrap().role,
            TokenRole::Admin
        );
        let list = run(&TokenCommand::List, dir.path()).unwrap();
        assert!(list.contains("alice  user"), "{list}");
        let r = run(
            &TokenCommand::Revoke {
                name: "alice".into(),
            },
            dir.path(),
        )
        .unwrap();
        assert!(r.contains("revoked token 'alice'"), "{r}");
        assert!(store.lookup(&a.token).unwrap().is_none());
    }

    #[test]
    fn create_without_a_scheduler_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let e = run(
            &TokenCommand::Create {
                role: TokenRole::User,
                name: "a".into(),
                node: None,
            },
            dir.path(),
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("start graze-scheduler"), "{e:#}");
    }
}

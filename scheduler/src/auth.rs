//! Who may do what: tokens with a role, stored hashed in `STATE/tokens.toml`, and the checks
//! the driver applies to every connection and request.
//!
//! Roles:
//! - `agent` may register a node and run work; nothing else.
//! - `user` may submit, and see and cancel its own jobs; it may list nodes.
//! - `admin` may do everything, including draining nodes and registering agents.
//!
//! The store keeps the SHA-256 of each token, never the token. It is a small TOML file,
//! replaced atomically on every change and read again on every connection, so a revoked token
//! is refused on its next connection without restarting the scheduler.

use graze_proto::Role;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// File name of the token store in the state directory.
pub const TOKENS_FILE: &str = "tokens.toml";

/// Name of the bootstrap admin identity, whose token is the one in `STATE/access.toml`.
pub const BOOTSTRAP_NAME: &str = "admin";

/// What a token may do.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum TokenRole {
    /// Register a node and run work.
    Agent,
    /// Submit, see and cancel its own jobs.
    User,
    /// Everything.
    Admin,
}

impl fmt::Display for TokenRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TokenRole::Agent => "agent",
            TokenRole::User => "user",
            TokenRole::Admin => "admin",
        })
    }
}

/// The identity a token stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// Name, unique in the store; recorded as the submitter of its jobs.
    pub name: String,
    /// Role.
    pub role: TokenRole,
    /// Agent tokens bound to a node: the one node name this token may register.
    pub node: Option<String>,
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.role)
    }
}

/// One stored token.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// Identity name.
    pub name: String,
    /// Role.
    pub role: TokenRole,
    /// `sha256:HEX` of the token.
    pub sha256: String,
    /// Creation time, ms since the Unix epoch.
    #[serde(default)]
    pub created_ms: u64,
    /// Agent tokens only: the one node name this token may register (`None`: any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

#[derive(Serialize, Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    #[serde(default, rename = "token")]
    tokens: Vec<TokenEntry>,
}

/// Errors of the token store. None is retryable until the cause is fixed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The store could not be read or written.
    #[error("token store {path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The store is not valid TOML of the expected shape.
    #[error("token store {path} is invalid: {msg}")]
    Invalid {
        /// File.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// A bad identity name.
    #[error("invalid token name '{0}': use 1 to 64 letters, digits, '-', '_' or '.'")]
    BadName(String),
    /// `--node` given for a token that is not an agent's.
    #[error("--node binds an agent token to its node; a {0} token registers no node")]
    NodeNotAgent(TokenRole),
    /// A bad node name.
    #[error("invalid node name '{0}': use 1 to 64 letters, digits, '-', '_' or '.'")]
    BadNode(String),
    /// The name is taken.
    #[error("a token named '{0}' already exists: revoke it first or choose another name")]
    Exists(String),
    /// No such token.
    #[error("no token named '{name}' (known: {known})")]
    Unknown {
        /// The name asked for.
        name: String,
        /// The names there are.
        known: String,
    },
}

/// The token store of a state directory.
#[derive(Clone, Debug)]
pub struct TokenStore {
    path: PathBuf,
    /// The file as last read, with what `stat` said of it then: a lookup whose `stat` still
    /// says the same uses it instead of reading and parsing the file again. Every write
    /// replaces the file (a new inode), and an edit in place changes its times.
    cache: Arc<Mutex<Option<Parsed>>>,
}

/// One version of the store file, parsed.
type Parsed = (FileStamp, Arc<TokenFile>);

/// What identifies one version of the store file: device, inode, size, modification and
/// change times (ns).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileStamp([i64; 7]);

impl FileStamp {
    fn of(m: &std::fs::Metadata) -> FileStamp {
        use std::os::unix::fs::MetadataExt;
        #[allow(clippy::cast_possible_wrap)]
        FileStamp([
            m.dev() as i64,
            m.ino() as i64,
            m.size() as i64,
            m.mtime(),
            m.mtime_nsec(),
            m.ctime(),
            m.ctime_nsec(),
        ])
    }
}

impl TokenStore {
    /// The store in `state_dir` (nothing is read yet).
    pub fn new(state_dir: &Path) -> TokenStore {
        TokenStore {
            path: state_dir.join(TOKENS_FILE),
            cache: Arc::default(),
        }
    }

    /// Path of the store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read(&self) -> Result<TokenFile, AuthError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(TokenFile::default()),
            Err(source) => {
                return Err(AuthError::Io {
                    path: self.path.clone(),
                    source,
                })
            }
        };
        toml::from_str(&text).map_err(|e| AuthError::Invalid {
            path: self.path.clone(),
            msg: e.to_string(),
        })
    }

    fn write(&self, f: &TokenFile) -> Result<(), AuthError> {
        let body = format!(
            "# graze token store: SHA-256 of each token and the identity it stands for.\n\
             # Manage it with `graze-scheduler token create|revoke|list`.\n{}",
            toml::to_string(f).map_err(|e| AuthError::Invalid {
                path: self.path.clone(),
                msg: e.to_string(),
            })?
        );
        write_atomic(&self.path, body.as_bytes()).map_err(|source| AuthError::Io {
            path: self.path.clone(),
            source,
        })
    }

    /// On first start (no store yet), record `admin_token` as the bootstrap admin. An existing
    /// store is left alone, so a revoked bootstrap token stays revoked.
    pub fn bootstrap(&self, admin_token: &str, now_ms: u64) -> Result<bool, AuthError> {
        if self.path.exists() {
            return Ok(false);
        }
        self.write(&TokenFile {
            tokens: vec![TokenEntry {
                name: BOOTSTRAP_NAME.into(),
                role: TokenRole::Admin,
                sha256: graze_net::token_hash(admin_token),
                created_ms: now_ms,
                node: None,
            }],
        })?;
        Ok(true)
    }

    /// The store as it is on disk now: the cached parse while `stat` says the file is the
    /// one read last, else read and parsed afresh.
    fn read_current(&self) -> Result<Arc<TokenFile>, AuthError> {
        let stamp = match std::fs::metadata(&self.path) {
            Ok(m) => Some(FileStamp::of(&m)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(AuthError::Io {
                    path: self.path.clone(),
                    source,
                })
            }
        };
        let mut guard = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let (Some(stamp), Some((was, f))) = (stamp, guard.as_ref()) {
            if *was == stamp {
                return Ok(f.clone());
            }
        }
        *guard = None;
        let f = Arc::new(self.read()?);
        // Cache only what the stamp taken before the read still describes after it: a file
        // replaced in between is read again next time.
        if let Some(stamp) = stamp {
            if std::fs::metadata(&self.path).is_ok_and(|m| FileStamp::of(&m) == stamp) {
                *guard = Some((stamp, f.clone()));
            }
        }
        Ok(f)
    }

    /// The identity of `token`, as the store is on disk now (a change, such as a revoke, is
    /// seen by the next lookup); `None` for an unknown token.
    pub fn lookup(&self, token: &str) -> Result<Option<Identity>, AuthError> {
        let hash = graze_net::token_hash(token);
        let f = self.read_current()?;
        // Compare every entry without an early exit on the hash.
        let mut found = None;
        for t in &f.tokens {
            if graze_net::token_eq(&t.sha256, &hash) && found.is_none() {
                found = Some(Identity {
                    name: t.name.clone(),
                    role: t.role,
                    node: t.node.clone(),
                });
            }
        }
        Ok(found)
    }

    /// Create a token for a new identity; returns the token (shown once, stored hashed).
    /// `node` binds an agent token to the one node name it may register.
    pub fn create(
        &self,
        name: &str,
        role: TokenRole,
        node: Option<&str>,
        now_ms: u64,
    ) -> Result<String, AuthError> {
        check_name(name)?;
        if let Some(n) = node {
            if role != TokenRole::Agent {
                return Err(AuthError::NodeNotAgent(role));
            }
            if n.is_empty()
                || n.len() > 64
                || !n
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                return Err(AuthError::BadNode(n.into()));
            }
        }
        let mut f = self.read()?;
        if f.tokens.iter().any(|t| t.name == name) {
            return Err(AuthError::Exists(name.into()));
        }
        let token = graze_net::random_token();
        f.tokens.push(TokenEntry {
            name: name.into(),
            role,
            sha256: graze_net::token_hash(&token),
            created_ms: now_ms,
            node: node.map(str::to_owned),
        });
        self.write(&f)?;
        Ok(token)
    }

    /// Revoke the token of `name`.
    pub fn revoke(&self, name: &str) -> Result<TokenEntry, AuthError> {
        let mut f = self.read()?;
        let Some(i) = f.tokens.iter().position(|t| t.name == name) else {
            let known: Vec<&str> = f.tokens.iter().map(|t| t.name.as_str()).collect();
            return Err(AuthError::Unknown {
                name: name.into(),
                known: if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                },
            });
        };
        let gone = f.tokens.remove(i);
        self.write(&f)?;
        Ok(gone)
    }

    /// Every stored token (hashes only).
    pub fn list(&self) -> Result<Vec<TokenEntry>, AuthError> {
        Ok(self.read()?.tokens)
    }
}

fn check_name(name: &str) -> Result<(), AuthError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(AuthError::BadName(name.into()))
    }
}

/// Write `bytes` to `path` through a temp file and a rename, readable by the owner only.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// May `who` open a connection saying it is a `hello_role` peer?
pub fn may_connect(who: &Identity, hello_role: Role) -> Result<(), String> {
    match (hello_role, who.role) {
        (Role::Agent, TokenRole::Agent | TokenRole::Admin) => Ok(()),
        (Role::Client, TokenRole::User | TokenRole::Admin) => Ok(()),
        (Role::Agent, TokenRole::User) => Err(format!(
            "token '{}' has role user: it cannot register an agent (create an agent token with `graze-scheduler token create --role agent`)",
            who.name
        )),
        (Role::Client, TokenRole::Agent) => Err(format!(
            "token '{}' has role agent: it may only register a node, not submit or query jobs",
            who.name
        )),
    }
}

/// May `who` see or cancel a job submitted by `owner`?
pub fn may_touch_job(who: &Identity, owner: &str) -> bool {
    who.role == TokenRole::Admin || who.name == owner
}

/// May `who` drain and undrain nodes?
pub fn may_drain(who: &Identity) -> bool {
    who.role == TokenRole::Admin
}

/// Whether `who` may register a node named `node`: a token bound to a node registers that node
/// only, so one PC's access file cannot impersonate another PC.
pub fn may_register(who: &Identity, node: &str) -> Result<(), String> {
    match &who.node {
        Some(bound) if bound != node => Err(format!(
            "token '{}' may register only node '{bound}', not '{node}'",
            who.name
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn id(name: &str, role: TokenRole) -> Identity {
        Identity {
            name: name.into(),
            role,
            node: None,
        }
    }

    #[test]
    fn create_lookup_revoke() {
        let dir = tempfile::tempdir().unwrap();
        let s = TokenStore::new(dir.path());
        assert!(s.bootstrap("boot", 1).unwrap());
        assert!(!s.bootstrap("other", 2).unwrap(), "bootstrap runs once");
        assert_eq!(
            s.lookup("boot").unwrap(),
            Some(id(BOOTSTRAP_NAME, TokenRole::Admin))
        );
        assert_eq!(s.lookup("other").unwrap(), None);
        let t = s.create("alice", TokenRole::User, None, 3).unwrap();
        assert_eq!(s.lookup(&t).unwrap(), Some(id("alice", TokenRole::User)));
        // Only the hash is stored.
        let text = std::fs::read_to_string(s.path()).unwrap();
        assert!(!text.contains(&t), "{text}");
        assert!(text.contains(&graze_net::token_hash(&t)), "{text}");
        let e = s.create("alice", TokenRole::Admin, None, 4).unwrap_err();
        assert!(e.to_string().contains("already exists"), "{e}");
        let e = s.create("a b", TokenRole::User, None, 4).unwrap_err();
        assert!(e.to_string().contains("invalid token name 'a b'"), "{e}");
        // Node binding: agent tokens only, a valid node name, kept in the store.
        let e = s
            .create("bob", TokenRole::User, Some("pc1"), 4)
            .unwrap_err();
        assert!(
            e.to_string().contains("a user token registers no node"),
            "{e}"
        );
        let e = s
            .create("pc1", TokenRole::Agent, Some("pc 1"), 4)
            .unwrap_err();
        assert!(e.to_string().contains("invalid node name 'pc 1'"), "{e}");
        let pc = s
            .create("pc1", TokenRole::Agent, Some("pc1.lab"), 4)
            .unwrap();
        assert_eq!(
            s.lookup(&pc).unwrap(),
            Some(Identity {
                name: "pc1".into(),
                role: TokenRole::Agent,
                node: Some("pc1.lab".into()),
            })
        );
        s.revoke("pc1").unwrap();
        s.revoke("alice").unwrap();
        assert_eq!(s.lookup(&t).unwrap(), None);
        let e = s.revoke("alice").unwrap_err().to_string();
        assert!(e.contains("no token named 'alice' (known: admin)"), "{e}");
        assert_eq!(s.list().unwrap().len(), 1);
    }

    #[test]
    fn broken_store_is_an_error_not_an_open_door() {
        let dir = tempfile::tempdir().unwrap();
        let s = TokenStore::new(dir.path());
        std::fs::write(s.path(), "token = 3").unwrap();
        let e = s.lookup("x").unwrap_err().to_string();
        assert!(e.contains("is invalid"), "{e}");
    }

    #[test]
    fn roles() {
        let agent = id("pc1", TokenRole::Agent);
        let user = id("alice", TokenRole::User);
        let admin = id("root", TokenRole::Admin);
        assert!(may_connect(&agent, Role::Agent).is_ok());
        assert!(may_connect(&admin, Role::Agent).is_ok());
        assert!(may_connect(&admin, Role::Client).is_ok());
        assert!(may_connect(&user, Role::Client).is_ok());
        let e = may_connect(&user, Role::Agent).unwrap_err();
        assert!(e.contains("cannot register an agent"), "{e}");
        let e = may_connect(&agent, Role::Client).unwrap_err();
        assert!(e.contains("role agent"), "{e}");
        assert!(may_touch_job(&user, "alice"));
        assert!(!may_touch_job(&user, "bob"));
        assert!(may_touch_job(&admin, "bob"));
        assert!(!may_drain(&user) && !may_drain(&agent) && may_drain(&admin));
        assert!(may_register(&agent, "anything").is_ok());
        let bound = Identity {
            node: Some("pc7".into()),
            ..agent.clone()
        };
        assert!(may_register(&bound, "pc7").is_ok());
        let e = may_register(&bound, "pc8").unwrap_err();
        assert!(e.contains("may register only node 'pc7', not 'pc8'"), "{e}");
    }
}

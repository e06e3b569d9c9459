//! The shim secret of a job, compared in constant time.

use std::fmt;

/// A job's launcher-shim secret. Equality takes the same time wherever the strings differ,
/// so a shim guessing it learns nothing from how fast it is refused; `Debug` never prints it.
#[derive(Clone, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret.
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The secret itself, to send it to the job's main node or persist it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `offered` (e.g. what a shim sent) is this secret, in constant time.
    pub fn matches(&self, offered: &str) -> bool {
        ct_eq(self.0.as_bytes(), offered.as_bytes())
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Secret {
        Secret(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Secret {
        Secret(s.to_string())
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Secret) -> bool {
        self.matches(&other.0)
    }
}

/// Byte strings equal, looking at every byte of the longer one whatever differs first.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    diff == 0
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::Secret;

    #[test]
    fn equal_only_when_every_byte_is() {
        assert_eq!(Secret::new("abc"), Secret::new("abc"));
        assert_ne!(Secret::new("abc"), Secret::new("abd"));
        assert_ne!(Secret::new("abc"), Secret::new("ab"));
        assert_ne!(Secret::new(""), Secret::new("a"));
        assert!(Secret::new("abc").matches("abc"));
        assert!(!Secret::new("abc").matches("abcd"));
        assert_eq!(format!("{:?}", Secret::new("abc")), "Secret(..)");
    }
}

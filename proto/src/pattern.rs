//! Output file patterns (`graze submit --stdout PATTERN --stderr PATTERN`): one parser, used by
//! the CLI and the scheduler to refuse a bad pattern at submit, and one expander, used by the
//! agent's output writer.
//!
//! | token | expands to |
//! |-------|------------|
//! | `%j`  | the job id |
//! | `%r`  | the rank (lines without a rank: `0`) |
//! | `%a`  | the array index (`0` for a job that is not an array task) |
//! | `%A`  | the array's job id (the job's own id for a job that is not an array task) |
//! | `%n`  | the attempt: the run number, 1 for the first run, +1 per requeue |
//! | `%%`  | a literal `%` |
//!
//! Refused: an empty pattern, an unknown `%x`, a trailing lone `%`, a NUL byte, a pattern
//! naming a directory (ending in `/`, or a last component `.` or `..`), and one longer than
//! [`MAX_PATTERN`] bytes. Absolute paths and `..` are allowed: the files are opened with the job
//! user's own rights (see the agent's `jobs/outfiles.rs`), so a pattern reaches only what the
//! user could write anyway.

use std::fmt;

/// Longest pattern accepted, in bytes.
pub const MAX_PATTERN: usize = 1024;

/// A parsed output file pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern {
    parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Text(String),
    Job,
    Rank,
    ArrayIndex,
    ArrayJob,
    Attempt,
}

/// What a pattern's tokens expand to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PatternValues {
    /// `%j`.
    pub job: u64,
    /// `%r`.
    pub rank: u32,
    /// `%a`.
    pub array_index: u64,
    /// `%A`.
    pub array_job: u64,
    /// `%n`.
    pub attempt: u64,
}

/// Why a pattern was refused. The message quotes the pattern.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid output pattern '{pattern}': {why}")]
pub struct PatternError {
    /// The pattern as given (cut to a readable length).
    pub pattern: String,
    /// Why.
    pub why: String,
}

impl Pattern {
    /// Parse `s`, refusing what the module documentation lists.
    pub fn parse(s: &str) -> Result<Pattern, PatternError> {
        let err = |why: String| PatternError {
            pattern: crate::text::clip(s.to_string(), 200, "..."),
            why,
        };
        if s.is_empty() {
            return Err(err("the pattern is empty".into()));
        }
        if s.len() > MAX_PATTERN {
            return Err(err(format!(
                "{} bytes, longer than the limit of {MAX_PATTERN}",
                s.len()
            )));
        }
        if s.contains('\0') {
            return Err(err("it contains a NUL byte".into()));
        }
        let last = s.rsplit('/').next().unwrap_or("");
        if last.is_empty() || last == "." || last == ".." {
            return Err(err("it names a directory, not a file".into()));
        }
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                text.push(c);
                continue;
            }
            let part = match chars.next() {
                Some('%') => {
                    text.push('%');
                    continue;
                }
                Some('j') => Part::Job,
                Some('r') => Part::Rank,
                Some('a') => Part::ArrayIndex,
                Some('A') => Part::ArrayJob,
                Some('n') => Part::Attempt,
                Some(x) => {
                    return Err(err(format!(
                        "unknown '%{x}' (known: %j job, %r rank, %a array index, \
                         %A array job, %n attempt, %% a literal %)"
                    )))
                }
                None => {
                    return Err(err(
                        "it ends in a lone '%' (write '%%' for a literal %)".into()
                    ))
                }
            };
            if !text.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut text)));
            }
            parts.push(part);
        }
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        Ok(Pattern { parts })
    }

    /// True if the pattern has `%r`: each rank gets its own file.
    pub fn has_rank(&self) -> bool {
        self.parts.contains(&Part::Rank)
    }

    /// True if the pattern has `%n`: each attempt gets its own file.
    pub fn has_attempt(&self) -> bool {
        self.parts.contains(&Part::Attempt)
    }

    /// The file name for `v`. Never fails: every token has a value.
    pub fn expand(&self, v: &PatternValues) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Job => out.push_str(&v.job.to_string()),
                Part::Rank => out.push_str(&v.rank.to_string()),
                Part::ArrayIndex => out.push_str(&v.array_index.to_string()),
                Part::ArrayJob => out.push_str(&v.array_job.to_string()),
                Part::Attempt => out.push_str(&v.attempt.to_string()),
            }
        }
        out
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.parts {
            match p {
                Part::Text(t) => f.write_str(&t.replace('%', "%%"))?,
                Part::Job => f.write_str("%j")?,
                Part::Rank => f.write_str("%r")?,
                Part::ArrayIndex => f.write_str("%a")?,
                Part::ArrayJob => f.write_str("%A")?,
                Part::Attempt => f.write_str("%n")?,
            }
        }
        Ok(())
    }
}

/// The name an earlier attempt's file is renamed to before attempt `attempt` writes `path`
/// (a pattern without `%n`): `out-7-0.txt` becomes `out-7-0.attempt1.txt` before attempt 2.
/// The suffix goes before the last extension of the file name (none: at the end).
pub fn attempt_aside(path: &str, attempt: u64) -> String {
    let earlier = attempt.saturating_sub(1).max(1);
    let (dir, name) = match path.rfind('/') {
        Some(i) => path.split_at(i + 1),
        None => ("", path),
    };
    match name.rfind('.') {
        Some(i) if i > 0 => format!("{dir}{}.attempt{earlier}{}", &name[..i], &name[i..]),
        _ => format!("{dir}{name}.attempt{earlier}"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v() -> PatternValues {
        PatternValues {
            job: 7,
            rank: 3,
            array_index: 5,
            array_job: 6,
            attempt: 2,
        }
    }

    #[test]
    fn expands_every_token() {
        let p = Pattern::parse("out-%j-%r-%a-%A-%n-100%%.txt").unwrap();
        assert_eq!(p.expand(&v()), "out-7-3-5-6-2-100%.txt");
        assert!(p.has_rank() && p.has_attempt());
        let p = Pattern::parse("logs/%j.out").unwrap();
        assert_eq!(p.expand(&v()), "logs/7.out");
        assert!(!p.has_rank() && !p.has_attempt());
        assert_eq!(p.to_string(), "logs/%j.out");
        assert_eq!(
            Pattern::parse("/tmp/a%%b%r").unwrap().to_string(),
            "/tmp/a%%b%r"
        );
        assert!(Pattern::parse("../up/%j").is_ok());
    }

    #[test]
    fn refuses_bad_patterns_quoting_them() {
        for (p, why) in [
            ("", "empty"),
            ("out-%x.txt", "unknown '%x'"),
            ("out-%", "lone '%'"),
            ("out/", "directory"),
            ("out/..", "directory"),
            (".", "directory"),
            ("a\0b", "NUL"),
        ] {
            let e = Pattern::parse(p).unwrap_err();
            let msg = e.to_string();
            assert!(
                msg.starts_with(&format!("invalid output pattern '{p}'")),
                "{msg}"
            );
            assert!(msg.contains(why), "{p}: {msg}");
        }
        let long = "x".repeat(MAX_PATTERN + 1);
        assert!(Pattern::parse(&long).unwrap_err().why.contains("longer"));
    }

    #[test]
    fn aside_names() {
        assert_eq!(attempt_aside("out-7-0.txt", 2), "out-7-0.attempt1.txt");
        assert_eq!(attempt_aside("d.x/out", 3), "d.x/out.attempt2");
        assert_eq!(attempt_aside("/a/.hidden", 2), "/a/.hidden.attempt1");
        assert_eq!(attempt_aside("a.tar.gz", 5), "a.tar.attempt4.gz");
    }

    proptest! {
        #[test]
        fn parse_and_expand_never_panic(s in "\\PC{0,40}", job: u64, rank: u32, attempt: u64) {
            if let Ok(p) = Pattern::parse(&s) {
                let vals = PatternValues { job, rank, array_index: 0, array_job: job, attempt };
                let out = p.expand(&vals);
                prop_assert!(!out.is_empty());
                // Printing and parsing again gives the same pattern.
                prop_assert_eq!(Pattern::parse(&p.to_string()).unwrap(), p);
            }
        }

        #[test]
        fn tokens_only_from_percent(s in "[a-z/._%jrnaA-]{1,30}") {
            let _ = Pattern::parse(&s).map(|p| p.expand(&PatternValues::default()));
        }

        #[test]
        fn aside_never_panics(s in "\\PC{0,40}", n: u64) {
            let _ = attempt_aside(&s, n);
        }
    }
}

//! graze's checkpoint protocol for `graze-pi` (see `proto/src/checkpoint.rs` for the protocol).
//!
//! Rank `r` keeps its state in `$GRAZE_CHECKPOINT_DIR/r/state` (a small `key=value` text
//! file, floats as their exact bit patterns) and creates the empty marker
//! `$GRAZE_CHECKPOINT_DIR/r.done` once the state is on disk. The state is everything the loop
//! needs to go on exactly where it was: the rounds done, the last global estimate, the rank's
//! cumulative hit counts and its PRNG state. So a restored run prints the same rounds and the
//! same final Pi as an uninterrupted run with the same seed.
//!
//! Everything here is MPI-free; the collective decisions (when to save, whether every rank's
//! restored state belongs to the same round) are made in [`crate::run`].

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, Context as _};

use crate::kernel::LANES;

/// The state file's format version. Version 1 held one PRNG stream per rank; version 2 holds
/// [`LANES`] (`rng0=` to `rng7=`, the streams of [`crate::kernel::Streams`]).
pub const STATE_VERSION: u32 = 2;

/// One rank's saved state after `round` rounds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RankState {
    /// The world size of the run that saved it.
    pub size: u64,
    /// The rank that saved it.
    pub rank: u64,
    /// `--samples` of the run that saved it.
    pub samples: u64,
    /// The base seed of the run.
    pub base_seed: u64,
    /// Rounds done (1-based number of the last one).
    pub round: u64,
    /// The global estimate of that round.
    pub pi: f64,
    /// The rank's hits so far.
    pub local_inside: u64,
    /// The rank's samples so far.
    pub local_samples: u64,
    /// The rank's PRNG streams after that round ([`crate::kernel::Streams::state`]).
    pub rng: [[u64; 4]; LANES],
}

impl RankState {
    /// The state file's text.
    pub fn encode(&self) -> String {
        let mut text = format!(
            "graze-pi-checkpoint={STATE_VERSION}\nsize={}\nrank={}\nsamples={}\nseed={}\n\
             round={}\npi_bits={:016x}\nlocal_inside={}\nlocal_samples={}\n",
            self.size,
            self.rank,
            self.samples,
            self.base_seed,
            self.round,
            self.pi.to_bits(),
            self.local_inside,
            self.local_samples,
        );
        for (i, [a, b, c, d]) in self.rng.iter().enumerate() {
            text.push_str(&format!("rng{i}={a:016x},{b:016x},{c:016x},{d:016x}\n"));
        }
        text
    }

    /// Parses what [`RankState::encode`] writes; a clear error names the bad line.
    pub fn decode(text: &str) -> anyhow::Result<Self> {
        let mut fields = std::collections::HashMap::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let (k, v) = line
                .split_once('=')
                .with_context(|| format!("line '{line}' is not KEY=VALUE"))?;
            fields.insert(k.trim(), v.trim());
        }
        let get = |k: &str| {
            fields
                .get(k)
                .copied()
                .with_context(|| format!("no '{k}' line"))
        };
        let num = |k: &str| -> anyhow::Result<u64> {
            let v = get(k)?;
            v.parse()
                .with_context(|| format!("'{k}' is not a number: '{v}'"))
        };
        let hex = |k: &str, v: &str| -> anyhow::Result<u64> {
            u64::from_str_radix(v, 16).with_context(|| format!("'{k}' is not hex: '{v}'"))
        };
        let version = get("graze-pi-checkpoint")?;
        if version == "1" {
            bail!(
                "state format version 1 is from an older graze-pi with one PRNG stream per \
                 rank; this graze-pi (format {STATE_VERSION}, {LANES} streams) cannot continue \
                 it, so the run starts afresh"
            );
        }
        if version != STATE_VERSION.to_string() {
            bail!("state format version '{version}', expected {STATE_VERSION}");
        }
        let mut rng = [[0u64; 4]; LANES];
        for (i, stream) in rng.iter_mut().enumerate() {
            let key = format!("rng{i}");
            let text = get(&key)?;
            let words: Vec<&str> = text.split(',').collect();
            let [a, b, c, d] = words.as_slice() else {
                bail!("'{key}' needs 4 words, got '{text}'");
            };
            *stream = [hex(&key, a)?, hex(&key, b)?, hex(&key, c)?, hex(&key, d)?];
            if *stream == [0; 4] {
                bail!("'{key}' is the all-zero state, which xoshiro256++ never reaches");
            }
        }
        Ok(RankState {
            size: num("size")?,
            rank: num("rank")?,
            samples: num("samples")?,
            base_seed: num("seed")?,
            round: num("round")?,
            pi: f64::from_bits(hex("pi_bits", get("pi_bits")?)?),
            local_inside: num("local_inside")?,
            local_samples: num("local_samples")?,
            rng,
        })
    }
}

/// The protocol's environment, as this process got it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protocol {
    /// `GRAZE_CHECKPOINT_DIR`.
    pub dir: PathBuf,
    /// `GRAZE_CHECKPOINT_SIGNAL`.
    pub signal: i32,
}

impl Protocol {
    /// Reads `GRAZE_CHECKPOINT_DIR` and `GRAZE_CHECKPOINT_SIGNAL` through `var`; `None` when
    /// the job does not checkpoint (no directory). A bad signal or a relative directory is an
    /// error naming the value.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> anyhow::Result<Option<Self>> {
        let Some(dir) = var("GRAZE_CHECKPOINT_DIR").filter(|d| !d.is_empty()) else {
            return Ok(None);
        };
        let dir = PathBuf::from(dir);
        if !dir.is_absolute() {
            bail!(
                "GRAZE_CHECKPOINT_DIR '{}' is not an absolute path",
                dir.display()
            );
        }
        let signal = match var("GRAZE_CHECKPOINT_SIGNAL") {
            None => libc::SIGUSR1,
            Some(s) => {
                let n: i32 = s.trim().parse().map_err(|_| {
                    anyhow::anyhow!("GRAZE_CHECKPOINT_SIGNAL '{s}' is not a signal number")
                })?;
                if !(1..=64).contains(&n) || [libc::SIGKILL, libc::SIGSTOP].contains(&n) {
                    bail!("GRAZE_CHECKPOINT_SIGNAL '{s}' is not a signal a program can catch");
                }
                n
            }
        };
        Ok(Some(Protocol { dir, signal }))
    }

    /// `DIR/RANK/`.
    pub fn rank_dir(&self, rank: u64) -> PathBuf {
        self.dir.join(rank.to_string())
    }

    /// `DIR/RANK.done`.
    pub fn marker(&self, rank: u64) -> PathBuf {
        self.dir.join(format!("{rank}.done"))
    }

    /// Loads this rank's state if there is one (`Ok(None)`: a fresh start).
    pub fn load(&self, rank: u64) -> anyhow::Result<Option<RankState>> {
        let path = self.rank_dir(rank).join("state");
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        RankState::decode(&text)
            .map(Some)
            .with_context(|| format!("checkpoint {} cannot be used", path.display()))
    }

    /// Saves this rank's state: `RANK/state` written aside, fsynced and renamed into place,
    /// then the marker `RANK.done` created (so the agent never takes a half-written state).
    pub fn save(&self, state: &RankState) -> anyhow::Result<()> {
        let dir = self.rank_dir(state.rank);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let tmp = dir.join("state.tmp");
        let path = dir.join("state");
        write_synced(&tmp, state.encode().as_bytes())?;
        fs::rename(&tmp, &path)
            .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
        sync_dir(&dir)?;
        write_synced(&self.marker(state.rank), b"")?;
        sync_dir(&self.dir)
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut f = fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))
}

/// Set by the checkpoint signal's handler, taken by the loop at the next round.
static REQUESTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    REQUESTED.store(true, Ordering::SeqCst);
}

/// Installs the handler of `signal` (SA_RESTART, so MPI's system calls are not interrupted).
pub fn install_handler(signal: i32) -> anyhow::Result<()> {
    // SAFETY: `sigaction` with a zeroed, then filled struct; the handler only does an atomic
    // store, which is async-signal-safe.
    let rc = unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(signal, &sa, std::ptr::null_mut())
    };
    if rc != 0 {
        bail!(
            "installing the handler of signal {signal}: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// Whether a checkpoint was asked for since the last call (clears the request).
pub fn take_request() -> bool {
    REQUESTED.swap(false, Ordering::SeqCst)
}

/// What every rank's restored state says, combined: whether all ranks can go on from the same
/// round. `round` is `Some(n)` for a rank with a usable state, `None` for one without.
/// Returns the round to go on from (0: start afresh) or why not.
pub fn agree(min_round: u64, max_round: u64, all_have: bool, none_have: bool) -> Agreement {
    if none_have {
        Agreement::Fresh
    } else if !all_have {
        Agreement::Mismatch("some ranks have no checkpoint".to_owned())
    } else if min_round != max_round {
        Agreement::Mismatch(format!(
            "the ranks' checkpoints are of different rounds ({min_round} to {max_round})"
        ))
    } else {
        Agreement::Resume(min_round)
    }
}

/// The combined restore decision ([`agree`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Agreement {
    /// No rank has a checkpoint.
    Fresh,
    /// Every rank has one of this round.
    Resume(u64),
    /// They do not fit together; start afresh, saying why.
    Mismatch(String),
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn state() -> RankState {
        RankState {
            size: 2,
            rank: 1,
            samples: 1000,
            base_seed: 42,
            round: 17,
            pi: std::f64::consts::PI + 1e-12,
            local_inside: 13_333,
            local_samples: 17_000,
            rng: std::array::from_fn(|i| [1 + i as u64, u64::MAX, 3, 0xdead_beef]),
        }
    }

    #[test]
    fn state_round_trips_exactly() {
        let s = state();
        assert_eq!(RankState::decode(&s.encode()).unwrap(), s);
    }

    #[test]
    fn damaged_state_is_refused_naming_the_problem() {
        let good = state().encode();
        for (bad, want) in [
            (
                good.replace("round=17", "round=x"),
                "'round' is not a number: 'x'",
            ),
            (
                good.replace("graze-pi-checkpoint=2", "graze-pi-checkpoint=9"),
                "version '9', expected 2",
            ),
            (good.replace("samples=1000\n", ""), "no 'samples' line"),
            (
                good.replacen(",0000000000000003", "", 1),
                "'rng0' needs 4 words",
            ),
            (good.replace("rng7=", "rng=7"), "no 'rng7' line"),
            (
                good.replace(
                    "rng5=0000000000000006,ffffffffffffffff,0000000000000003,00000000deadbeef",
                    "rng5=0,0,0,0",
                ),
                "'rng5' is the all-zero state",
            ),
            ("garbage".to_owned(), "line 'garbage' is not KEY=VALUE"),
        ] {
            let err = format!("{:#}", RankState::decode(&bad).unwrap_err());
            assert!(err.contains(want), "{want}: {err}");
        }
    }

    #[test]
    fn a_version_1_state_is_refused_not_misread() {
        // What graze-pi wrote before it had several streams per rank.
        let v1 = "graze-pi-checkpoint=1\nsize=2\nrank=1\nsamples=1000\nseed=42\nround=17\n\
                  pi_bits=400921fb54442d19\nlocal_inside=13333\nlocal_samples=17000\n\
                  rng=0000000000000001,ffffffffffffffff,0000000000000003,00000000deadbeef\n";
        let err = format!("{:#}", RankState::decode(v1).unwrap_err());
        assert!(
            err.contains("state format version 1 is from an older graze-pi")
                && err.contains("cannot continue it"),
            "{err}"
        );
    }

    #[test]
    fn env_is_read_and_checked() {
        let env = |d: Option<&str>, s: Option<&str>| {
            let (d, s) = (d.map(str::to_owned), s.map(str::to_owned));
            Protocol::from_vars(move |k| match k {
                "GRAZE_CHECKPOINT_DIR" => d.clone(),
                "GRAZE_CHECKPOINT_SIGNAL" => s.clone(),
                _ => None,
            })
        };
        assert_eq!(env(None, Some("10")).unwrap(), None);
        let p = env(Some("/var/tmp/c/job-3"), Some("12")).unwrap().unwrap();
        assert_eq!(p.signal, 12);
        assert_eq!(p.marker(3), PathBuf::from("/var/tmp/c/job-3/3.done"));
        assert_eq!(
            env(Some("/x"), None).unwrap().unwrap().signal,
            libc::SIGUSR1
        );
        for (d, s, want) in [
            ("rel/dir", "10", "'rel/dir' is not an absolute path"),
            ("/x", "usr1", "'usr1' is not a signal number"),
            ("/x", "9", "'9' is not a signal a program can catch"),
            ("/x", "0", "'0' is not a signal a program can catch"),
        ] {
            let err = env(Some(d), Some(s)).unwrap_err().to_string();
            assert!(err.contains(want), "{want}: {err}");
        }
    }

    #[test]
    fn save_writes_state_then_marker_and_load_reads_it() {
        let tmp = tempfile::tempdir().unwrap();
        let p = Protocol {
            dir: tmp.path().join("job-1"),
            signal: libc::SIGUSR1,
        };
        assert_eq!(p.load(1).unwrap(), None);
        let s = state();
        p.save(&s).unwrap();
        assert!(p.marker(1).is_file());
        assert!(!p.rank_dir(1).join("state.tmp").exists());
        assert_eq!(p.load(1).unwrap(), Some(s));
        fs::write(p.rank_dir(1).join("state"), "round=1").unwrap();
        let err = format!("{:#}", p.load(1).unwrap_err());
        assert!(err.contains("cannot be used"), "{err}");
    }

    #[test]
    fn ranks_agree_only_on_one_round() {
        assert_eq!(agree(0, 0, false, true), Agreement::Fresh);
        assert_eq!(agree(5, 5, true, false), Agreement::Resume(5));
        assert!(matches!(agree(4, 5, true, false), Agreement::Mismatch(m) if m.contains("4 to 5")));
        assert!(matches!(agree(5, 5, false, false), Agreement::Mismatch(_)));
    }

    #[test]
    fn the_handler_records_a_request() {
        install_handler(libc::SIGUSR2).unwrap();
        assert!(!take_request());
        // SAFETY: raising a signal whose handler was just installed.
        unsafe { libc::raise(libc::SIGUSR2) };
        assert!(take_request());
        assert!(!take_request());
    }
}

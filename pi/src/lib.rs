//! `graze-pi`: the Monte-Carlo Pi kernel with an MPI Allreduce convergence loop.
//!
//! This is a port of the classic mpi4py demo:
//!
//! ```text
//! while True:
//!     inside = count of samples (x,y uniform in [0,1)) with x*x+y*y < 1 over numSamples
//!     oldPi = pi; mypi = inside/numSamples
//!     Allreduce(mypi, SUM) -> recv
//!     pi = (4.0/size) * recv
//!     delta = abs(pi - oldPi)
//!     if rank == 0: print("pi: %f - delta: %f" % (pi, delta))
//!     if delta < tolerance: return pi
//! ```
//!
//! Everything except [`run`] is pure and MPI-free so it can be unit tested
//! without `mpiexec`: the PRNG ([`Xoshiro256pp`]), the sampling kernel
//! ([`kernel::Streams`]: several generator streams per rank, vectorised), the
//! round combination ([`combine_round`]), the stopping rule ([`Convergence`]),
//! the per-rank report rate limiter ([`ReportLimiter`]) and the output line
//! formats.
//!
//! A second deviation, for speed: a sample is one 64-bit draw whose two 32-bit
//! halves are `x` and `y`, tested exactly in integers (see [`kernel`]), rather
//! than two 53-bit floating point draws. The estimate is the same up to the
//! statistical error.
//!
//! One deliberate deviation from the original: instead of reducing the
//! per-rank *floating point* fractions `inside/numSamples`, ranks reduce the
//! integer `inside` counts. Since every rank draws the same number of samples
//! this is mathematically the same value, but an integer sum is exact and
//! independent of the reduction order, so every rank computes a bit-identical
//! `pi` and `delta` and therefore takes the same stop decision (MPI only
//! *recommends*, not guarantees, identical floating point Allreduce results on
//! all ranks).

use std::ffi::OsString;
use std::io::{self, Write};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use clap::{CommandFactory as _, Parser};

pub mod checkpoint;
pub mod kernel;
pub mod trace_regions;

pub use kernel::Streams;

/// Default samples per rank per round.
pub const DEFAULT_SAMPLES: u64 = 1_000_000;
/// Upper bound on `--samples`, so that `samples * ranks` cannot overflow the
/// `u64` Allreduce for any realistic number of ranks (up to 2^24).
pub const MAX_SAMPLES: u64 = 1 << 40;

// ---------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------

/// Monte-Carlo estimate of Pi, iterated with an MPI Allreduce until two
/// successive global estimates differ by less than the tolerance.
#[derive(Debug, Clone, PartialEq, Parser)]
#[command(name = "graze-pi", version, about, long_about = None, allow_negative_numbers = true)]
pub struct Cli {
    /// Samples drawn per rank per round.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_SAMPLES,
          value_parser = clap::value_parser!(u64).range(1..=MAX_SAMPLES))]
    pub samples: u64,

    /// Stop once |pi - previous pi| < T (must be > 0).
    #[arg(long, value_name = "T", default_value_t = 1e-5, value_parser = parse_tolerance,
          allow_hyphen_values = true)]
    pub tolerance: f64,

    /// Never stop on convergence before this many rounds (round 1 is
    /// compared against 0, so this must be at least 2 to be meaningful).
    #[arg(long, value_name = "N", default_value_t = 2,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub min_rounds: u64,

    /// Stop after this many rounds even if not converged (exit status is
    /// still 0; rank 0 says so on stderr).
    #[arg(long, value_name = "N", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_rounds: u64,

    /// Base PRNG seed (each rank derives its own stream from it); default
    /// from the clock of rank 0.
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,

    /// Each rank prints its local estimate at most once per this many
    /// milliseconds (plus always the first and last round); 0 = every round.
    #[arg(long, value_name = "MS", default_value_t = 250)]
    pub report_ms: u64,

    /// Under graze's checkpoint protocol (`GRAZE_CHECKPOINT_DIR` set): stop with exit code 85
    /// after saving a checkpoint at the checkpoint signal, instead of going on.
    #[arg(long)]
    pub checkpoint_exit: bool,
}

fn parse_tolerance(s: &str) -> Result<f64, String> {
    let t: f64 = s
        .trim()
        .parse()
        .map_err(|e| format!("not a number ({e})"))?;
    if t.is_finite() && t > 0.0 {
        Ok(t)
    } else {
        Err("must be a finite number > 0".to_owned())
    }
}

impl Cli {
    /// The stopping rule described by these flags.
    pub fn stop_rule(&self) -> StopRule {
        StopRule {
            tolerance: self.tolerance,
            min_rounds: self.min_rounds,
            max_rounds: self.max_rounds,
        }
    }
}

/// Parses the command line (including cross-flag checks clap cannot express)
/// and returns a ready-to-print clap error on failure.
pub fn try_parse_cli<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = Cli::try_parse_from(args)?;
    if cli.min_rounds > cli.max_rounds {
        return Err(Cli::command().error(
            clap::error::ErrorKind::ArgumentConflict,
            format!(
                "--min-rounds ({}) must not exceed --max-rounds ({})",
                cli.min_rounds, cli.max_rounds
            ),
        ));
    }
    Ok(cli)
}

// ---------------------------------------------------------------------------
// PRNG
// ---------------------------------------------------------------------------

/// One step of SplitMix64; used to expand a 64-bit seed into PRNG state.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// xoshiro256++ (Blackman & Vigna), a tiny, fast, non-cryptographic PRNG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Xoshiro256pp {
    s: [u64; 4],
}

impl Xoshiro256pp {
    /// Seeds the generator by expanding `seed` with SplitMix64 (never yields
    /// the forbidden all-zero state).
    pub fn from_seed(seed: u64) -> Self {
        let mut sm = seed;
        Self {
            s: [
                splitmix64(&mut sm),
                splitmix64(&mut sm),
                splitmix64(&mut sm),
                splitmix64(&mut sm),
            ],
        }
    }

    /// The raw state (for checkpoints).
    pub fn state(&self) -> [u64; 4] {
        self.s
    }

    /// A generator continuing from a saved [`Xoshiro256pp::state`]; `None` for the all-zero
    /// state, which xoshiro never reaches.
    pub fn from_state(s: [u64; 4]) -> Option<Self> {
        (s != [0; 4]).then_some(Self { s })
    }

    /// Next 64 random bits.
    #[inline(always)]
    pub fn next_u64(&mut self) -> u64 {
        let [s0, s1, s2, s3] = &mut self.s;
        let result = s0.wrapping_add(*s3).rotate_left(23).wrapping_add(*s0);
        let t = *s1 << 17;
        *s2 ^= *s0;
        *s3 ^= *s1;
        *s1 ^= *s2;
        *s0 ^= *s3;
        *s2 ^= t;
        *s3 = s3.rotate_left(45);
        result
    }

    /// Uniform `f64` in `[0, 1)` with 53 random bits.
    #[inline(always)]
    pub fn next_f64(&mut self) -> f64 {
        const SCALE: f64 = 1.0 / (1u64 << 53) as f64;
        (self.next_u64() >> 11) as f64 * SCALE
    }

    /// Advances the state by 2^128 steps.
    pub fn jump(&mut self) {
        self.jump_by(&[
            0x180E_C6D3_3CFD_0ABA,
            0xD5A6_1266_F0C9_392C,
            0xA958_2618_E03F_C9AA,
            0x39AB_DC45_29B1_661C,
        ]);
    }

    /// Advances the state by 2^192 steps.
    pub fn long_jump(&mut self) {
        self.jump_by(&[
            0x76E1_5D3E_FEFD_CBBF,
            0xC500_4E44_1C52_2FB3,
            0x7771_0069_854E_E241,
            0x3910_9BB0_2ACB_E635,
        ]);
    }

    /// Applies a jump polynomial (Blackman & Vigna's reference `jump`).
    fn jump_by(&mut self, poly: &[u64; 4]) {
        let mut acc = [0u64; 4];
        for &word in poly {
            for bit in 0..64 {
                if word & (1u64 << bit) != 0 {
                    for (a, s) in acc.iter_mut().zip(self.s) {
                        *a ^= s;
                    }
                }
                self.next_u64();
            }
        }
        self.s = acc;
    }
}

/// A base seed when `--seed` is not given: the clock mixed with the pid.
pub fn seed_from_time() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut s = nanos ^ (u64::from(std::process::id()) << 32);
    splitmix64(&mut s)
}

// ---------------------------------------------------------------------------
// Kernel and round combination
// ---------------------------------------------------------------------------

/// `4 * inside / samples`: the Pi estimate from a hit count.
pub fn estimate(inside: u64, samples: u64) -> f64 {
    if samples == 0 {
        return 0.0;
    }
    4.0 * inside as f64 / samples as f64
}

/// The global estimate of one round: `(4/size) * Σ_r inside_r / samples`,
/// given `total_inside = Σ_r inside_r` (the Allreduce SUM of the counts) and
/// the per-rank sample count shared by all `size` ranks.
pub fn combine_round(total_inside: u64, samples_per_rank: u64, size: u64) -> f64 {
    if samples_per_rank == 0 || size == 0 {
        return 0.0;
    }
    (4.0 / size as f64) * (total_inside as f64 / samples_per_rank as f64)
}

/// When to stop iterating.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StopRule {
    /// Converged once `delta < tolerance` ...
    pub tolerance: f64,
    /// ... but not before this round (1-based).
    pub min_rounds: u64,
    /// Give up after this round (1-based).
    pub max_rounds: u64,
}

/// Whether the loop goes on after a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Keep iterating.
    Continue,
    /// `delta < tolerance` (and at least `min_rounds` rounds done).
    Converged,
    /// `max_rounds` reached without converging.
    RoundLimit,
}

impl Status {
    /// True if this was the last round.
    pub fn is_final(self) -> bool {
        self != Status::Continue
    }
}

/// The outcome of one round.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Round {
    /// 1-based round number.
    pub round: u64,
    /// Global estimate of this round.
    pub pi: f64,
    /// `|pi - previous pi|` (previous is 0 before round 1).
    pub delta: f64,
    /// Whether to go on.
    pub status: Status,
}

/// The convergence state machine (pure; identical inputs on all ranks give
/// identical decisions).
#[derive(Debug, Clone)]
pub struct Convergence {
    rule: StopRule,
    round: u64,
    pi: f64,
}

impl Convergence {
    /// Starts with `pi = 0` before round 1, as the original does.
    pub fn new(rule: StopRule) -> Self {
        Self {
            rule,
            round: 0,
            pi: 0.0,
        }
    }

    /// Goes on after `round` rounds whose last global estimate was `pi` (a checkpoint).
    pub fn resume(rule: StopRule, round: u64, pi: f64) -> Self {
        Self { rule, round, pi }
    }

    /// Rounds recorded so far.
    pub fn round(&self) -> u64 {
        self.round
    }

    /// Records the global estimate of the next round.
    pub fn record(&mut self, pi: f64) -> Round {
        let old = self.pi;
        self.pi = pi;
        self.round += 1;
        let delta = (pi - old).abs();
        let status = if self.round >= self.rule.min_rounds && delta < self.rule.tolerance {
            Status::Converged
        } else if self.round >= self.rule.max_rounds {
            Status::RoundLimit
        } else {
            Status::Continue
        };
        Round {
            round: self.round,
            pi,
            delta,
            status,
        }
    }

    /// The latest global estimate.
    pub fn pi(&self) -> f64 {
        self.pi
    }
}

// ---------------------------------------------------------------------------
// Reporting
// ---------------------------------------------------------------------------

/// Rate limiter for the per-rank lines: at most one per interval, except
/// forced ones (first and last round).
#[derive(Debug, Clone)]
pub struct ReportLimiter {
    interval: Duration,
    last: Option<Instant>,
}

impl ReportLimiter {
    /// A limiter allowing one report per `interval` (zero: every call).
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: None,
        }
    }

    /// Whether to report now; the first call always reports.
    pub fn should_report(&mut self, now: Instant, force: bool) -> bool {
        let due = force
            || match self.last {
                None => true,
                Some(t) => now.saturating_duration_since(t) >= self.interval,
            };
        if due {
            self.last = Some(now);
        }
        due
    }
}

/// Rank 0's per-round line: `pi: {:.6} - delta: {:.6}`.
pub fn global_line(pi: f64, delta: f64) -> String {
    format!("pi: {pi:.6} - delta: {delta:.6}")
}

/// Rank 0's final line.
pub fn final_line(size: u64, pi: f64) -> String {
    format!("Computed value of pi on {size} processors is {pi:.6}")
}

/// A rank's own line: its cumulative local estimate after `round` rounds.
pub fn rank_line(rank: u64, round: u64, local_estimate: f64, samples: u64) -> String {
    format!("rank {rank}: round {round} local estimate {local_estimate:.6} (samples {samples})")
}

/// Writes one whole line and flushes, so that line-labelling launchers
/// (hydra) never see a partial line.
pub fn emit(out: &mut impl Write, line: &str) -> io::Result<()> {
    let mut buf = String::with_capacity(line.len() + 1);
    buf.push_str(line);
    buf.push('\n');
    out.write_all(buf.as_bytes())?;
    out.flush()
}

// ---------------------------------------------------------------------------
// MPI driver
// ---------------------------------------------------------------------------

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Converged or hit `--max-rounds`: the final line was printed.
    Finished,
    /// Saved a checkpoint and stopped (`--checkpoint-exit`): exit with
    /// [`EXIT_CHECKPOINTED`] so graze requeues and restores the job.
    Checkpointed,
}

/// The exit code of a rank that saved its checkpoint and stops (graze's protocol, HTCondor's
/// convention).
pub const EXIT_CHECKPOINTED: i32 = 85;

/// Initialises MPI and runs the Allreduce loop. Any error after MPI is up
/// aborts the whole job (`MPI_Abort`) so the other ranks do not hang in the
/// next collective.
///
/// Under graze's checkpoint protocol (`GRAZE_CHECKPOINT_DIR` in the environment) the run
/// first restores every rank's saved state if all ranks have one of the same round, and
/// saves a checkpoint (all ranks, after the same round) whenever any rank got the
/// checkpoint signal.
pub fn run(cli: &Cli) -> anyhow::Result<Outcome> {
    use mpi::traits::Communicator as _;

    let universe = mpi::initialize().context("MPI initialisation failed (already initialised?)")?;
    let world = universe.world();
    let protocol = checkpoint::Protocol::from_vars(|k| std::env::var(k).ok()).and_then(|p| {
        if let Some(p) = &p {
            checkpoint::install_handler(p.signal)?;
        }
        Ok(p)
    });
    match protocol.and_then(|p| run_rounds(&world, cli, p.as_ref())) {
        Ok(outcome) => Ok(outcome),
        Err(e) => {
            let _ = emit(
                &mut io::stderr(),
                &format!("graze-pi: rank {}: error: {e:#}", world.rank()),
            );
            world.abort(1)
        }
    }
}

/// Rank 0's line when a run goes on from a checkpoint.
pub fn resumed_line(round: u64, restarts: &str) -> String {
    format!("graze-pi: resumed from checkpoint after round {round} (restart {restarts})")
}

/// Rank 0's line when a checkpoint is saved.
pub fn saved_line(round: u64) -> String {
    format!("graze-pi: checkpoint saved after round {round}")
}

/// All ranks: restore their states if they agree. Returns the loop state to start from.
fn restore(
    world: &mpi::topology::SimpleCommunicator,
    protocol: &checkpoint::Protocol,
    cli: &Cli,
    rank: u64,
    size: u64,
) -> anyhow::Result<Option<checkpoint::RankState>> {
    use mpi::collective::SystemOperation;
    use mpi::traits::CommunicatorCollectives as _;

    let mut why_not = None;
    let state = match protocol.load(rank) {
        Ok(Some(s)) if s.rank != rank || s.size != size || s.samples != cli.samples => {
            why_not = Some(format!(
                "it was saved by rank {} of {} with --samples {}, this is rank {rank} of {size} \
                 with --samples {}",
                s.rank, s.size, s.samples, cli.samples
            ));
            None
        }
        Ok(Some(s)) if cli.seed.is_some_and(|seed| seed != s.base_seed) => {
            why_not = Some(format!("it was saved with --seed {}", s.base_seed));
            None
        }
        Ok(s) => s,
        Err(e) => {
            why_not = Some(format!("{e:#}"));
            None
        }
    };
    if let Some(why) = &why_not {
        emit(
            &mut io::stderr(),
            &format!("graze-pi: rank {rank}: not using its checkpoint: {why}"),
        )?;
    }
    let round = state.map(|s| s.round);
    let have = u64::from(round.is_some());
    let (mut min_round, mut max_round, mut n_have) = (0u64, 0u64, 0u64);
    world.all_reduce_into(
        &round.unwrap_or(u64::MAX),
        &mut min_round,
        SystemOperation::min(),
    );
    world.all_reduce_into(&round.unwrap_or(0), &mut max_round, SystemOperation::max());
    world.all_reduce_into(&have, &mut n_have, SystemOperation::sum());
    // The base seed must be the same everywhere too: compare rank 0's.
    match checkpoint::agree(min_round, max_round, n_have == size, n_have == 0) {
        checkpoint::Agreement::Fresh => Ok(None),
        checkpoint::Agreement::Resume(_) => Ok(state),
        checkpoint::Agreement::Mismatch(why) => {
            if rank == 0 {
                emit(
                    &mut io::stderr(),
                    &format!("graze-pi: starting afresh: {why}"),
                )?;
            }
            Ok(None)
        }
    }
}

fn run_rounds(
    world: &mpi::topology::SimpleCommunicator,
    cli: &Cli,
    protocol: Option<&checkpoint::Protocol>,
) -> anyhow::Result<Outcome> {
    use mpi::collective::SystemOperation;
    use mpi::traits::{Communicator as _, CommunicatorCollectives as _, Root as _};

    let rank = u64::try_from(world.rank()).context("negative MPI rank")?;
    let size = u64::try_from(world.size()).context("non-positive MPI world size")?;
    let mut stdout = io::stdout();

    let restored = match protocol {
        Some(p) => restore(world, p, cli, rank, size)?,
        None => None,
    };

    // All ranks use rank 0's base seed so a run is reproducible from it.
    let mut base_seed = match &restored {
        Some(s) => s.base_seed,
        None => cli.seed.unwrap_or_else(seed_from_time),
    };
    let own_seed = base_seed;
    world.process_at_rank(0).broadcast_into(&mut base_seed);
    if restored.is_some() && own_seed != base_seed {
        anyhow::bail!("the restored checkpoint has base seed {own_seed}, rank 0's has {base_seed}");
    }
    if rank == 0 && cli.seed.is_none() && restored.is_none() {
        let _ = emit(
            &mut io::stderr(),
            &format!("graze-pi: base seed {base_seed} (pass --seed {base_seed} to reproduce)"),
        );
    }

    let (mut rng, mut conv, mut local_inside, mut local_samples) = match &restored {
        Some(s) => (
            Streams::from_state(s.rng).context("a restored PRNG stream is all zero")?,
            Convergence::resume(cli.stop_rule(), s.round, s.pi),
            s.local_inside,
            s.local_samples,
        ),
        None => (
            Streams::for_rank(base_seed, rank),
            Convergence::new(cli.stop_rule()),
            0,
            0,
        ),
    };
    if let (Some(s), 0) = (&restored, rank) {
        let restarts = std::env::var("GRAZE_RESTART_COUNT").unwrap_or_else(|_| "?".to_owned());
        emit(&mut stdout, &resumed_line(s.round, &restarts)).context("writing to stdout")?;
    }
    let mut limiter = ReportLimiter::new(Duration::from_millis(cli.report_ms));
    let regions = trace_regions::TraceRegions::lookup();

    let last = loop {
        if conv.round() >= cli.max_rounds {
            // Restored from a checkpoint of the last round (or a lower --max-rounds).
            let round = Round {
                round: conv.round(),
                pi: conv.pi(),
                delta: 0.0,
                status: Status::RoundLimit,
            };
            break round;
        }
        let inside = regions.mark(c"sample", || rng.count_inside(cli.samples));
        local_inside += inside;
        local_samples += cli.samples;

        let mut total_inside = 0u64;
        regions.mark(c"allreduce", || {
            world.all_reduce_into(&inside, &mut total_inside, SystemOperation::sum())
        });
        let round = conv.record(combine_round(total_inside, cli.samples, size));

        if limiter.should_report(Instant::now(), round.status.is_final()) {
            let line = rank_line(
                rank,
                round.round,
                estimate(local_inside, local_samples),
                local_samples,
            );
            emit(&mut stdout, &line).context("writing to stdout")?;
        }
        if rank == 0 {
            emit(&mut stdout, &global_line(round.pi, round.delta)).context("writing to stdout")?;
        }
        if round.status.is_final() {
            break round;
        }
        if let Some(p) = protocol {
            // Any rank's signal makes every rank save after this same round.
            let asked = u64::from(checkpoint::take_request());
            let mut any = 0u64;
            world.all_reduce_into(&asked, &mut any, SystemOperation::max());
            if any != 0 {
                p.save(&checkpoint::RankState {
                    size,
                    rank,
                    samples: cli.samples,
                    base_seed,
                    round: round.round,
                    pi: round.pi,
                    local_inside,
                    local_samples,
                    rng: rng.state(),
                })
                .context("saving the checkpoint")?;
                if rank == 0 {
                    emit(&mut stdout, &saved_line(round.round)).context("writing to stdout")?;
                }
                if cli.checkpoint_exit {
                    // Every rank's files are on disk before any rank exits.
                    world.barrier();
                    return Ok(Outcome::Checkpointed);
                }
            }
        }
    };

    if rank == 0 {
        if last.status == Status::RoundLimit {
            // One write per line (stderr is unbuffered: eprintln! writes each piece).
            let _ = emit(
                &mut io::stderr(),
                &format!(
                    "graze-pi: not converged after {} rounds (last delta {:.6} >= tolerance {:e}); \
                     reporting the last estimate",
                    last.round, last.delta, cli.tolerance
                ),
            );
        }
        emit(&mut stdout, &final_line(size, conv.pi())).context("writing to stdout")?;
    }
    Ok(Outcome::Finished)
}

#[cfg(test)]
// Pi-ish literals below are test data, not attempts at the constant.
#[allow(clippy::unwrap_used, clippy::approx_constant)]
mod tests {
    use super::*;

    /// Counts the `write` calls it gets.
    struct Writes(Vec<Vec<u8>>);
    impl Write for Writes {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.push(b.to_vec());
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_line_is_one_write() {
        let mut w = Writes(Vec::new());
        emit(&mut w, &format!("not converged after {} rounds", 600)).unwrap();
        assert_eq!(w.0, vec![b"not converged after 600 rounds\n".to_vec()]);
    }

    #[test]
    fn xoshiro_reference_vector() {
        // Reference outputs of xoshiro256++ for state [1, 2, 3, 4].
        let mut r = Xoshiro256pp { s: [1, 2, 3, 4] };
        assert_eq!(r.next_u64(), 41_943_041);
        assert_eq!(r.next_u64(), 58_720_359);
    }

    #[test]
    fn next_f64_in_unit_interval() {
        let mut r = Xoshiro256pp::from_seed(7);
        for _ in 0..100_000 {
            let x = r.next_f64();
            assert!((0.0..1.0).contains(&x), "{x}");
        }
    }

    #[test]
    fn estimate_close_to_pi() {
        let n = 1_000_000;
        let pi = estimate(Streams::for_rank(12345, 0).count_inside(n), n);
        assert!((pi - std::f64::consts::PI).abs() < 0.01, "{pi}");
    }

    #[test]
    fn deterministic_given_seed() {
        let a = Streams::for_rank(99, 3).count_inside(10_000);
        let b = Streams::for_rank(99, 3).count_inside(10_000);
        assert_eq!(a, b);
        assert_eq!(Streams::for_rank(1, 0).count_inside(0), 0);
    }

    #[test]
    fn long_jump_commutes_with_jump_and_differs_from_it() {
        // Both are powers of the same linear map, so they commute (2^192 steps cannot be
        // checked by stepping; the constants are the reference ones).
        let mut a = Xoshiro256pp::from_seed(8);
        let mut b = a.clone();
        a.jump();
        a.long_jump();
        b.long_jump();
        b.jump();
        assert_eq!(a, b);
        let (mut j, mut l) = (Xoshiro256pp::from_seed(8), Xoshiro256pp::from_seed(8));
        j.jump();
        l.long_jump();
        assert_ne!(j, l);
    }

    #[test]
    fn combine_round_matches_original_formula() {
        // Original: pi = (4/size) * Σ (inside_r / samples).
        let samples = 1000;
        let inside = [780u64, 790, 785];
        let original: f64 = (4.0 / 3.0)
            * inside
                .iter()
                .map(|&i| i as f64 / samples as f64)
                .sum::<f64>();
        let ours = combine_round(inside.iter().sum(), samples, 3);
        assert!((original - ours).abs() < 1e-12);
        assert_eq!(combine_round(785, 1000, 1), 3.14);
        assert_eq!(combine_round(1, 0, 1), 0.0);
    }

    fn rule(tolerance: f64, min_rounds: u64, max_rounds: u64) -> StopRule {
        StopRule {
            tolerance,
            min_rounds,
            max_rounds,
        }
    }

    #[test]
    fn convergence_first_round_compares_against_zero() {
        let mut c = Convergence::new(rule(1e-5, 2, 100));
        let r = c.record(3.14);
        assert_eq!((r.round, r.delta, r.status), (1, 3.14, Status::Continue));
        let r = c.record(3.14);
        assert_eq!((r.round, r.delta, r.status), (2, 0.0, Status::Converged));
        assert_eq!(c.pi(), 3.14);
    }

    #[test]
    fn convergence_respects_min_rounds() {
        // A zero delta before min_rounds must not stop the loop.
        let mut c = Convergence::new(rule(1.0, 3, 100));
        assert_eq!(c.record(0.5).status, Status::Continue); // delta 0.5 < 1 but round 1
        assert_eq!(c.record(0.5).status, Status::Continue); // round 2
        assert_eq!(c.record(0.5).status, Status::Converged); // round 3
    }

    #[test]
    fn convergence_round_limit() {
        let mut c = Convergence::new(rule(1e-9, 2, 3));
        assert_eq!(c.record(3.0).status, Status::Continue);
        assert_eq!(c.record(3.1).status, Status::Continue);
        let r = c.record(3.2);
        assert_eq!((r.round, r.status), (3, Status::RoundLimit));
        assert!(r.status.is_final());
        // Converging exactly on the last allowed round counts as converged.
        let mut c = Convergence::new(rule(0.5, 1, 2));
        c.record(3.0);
        assert_eq!(c.record(3.1).status, Status::Converged);
    }

    #[test]
    fn convergence_nan_never_converges() {
        let mut c = Convergence::new(rule(1e-3, 1, 2));
        assert_eq!(c.record(f64::NAN).status, Status::Continue);
        assert_eq!(c.record(f64::NAN).status, Status::RoundLimit);
    }

    #[test]
    fn limiter_rate_limits_but_forces() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut l = ReportLimiter::new(ms(100));
        assert!(l.should_report(t0, false)); // first always
        assert!(!l.should_report(t0 + ms(50), false));
        assert!(l.should_report(t0 + ms(60), true)); // forced (last round)
        assert!(!l.should_report(t0 + ms(150), false)); // 90ms since forced one
        assert!(l.should_report(t0 + ms(160), false));
        let mut every = ReportLimiter::new(Duration::ZERO);
        assert!(every.should_report(t0, false));
        assert!(every.should_report(t0, false));
    }

    #[test]
    fn line_formats() {
        assert_eq!(
            global_line(3.14159265, 0.0001234),
            "pi: 3.141593 - delta: 0.000123"
        );
        assert_eq!(
            final_line(4, std::f64::consts::PI),
            "Computed value of pi on 4 processors is 3.141593"
        );
        assert_eq!(
            rank_line(3, 7, 3.14159, 7_000_000),
            "rank 3: round 7 local estimate 3.141590 (samples 7000000)"
        );
        let mut out = Vec::new();
        emit(&mut out, "abc").unwrap();
        assert_eq!(out, b"abc\n");
    }

    #[test]
    fn cli_defaults() {
        let cli = try_parse_cli(["graze-pi"]).unwrap();
        assert_eq!(cli.samples, 1_000_000);
        assert_eq!(cli.tolerance, 1e-5);
        assert_eq!((cli.min_rounds, cli.max_rounds), (2, 1000));
        assert_eq!((cli.seed, cli.report_ms), (None, 250));
        let cli = try_parse_cli([
            "graze-pi",
            "--samples",
            "5",
            "--tolerance",
            "0.5",
            "--seed",
            "9",
            "--report-ms",
            "0",
            "--min-rounds",
            "4",
            "--max-rounds",
            "4",
        ])
        .unwrap();
        assert_eq!(cli.stop_rule(), rule(0.5, 4, 4));
        assert_eq!((cli.samples, cli.seed, cli.report_ms), (5, Some(9), 0));
    }

    #[test]
    fn cli_rejects_bad_values_quoting_them() {
        for (flag, value) in [
            ("--samples", "0"),
            ("--samples", "-3"),
            ("--samples", "lots"),
            ("--tolerance", "0"),
            ("--tolerance", "-1e-3"),
            ("--tolerance", "nan"),
            ("--tolerance", "inf"),
            ("--tolerance", "tiny"),
            ("--max-rounds", "0"),
            ("--min-rounds", "0"),
            ("--seed", "-1"),
        ] {
            let err = try_parse_cli(["graze-pi", flag, value]).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(&format!("'{value}'")), "{flag} {value}: {msg}");
            assert!(msg.contains(flag), "{flag} {value}: {msg}");
        }
        let err = try_parse_cli(["graze-pi", "--min-rounds", "5", "--max-rounds", "3"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--min-rounds (5) must not exceed --max-rounds (3)"),
            "{err}"
        );
    }
}

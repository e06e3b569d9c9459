//! The sampling kernel: [`LANES`] independent xoshiro256++ streams per rank, stepped in
//! lock-step so that the compiler turns the lanes into SIMD vectors.
//!
//! Layout and test, in order:
//!
//! 1. The state is kept as a structure of arrays ([`Streams`]: word `j` of every stream side
//!    by side), so one xoshiro step of all lanes is a handful of vector operations.
//! 2. Each 64-bit draw is one point: `x` is its low 32 bits, `y` its high 32 bits, both read
//!    as fractions of 2^32. The point is a hit iff `x² + y² < 2^64`, decided exactly in
//!    integers: with `x², y² < 2^64` each, that is `x² <= (2^64 - 1) - y²`, i.e.
//!    `x² <= !y²` — no overflow, no rounding, and a 32x32->64 multiply that SSE2 and AVX2 do
//!    natively.
//! 3. [`Streams::count_inside`] picks at run time the AVX2 copy of the loop when the CPU has
//!    it and the portable one otherwise. The workspace builds this crate as one codegen unit
//!    (see the root `Cargo.toml`): with more, LLVM leaves part of the AVX2 loop scalar.
//! 4. A sample count that is not a multiple of [`LANES`] takes its last `n % LANES` samples
//!    from the first streams, one each. The state stays exact, so a checkpointed run goes on
//!    with exactly the draws an uninterrupted one would make.
//!
//! The 2^64 grid points approximate the unit quarter disc to within about 2^-31 relative,
//! far below the statistical error of any feasible run.

use crate::Xoshiro256pp;

/// Independent generator streams per rank.
pub const LANES: usize = 8;

/// [`LANES`] xoshiro256++ streams as a structure of arrays: `s[j][lane]` is word `j` of
/// stream `lane`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Streams {
    s: [[u64; LANES]; 4],
}

/// Which copy of the inner loop ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimdPath {
    /// `#[target_feature(enable = "avx2")]`, picked at run time.
    Avx2,
    /// The loop as compiled for the build target (scalar lanes on a default x86-64 build).
    Portable,
}

impl std::fmt::Display for SimdPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SimdPath::Avx2 => "avx2",
            SimdPath::Portable => "portable",
        })
    }
}

impl SimdPath {
    /// The path [`Streams::count_inside`] takes on this CPU.
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            return SimdPath::Avx2;
        }
        SimdPath::Portable
    }
}

impl Streams {
    /// The streams of `rank`: stream `k` is the base-seeded generator
    /// ([`Xoshiro256pp::from_seed`]) advanced by `rank` long jumps (2^192 steps each) and then
    /// `k` jumps (2^128 steps each). So every (rank, stream) pair gets its own
    /// non-overlapping stretch of the same sequence, determined by the seed alone.
    pub fn for_rank(base_seed: u64, rank: u64) -> Self {
        let mut rng = Xoshiro256pp::from_seed(base_seed);
        for _ in 0..rank {
            rng.long_jump();
        }
        let mut s = [[0; LANES]; 4];
        for lane in 0..LANES {
            for (word, value) in s.iter_mut().zip(rng.state()) {
                word[lane] = value;
            }
            rng.jump();
        }
        Self { s }
    }

    /// The state of every stream, stream by stream (for checkpoints).
    pub fn state(&self) -> [[u64; 4]; LANES] {
        std::array::from_fn(|lane| std::array::from_fn(|j| self.s[j][lane]))
    }

    /// Streams continuing from a saved [`Streams::state`]; `None` if any stream is in the
    /// all-zero state, which xoshiro never reaches.
    pub fn from_state(state: [[u64; 4]; LANES]) -> Option<Self> {
        if state.contains(&[0; 4]) {
            return None;
        }
        Some(Self {
            s: std::array::from_fn(|j| std::array::from_fn(|lane| state[lane][j])),
        })
    }

    /// Draws `n` points uniformly in `[0,1)^2` (see the module doc) and counts those inside
    /// the unit quarter circle, on the fastest path this CPU has.
    pub fn count_inside(&mut self, n: u64) -> u64 {
        self.count_inside_on(SimdPath::detect(), n)
    }

    /// [`Streams::count_inside`] on a given path; [`SimdPath::Avx2`] falls back to the
    /// portable loop on a CPU without AVX2. Both paths give the same result.
    pub fn count_inside_on(&mut self, path: SimdPath, n: u64) -> u64 {
        let blocks = n / LANES as u64;
        let mut inside = match path {
            #[cfg(target_arch = "x86_64")]
            SimdPath::Avx2 if std::is_x86_feature_detected!("avx2") => {
                // SAFETY: the CPU has AVX2 (checked just above).
                unsafe { blocks_avx2(&mut self.s, blocks) }
            }
            _ => blocks_portable(&mut self.s, blocks),
        };
        for lane in 0..(n % LANES as u64) as usize {
            inside += u64::from(is_inside(step(&mut self.s, lane)));
        }
        inside
    }
}

/// Whether the point of one 64-bit draw lies inside the unit quarter circle, exactly:
/// `x² + y² < 2^64` for `x` the low and `y` the high 32 bits.
#[inline(always)]
pub fn is_inside(draw: u64) -> bool {
    let x = draw & 0xFFFF_FFFF;
    let y = draw >> 32;
    // Both squares are at most (2^32 - 1)^2 < 2^64, so the multiplications never wrap (and
    // say so, keeping overflow checks out of the vector loop in dev builds); the sum is below
    // 2^64 iff `x² <= 2^64 - 1 - y²`.
    x.wrapping_mul(x) <= !y.wrapping_mul(y)
}

/// 1 if the point of `draw` is outside (`!is_inside(draw)`), else 0: the carry out of
/// `x² + y²`, in bit operations only (SSE2 has no 64-bit compare).
#[inline(always)]
pub fn outside_bit(draw: u64) -> u64 {
    let x = draw & 0xFFFF_FFFF;
    let y = draw >> 32;
    let (x2, y2) = (x.wrapping_mul(x), y.wrapping_mul(y));
    let sum = x2.wrapping_add(y2);
    // The carry out of the top bit: both top bits set, or one set and the sum's clear.
    ((x2 & y2) | ((x2 | y2) & !sum)) >> 63
}

/// One xoshiro256++ step of stream `lane`.
#[inline(always)]
fn step(s: &mut [[u64; LANES]; 4], lane: usize) -> u64 {
    let [s0, s1, s2, s3] = [s[0][lane], s[1][lane], s[2][lane], s[3][lane]];
    let result = s0.wrapping_add(s3).rotate_left(23).wrapping_add(s0);
    let t = s1 << 17;
    let s2 = s2 ^ s0;
    let s3 = s3 ^ s1;
    let s1 = s1 ^ s2;
    let s0 = s0 ^ s3;
    let s2 = s2 ^ t;
    let s3 = s3.rotate_left(45);
    s[0][lane] = s0;
    s[1][lane] = s1;
    s[2][lane] = s2;
    s[3][lane] = s3;
    result
}

/// `blocks` steps of every lane; returns the hits. `outside` is the test (1 for a miss):
/// [`outside_bit`] where the lanes become vectors, `!is_inside` where they stay scalar
/// (cheaper there).
///
/// Written so that the lane loop vectorises: every lane is a plain element-wise operation on
/// the state arrays, worked on in place (copying them into local arrays first makes LLVM
/// split them into scalars and give up).
#[inline(always)]
fn blocks_generic(
    state: &mut [[u64; LANES]; 4],
    blocks: u64,
    outside: impl Fn(u64) -> u64 + Copy,
) -> u64 {
    let mut misses = [0u64; LANES];
    for _ in 0..blocks {
        block(state, &mut misses, outside);
    }
    // Wrapping (it cannot wrap: n < 2^64), because an overflow-checked sum here keeps LLVM
    // from vectorising the loop above in dev builds.
    let misses = misses.iter().fold(0u64, |sum, &m| sum.wrapping_add(m));
    (blocks * LANES as u64).wrapping_sub(misses)
}

/// One step of every lane, counting misses.
#[inline(always)]
fn block(state: &mut [[u64; LANES]; 4], misses: &mut [u64; LANES], outside: impl Fn(u64) -> u64) {
    let [s0, s1, s2, s3] = state;
    for i in 0..LANES {
        let result = s0[i]
            .wrapping_add(s3[i])
            .rotate_left(23)
            .wrapping_add(s0[i]);
        let t = s1[i] << 17;
        s2[i] ^= s0[i];
        s3[i] ^= s1[i];
        s1[i] ^= s2[i];
        s0[i] ^= s3[i];
        s2[i] ^= t;
        s3[i] = s3[i].rotate_left(45);
        // At most one miss per block per lane: never wraps.
        misses[i] = misses[i].wrapping_add(outside(result));
    }
}

/// The portable loop. On x86-64 LLVM keeps its lanes scalar (SSE2 has no 64-bit compare and
/// no rotate, so its vectors do not pay), which is still fast: eight independent streams.
/// (With [`outside_bit`] it vectorises for SSE2, at about 0.7 times the speed.)
fn blocks_portable(state: &mut [[u64; LANES]; 4], blocks: u64) -> u64 {
    blocks_generic(state, blocks, |d| u64::from(!is_inside(d)))
}

/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn blocks_avx2(state: &mut [[u64; LANES]; 4], blocks: u64) -> u64 {
    blocks_generic(state, blocks, outside_bit)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The scalar reference: stream by stream with [`Xoshiro256pp`], the same lane order.
    fn reference(streams: &Streams, n: u64) -> (u64, Streams) {
        let mut rngs: Vec<Xoshiro256pp> = streams
            .state()
            .iter()
            .map(|s| Xoshiro256pp::from_state(*s).unwrap())
            .collect();
        let mut inside = 0;
        for i in 0..n {
            inside += u64::from(is_inside(rngs[(i % LANES as u64) as usize].next_u64()));
        }
        let state = std::array::from_fn(|lane| rngs[lane].state());
        (inside, Streams::from_state(state).unwrap())
    }

    #[test]
    fn is_inside_is_exact_at_the_boundary() {
        let draw = |x: u64, y: u64| x | (y << 32);
        assert!(is_inside(0));
        assert!(is_inside(draw(0xFFFF_FFFF, 0)));
        assert!(!is_inside(u64::MAX));
        // Points on both sides of the circle x² + y² = 2^64, against u128 arithmetic.
        for (x, y) in [
            (0xB504_F333u64, 0xB504_F333u64), // x² = y² just below 2^63: inside
            (0xB504_F334, 0xB504_F334),       // just above: outside
            (0xFFFF_FFFF, 1),
            (0xFFFF_FFFF, 92_681), // x² + y² = 2^64 - 166_830: inside
            (0xFFFF_FFFF, 92_682), // 2^64 + 18_533: outside
            (0xFFFF_FFFF, 0x1_FFFF),
            (0xFFFF_FFFF, 0x2_0000),
            (0xFFFF_FFFE, 0xFFFF),
        ] {
            let exact = u128::from(x * x) + u128::from(y * y) < 1u128 << 64;
            assert_eq!(is_inside(draw(x, y)), exact, "{x:#x} {y:#x}");
            assert_eq!(is_inside(draw(y, x)), exact, "{y:#x} {x:#x}");
            assert_eq!(outside_bit(draw(x, y)), u64::from(!exact), "{x:#x} {y:#x}");
        }
    }

    #[test]
    fn is_inside_matches_u128_on_random_draws() {
        let mut r = Xoshiro256pp::from_seed(3);
        for _ in 0..1_000_000 {
            let d = r.next_u64();
            let (x, y) = (u128::from(d & 0xFFFF_FFFF), u128::from(d >> 32));
            assert_eq!(is_inside(d), x * x + y * y < 1u128 << 64, "{d:#x}");
            assert_eq!(outside_bit(d), u64::from(!is_inside(d)), "{d:#x}");
        }
    }

    #[test]
    fn paths_match_the_scalar_reference() {
        for n in [0u64, 1, 7, 8, 9, 1000, 100_003] {
            let start = Streams::for_rank(77, 2);
            let (want, want_state) = reference(&start, n);
            for path in [SimdPath::Portable, SimdPath::Avx2, SimdPath::detect()] {
                let mut s = start.clone();
                assert_eq!(s.count_inside_on(path, n), want, "{path} n={n}");
                assert_eq!(s, want_state, "{path} n={n}");
            }
        }
    }

    #[test]
    fn a_restored_state_goes_on_with_the_same_rounds() {
        // Rounds of 13 samples (not a multiple of LANES, so the streams drift apart), with a
        // checkpoint after round 2: the rounds after it are those of an uninterrupted run.
        let mut whole = Streams::for_rank(5, 1);
        let want: Vec<u64> = (0..5).map(|_| whole.count_inside(13)).collect();
        let mut first = Streams::for_rank(5, 1);
        let mut got: Vec<u64> = (0..2).map(|_| first.count_inside(13)).collect();
        let mut restored = Streams::from_state(first.state()).unwrap();
        got.extend((0..3).map(|_| restored.count_inside(13)));
        assert_eq!(got, want);
        assert_eq!(restored, whole);
    }

    #[test]
    fn state_round_trips_and_zero_is_refused() {
        let s = Streams::for_rank(9, 4);
        assert_eq!(Streams::from_state(s.state()), Some(s.clone()));
        let mut st = s.state();
        st[5] = [0; 4];
        assert_eq!(Streams::from_state(st), None);
    }

    #[test]
    fn streams_are_distinct_and_deterministic() {
        assert_eq!(Streams::for_rank(42, 3), Streams::for_rank(42, 3));
        let mut seen = std::collections::HashSet::new();
        for seed in [1u64, 2] {
            for rank in 0..4 {
                for s in Streams::for_rank(seed, rank).state() {
                    assert!(seen.insert(s), "seed {seed} rank {rank}: a repeated stream");
                }
            }
        }
        // Stream 0 of rank 0 is the plain base-seeded generator.
        assert_eq!(
            Streams::for_rank(5, 0).state()[0],
            Xoshiro256pp::from_seed(5).state()
        );
    }

    /// Pearson's chi-square of `counts` against equal expected counts.
    fn chi_square(counts: &[u64]) -> f64 {
        let total: u64 = counts.iter().sum();
        let expected = total as f64 / counts.len() as f64;
        counts
            .iter()
            .map(|&c| (c as f64 - expected).powi(2) / expected)
            .sum()
    }

    /// An upper bound on chi-square with `df` degrees of freedom that a uniform sample
    /// exceeds with probability about 1e-6 (Wilson–Hilferty, z = 4.75).
    fn chi_square_limit(df: f64) -> f64 {
        let z = 4.75;
        let a = 2.0 / (9.0 * df);
        df * (1.0 - a + z * a.sqrt()).powi(3)
    }

    /// The draws the kernel makes, in its order: lane by lane within each block.
    fn draws(seed: u64, rank: u64, n: usize) -> Vec<u64> {
        let s = Streams::for_rank(seed, rank);
        let mut rngs: Vec<Xoshiro256pp> = s
            .state()
            .iter()
            .map(|st| Xoshiro256pp::from_state(*st).unwrap())
            .collect();
        (0..n).map(|i| rngs[i % LANES].next_u64()).collect()
    }

    #[test]
    fn x_and_y_are_uniform_in_64_bins_each() {
        let mut bins_x = [0u64; 64];
        let mut bins_y = [0u64; 64];
        for d in draws(2024, 1, 2_000_000) {
            bins_x[((d & 0xFFFF_FFFF) >> 26) as usize] += 1;
            bins_y[(d >> 58) as usize] += 1;
        }
        let limit = chi_square_limit(63.0);
        let (cx, cy) = (chi_square(&bins_x), chi_square(&bins_y));
        assert!(cx < limit, "x: chi-square {cx:.1} >= {limit:.1}");
        assert!(cy < limit, "y: chi-square {cy:.1} >= {limit:.1}");
        // And not suspiciously perfect either (probability about 1e-6 below).
        assert!(cx > 20.0 && cy > 20.0, "x {cx:.1}, y {cy:.1}");
    }

    #[test]
    fn points_are_uniform_on_a_32x32_grid() {
        let mut grid = vec![0u64; 32 * 32];
        for d in draws(7, 0, 4_000_000) {
            let x = ((d & 0xFFFF_FFFF) >> 27) as usize;
            let y = (d >> 59) as usize;
            grid[y * 32 + x] += 1;
        }
        let limit = chi_square_limit(1023.0);
        let c = chi_square(&grid);
        assert!(c < limit, "2-D: chi-square {c:.1} >= {limit:.1}");
    }

    #[test]
    fn lanes_are_not_correlated() {
        // Neighbouring lanes' x halves on a 16x16 grid: a correlation between streams would
        // pile up on the diagonal.
        let d = draws(11, 0, 4_000_000);
        let mut grid = vec![0u64; 16 * 16];
        for pair in d.chunks_exact(2) {
            let a = ((pair[0] & 0xFFFF_FFFF) >> 28) as usize;
            let b = ((pair[1] & 0xFFFF_FFFF) >> 28) as usize;
            grid[a * 16 + b] += 1;
        }
        let limit = chi_square_limit(255.0);
        let c = chi_square(&grid);
        assert!(c < limit, "lane pairs: chi-square {c:.1} >= {limit:.1}");
    }

    #[test]
    fn estimate_within_5_sigma_of_pi() {
        let n = 200_000_000u64;
        for (seed, rank) in [(12345u64, 0u64), (1, 3)] {
            let inside = Streams::for_rank(seed, rank).count_inside(n);
            let p = std::f64::consts::FRAC_PI_4;
            let sigma = 4.0 * (p * (1.0 - p) / n as f64).sqrt();
            let pi = crate::estimate(inside, n);
            let off = (pi - std::f64::consts::PI).abs();
            assert!(
                off < 5.0 * sigma,
                "seed {seed} rank {rank}: {pi} is {:.1} sigma off",
                off / sigma
            );
        }
    }
}

//! The clock model: from a node's NTP-style [`ClockSample`]s to a correction of its
//! `CLOCK_MONOTONIC` times onto the scheduler's clock.
//!
//! The rule, in order:
//! 1. Samples are grouped in windows of [`WINDOW_NS`] of node time (from the first sample);
//!    each window keeps its sample with the lowest round trip (the least queueing, so the
//!    tightest bound).
//! 2. A kept sample whose round trip is both more than [`OUTLIER_FACTOR`] times the lowest of
//!    all and more than [`OUTLIER_SLACK_NS`] above it is dropped (a window where the network or
//!    the machine stalled); the lowest one is never dropped.
//! 3. A node time `t` is corrected by the offset interpolated linearly between the kept samples
//!    on either side of it (the clocks' drift), and by the nearest kept sample's offset outside
//!    them (constant extrapolation).
//! 4. The error bound is the largest RTT/2 of the kept samples.
//!
//! With no samples the offset is 0 and [`Model::is_empty`] says so.

use crate::ClockSample;

/// Width of a selection window, in ns of node time.
pub const WINDOW_NS: u64 = 1_000_000_000;
/// A kept sample is an outlier past this many times the lowest round trip ...
pub const OUTLIER_FACTOR: u64 = 4;
/// ... and this much above it.
pub const OUTLIER_SLACK_NS: u64 = 1_000_000;

/// A node's clock correction.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Model {
    /// The samples used, sorted by `local_ns`, one per `local_ns`.
    kept: Vec<ClockSample>,
}

impl Model {
    /// The model of these samples (in any order) with the default window.
    pub fn new(samples: &[ClockSample]) -> Model {
        Model::with_window(samples, WINDOW_NS)
    }

    /// The model with windows of `window_ns` (at least 1).
    pub fn with_window(samples: &[ClockSample], window_ns: u64) -> Model {
        let window_ns = window_ns.max(1);
        let mut sorted = samples.to_vec();
        sorted.sort_by_key(|s| (s.local_ns, s.rtt_ns));
        let Some(first) = sorted.first().map(|s| s.local_ns) else {
            return Model::default();
        };
        let mut kept: Vec<ClockSample> = Vec::new();
        let mut kept_window = None;
        for s in sorted {
            let w = (s.local_ns - first) / window_ns;
            match kept.last_mut() {
                Some(last) if kept_window == Some(w) => {
                    if s.rtt_ns < last.rtt_ns {
                        *last = s;
                    }
                }
                _ => {
                    kept.push(s);
                    kept_window = Some(w);
                }
            }
        }
        let min_rtt = kept.iter().map(|s| s.rtt_ns).min().unwrap_or(0);
        let limit = min_rtt
            .saturating_mul(OUTLIER_FACTOR)
            .max(min_rtt.saturating_add(OUTLIER_SLACK_NS));
        kept.retain(|s| s.rtt_ns <= limit);
        Model { kept }
    }

    /// The model of samples already selected (e.g. [`crate::NodeClock::samples`]): used as
    /// they are, only sorted (one per node time, the lowest round trip).
    pub fn from_kept(samples: &[ClockSample]) -> Model {
        let mut kept = samples.to_vec();
        kept.sort_by_key(|s| (s.local_ns, s.rtt_ns));
        kept.dedup_by_key(|s| s.local_ns);
        Model { kept }
    }

    /// The inverse of [`Model::correct`]: the node time whose corrected time is `global`
    /// (to within a nanosecond or so; offsets change slowly, so a few fixed-point steps do).
    pub fn local_of(&self, global: i128) -> i128 {
        let mut local = global;
        for _ in 0..4 {
            let at = u64::try_from(local.max(0)).unwrap_or(u64::MAX);
            local = global - i128::from(self.offset_at(at));
        }
        local
    }

    /// No samples: times are not corrected.
    pub fn is_empty(&self) -> bool {
        self.kept.is_empty()
    }

    /// The samples used, sorted by node time.
    pub fn kept(&self) -> &[ClockSample] {
        &self.kept
    }

    /// The error bound of the correction: the largest RTT/2 of the samples used (0 with none).
    pub fn error_ns(&self) -> u64 {
        self.kept.iter().map(|s| s.rtt_ns / 2).max().unwrap_or(0)
    }

    /// Scheduler clock minus node clock at node time `local_ns`.
    pub fn offset_at(&self, local_ns: u64) -> i64 {
        let k = &self.kept;
        let Some(first) = k.first() else { return 0 };
        if local_ns <= first.local_ns {
            return first.offset_ns;
        }
        let i = k.partition_point(|s| s.local_ns <= local_ns);
        if i == k.len() {
            return k[k.len() - 1].offset_ns;
        }
        let (a, b) = (k[i - 1], k[i]);
        // a.local_ns <= local_ns < b.local_ns; all in i128, no overflow.
        let span = i128::from(b.local_ns - a.local_ns);
        let into = i128::from(local_ns - a.local_ns);
        let d = i128::from(b.offset_ns) - i128::from(a.offset_ns);
        let step = match d.checked_mul(into) {
            Some(p) => p / span,
            // Only for absurd inputs (offsets and times near the type limits).
            None => (d as f64 * (into as f64 / span as f64)) as i128,
        };
        let off = i128::from(a.offset_ns) + step;
        off.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
    }

    /// Node time `local_ns` on the scheduler's clock (may be negative when the scheduler's
    /// clock is behind; callers use differences).
    pub fn correct(&self, local_ns: u64) -> i128 {
        i128::from(local_ns) + i128::from(self.offset_at(local_ns))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(local_ns: u64, offset_ns: i64, rtt_ns: u64) -> ClockSample {
        ClockSample {
            local_ns,
            offset_ns,
            rtt_ns,
        }
    }

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn no_samples_no_correction() {
        let m = Model::new(&[]);
        assert!(m.is_empty());
        assert_eq!(m.correct(123), 123);
        assert_eq!(m.error_ns(), 0);
    }

    #[test]
    fn a_five_second_shift_is_undone() {
        // The node's monotonic clock runs 5 s ahead (unshare --time --monotonic 5).
        let samples: Vec<_> = (0..10)
            .map(|i| {
                s(
                    100 * SEC + 5 * SEC + i * 2 * SEC,
                    -5_000_000_000,
                    80_000 + i * 1_000,
                )
            })
            .collect();
        let m = Model::new(&samples);
        assert_eq!(m.kept().len(), 10);
        let node_t = 113 * SEC;
        assert_eq!(m.correct(node_t), i128::from(108 * SEC));
        // Outside the samples: constant.
        assert_eq!(m.correct(SEC), i128::from(SEC) - 5_000_000_000);
        assert_eq!(m.correct(1_000 * SEC), 995 * i128::from(SEC));
        assert_eq!(m.error_ns(), (80_000 + 9_000) / 2);
    }

    #[test]
    fn drift_is_interpolated_linearly() {
        // The node's clock gains 50 µs per second (50 ppm) on the scheduler's.
        let off = |t: u64| -((t / SEC) as i64) * 50_000;
        let samples = [s(0, off(0), 100_000), s(10 * SEC, off(10 * SEC), 100_000)];
        let m = Model::new(&samples);
        assert_eq!(m.offset_at(5 * SEC), -250_000);
        assert_eq!(m.offset_at(2_500_000_000), -125_000);
        assert_eq!(m.correct(10 * SEC), i128::from(10 * SEC) - 500_000);
        assert_eq!(m.offset_at(20 * SEC), -500_000);
    }

    #[test]
    fn each_window_keeps_its_lowest_round_trip() {
        let samples = [
            s(0, 1_000, 300_000),
            s(100_000_000, 2_000, 60_000),
            s(200_000_000, 3_000, 90_000),
            s(3 * SEC, 9_000, 70_000),
            s(3 * SEC + 1, 8_000, 50_000),
        ];
        let m = Model::new(&samples);
        assert_eq!(
            m.kept(),
            [s(100_000_000, 2_000, 60_000), s(3 * SEC + 1, 8_000, 50_000)]
        );
        assert_eq!(m.error_ns(), 30_000);
    }

    #[test]
    fn a_stalled_window_is_dropped() {
        let samples = [
            s(0, 0, 100_000),
            s(2 * SEC, 40_000_000, 80_000_000),
            s(4 * SEC, 0, 120_000),
        ];
        let m = Model::new(&samples);
        assert_eq!(m.kept(), [s(0, 0, 100_000), s(4 * SEC, 0, 120_000)]);
        assert_eq!(m.offset_at(2 * SEC), 0);
        assert_eq!(m.error_ns(), 60_000);
        // A stall that is slow but within the slack is kept.
        let m = Model::new(&[s(0, 0, 100_000), s(2 * SEC, 5, 900_000)]);
        assert_eq!(m.kept().len(), 2);
    }

    #[test]
    fn local_of_inverts_correct() {
        let m = Model::from_kept(&[
            s(100 * SEC, -5 * SEC as i64, 1),
            s(200 * SEC, -5 * SEC as i64 + 10_000, 1),
        ]);
        for t in [0, 100 * SEC, 150 * SEC + 7, 300 * SEC] {
            let g = m.correct(t);
            let back = m.local_of(g);
            assert!((back - i128::from(t)).abs() <= 1, "{t} -> {g} -> {back}");
        }
    }

    #[test]
    fn extreme_values_do_not_overflow() {
        let m = Model::new(&[s(0, i64::MIN, u64::MAX), s(u64::MAX, i64::MAX, u64::MAX)]);
        let _ = m.correct(u64::MAX / 2);
        let _ = m.correct(u64::MAX);
        assert_eq!(m.error_ns(), u64::MAX / 2);
    }

    proptest::proptest! {
        /// With realistic samples (offsets that change by less than half the node time between
        /// them: drift far below 50%), correction keeps order and `local_of` inverts it.
        #[test]
        fn correction_keeps_order_and_inverts(
            start in 0u64..1 << 50,
            steps in proptest::collection::vec((1u64..10 * SEC, -1_000i64..1_000, 0u64..10_000_000), 1..12),
            base in -(1i64 << 40)..1 << 40,
            probes in proptest::collection::vec(0u64..200 * SEC, 1..20),
        ) {
            let mut samples = Vec::new();
            let (mut t, mut off) = (start, base);
            for (dt, doff_per_mille, rtt) in steps {
                t += dt;
                off += (dt as i64 / 2_000) * doff_per_mille / 1_000;
                samples.push(s(t, off, rtt));
            }
            let m = Model::new(&samples);
            proptest::prop_assert!(!m.kept().is_empty());
            let mut probes: Vec<u64> = probes.into_iter().map(|p| start + p).collect();
            probes.sort_unstable();
            for w in probes.windows(2) {
                proptest::prop_assert!(m.correct(w[0]) <= m.correct(w[1]));
            }
            for &p in &probes {
                let back = m.local_of(m.correct(p));
                proptest::prop_assert!((back - i128::from(p)).abs() <= 2, "{} -> {}", p, back);
            }
            let bound = m.kept().iter().map(|k| k.rtt_ns / 2).max();
            proptest::prop_assert_eq!(Some(m.error_ns()), bound);
        }
    }
}

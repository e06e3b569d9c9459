//! Checkpoints in the CLI: `graze submit --checkpoint*` (the words and the spec), `graze show`'s
//! checkpoint rows and table.

use graze_proto::{
    exact_duration, signal_name, signal_number, CheckpointSpec, CheckpointView, JobView,
    MAX_CHECKPOINT_GRACE_MS, MIN_CHECKPOINT_EVERY_MS,
};
use std::fmt::Write as _;

/// `--checkpoint-signal SIG`: a signal name (`USR1`, `SIGUSR2`, `RTMIN+1`) or number.
pub fn parse_checkpoint_signal(s: &str) -> Result<i32, String> {
    signal_number(s.trim()).ok_or_else(|| {
        format!("unknown signal '{s}': give a name such as USR1, USR2, TERM or a number 1-64")
    })
}

/// `--checkpoint-grace DURATION`: at most an hour (0 is allowed: SIGTERM at once).
pub fn parse_checkpoint_grace(s: &str) -> Result<u64, String> {
    let ms = crate::when::parse_duration(s)?;
    if ms > MAX_CHECKPOINT_GRACE_MS {
        return Err(format!(
            "at most {}: the owner waits for it",
            exact_duration(MAX_CHECKPOINT_GRACE_MS)
        ));
    }
    Ok(ms)
}

/// `--checkpoint-every DURATION`: at least 10 s.
pub fn parse_checkpoint_every(s: &str) -> Result<u64, String> {
    let ms = crate::when::parse_duration(s)?;
    if ms < MIN_CHECKPOINT_EVERY_MS {
        return Err(format!(
            "at least {}",
            exact_duration(MIN_CHECKPOINT_EVERY_MS)
        ));
    }
    Ok(ms)
}

/// The spec's checkpoint options from `graze submit`'s arguments: `None` unless
/// `--checkpoint` or one of the options implying it was given.
pub fn checkpoint_spec(args: &crate::cli::SubmitArgs) -> Option<CheckpointSpec> {
    let any = args.checkpoint
        || args.checkpoint_signal.is_some()
        || args.checkpoint_grace.is_some()
        || args.checkpoint_every.is_some();
    if !any {
        return None;
    }
    let d = CheckpointSpec::default();
    Some(CheckpointSpec {
        signal: args.checkpoint_signal.unwrap_or(d.signal),
        grace_ms: args.checkpoint_grace.unwrap_or(d.grace_ms),
        every_ms: args.checkpoint_every,
    })
}

/// "SIGUSR1", or the number of a signal without a name.
fn sig(n: i32) -> String {
    signal_name(n).unwrap_or_else(|| n.to_string())
}

/// `graze show`'s row for the job's checkpoint options.
pub fn checkpoint_rows(job: &JobView, rows: &mut Vec<(&str, String)>) {
    let Some(c) = job.spec.checkpoint else {
        return;
    };
    let mut v = format!("{}, {} grace", sig(c.signal), exact_duration(c.grace_ms));
    if let Some(e) = c.every_ms {
        let _ = write!(v, ", every {}", exact_duration(e));
    }
    rows.push(("checkpoint", v));
}

/// A size in bytes for people: `512 B`, `1.2 kB`, `3.4 MB`, `1.0 GB` (decimal units).
pub fn size_words(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["kB", "MB", "GB", "TB"];
    if bytes < 1000 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1000.0;
    let mut unit = UNITS[0];
    for u in &UNITS[1..] {
        if v < 1000.0 {
            break;
        }
        v /= 1000.0;
        unit = u;
    }
    format!("{v:.1} {unit}")
}

/// `graze show`'s table of stored checkpoints (oldest first, as the scheduler lists them):
/// run, time, size, ranks, nodes and which one the next run restores. Empty without any.
pub fn checkpoint_table(checkpoints: &[CheckpointView]) -> String {
    if checkpoints.is_empty() {
        return String::new();
    }
    let rows: Vec<Vec<String>> = checkpoints
        .iter()
        .map(|c| {
            vec![
                c.id.epoch.to_string(),
                crate::format::timestamp(c.id.at_ms),
                size_words(c.bytes),
                c.ranks.to_string(),
                c.nodes.join(","),
                if c.current { "yes" } else { "" }.to_string(),
            ]
        })
        .collect();
    let t = crate::format::table(&["RUN", "TAKEN", "SIZE", "RANKS", "FROM", "CURRENT"], &rows);
    let mut out = String::from("  checkpoints:\n");
    for line in t.lines() {
        let _ = writeln!(out, "    {}", line.trim_end());
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use graze_proto::CheckpointId;

    #[test]
    fn option_words() {
        assert_eq!(parse_checkpoint_signal("USR2").unwrap(), 12);
        assert_eq!(parse_checkpoint_signal("SIGUSR1").unwrap(), 10);
        assert_eq!(parse_checkpoint_signal("15").unwrap(), 15);
        assert!(parse_checkpoint_signal("NOPE")
            .unwrap_err()
            .contains("unknown signal 'NOPE'"));
        assert_eq!(parse_checkpoint_grace("90s").unwrap(), 90_000);
        assert_eq!(parse_checkpoint_grace("0s").unwrap(), 0);
        assert!(parse_checkpoint_grace("2h")
            .unwrap_err()
            .contains("at most 1h"));
        assert_eq!(parse_checkpoint_every("30m").unwrap(), 1_800_000);
        assert!(parse_checkpoint_every("5s")
            .unwrap_err()
            .contains("at least 10s"));
        assert!(parse_checkpoint_every("30").is_err(), "a unit is needed");
    }

    #[test]
    fn sizes() {
        assert_eq!(size_words(0), "0 B");
        assert_eq!(size_words(999), "999 B");
        assert_eq!(size_words(1_234), "1.2 kB");
        assert_eq!(size_words(1_200_000), "1.2 MB");
        assert_eq!(size_words(3_000_000_000), "3.0 GB");
    }

    #[test]
    fn table_marks_the_current_one() {
        let c = |epoch, at_ms, current| CheckpointView {
            id: CheckpointId { epoch, at_ms },
            stored_ms: at_ms + 5,
            bytes: 1_200_000,
            ranks: 4,
            nodes: vec!["a1".into(), "a2".into()],
            current,
        };
        let t = checkpoint_table(&[c(1, 1_000, false), c(2, 2_000, true)]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "  checkpoints:");
        assert!(lines[1].trim_start().starts_with("RUN"), "{t}");
        assert!(
            lines[2].contains("1.2 MB") && lines[2].contains("a1,a2"),
            "{t}"
        );
        assert!(!lines[2].ends_with("yes"), "{t}");
        assert!(lines[3].ends_with("yes"), "{t}");
        assert_eq!(checkpoint_table(&[]), "");
    }
}

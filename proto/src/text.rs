//! Text helpers every program shares: cutting on a char boundary, durations for people.

/// The longest output line kept; longer lines are cut and marked.
pub const MAX_LINE: usize = 64 << 10;

/// Cut `s` to at most `max` bytes on a char boundary, appending `mark` when it was cut.
/// (The mark comes on top of the `max` bytes.)
pub fn clip(mut s: String, max: usize, mark: &str) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str(mark);
    }
    s
}

/// Cut an output line to [`MAX_LINE`] bytes on a char boundary, marked as cut.
pub fn clip_line(s: String) -> String {
    clip(s, MAX_LINE, " [line cut by graze]")
}

/// A duration in ms for people, compact enough for a table column: `0s`, `59s`, `14m`,
/// `2h05m`, `3d04h` (each form drops the smaller units: `14m` is 14 to 15 minutes).
pub fn human_duration(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

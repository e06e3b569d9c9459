//! Text helpers every program shares: cutting on a char boundary.

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

//! The timeline view of a traced job (issue 16): one row per rank, MPI calls and user regions
//! as coloured spans over a time axis, zoomed and panned with keys, a cursor at the middle of
//! the view naming the span under it on the selected rank.
//!
//! State and keys are here ([`TraceView`], [`Timeline::key`]); drawing ([`TraceView::draw`]) only
//! reads. Drawing cost is bounded for big traces: each cell of a row finds its spans with a
//! search over the begin times (galloping on from the previous cell's) and a prefix index of
//! the furthest end ([`Timeline::dominant`]), and looks at no more than [`BEFORE`] + 1 +
//! [`INSIDE`] spans.

use super::app::Screen;
use super::draw::window;
use crossterm::event::{KeyCode, KeyEvent};
use graze_proto::JobId;
use graze_trace::summary::human_ns;
use graze_trace::{OpClass, RankTrack, Span as TSpan, Trace, What};
use ratatui::layout::Rect;
use ratatui::style::{Color, Style, Stylize as _};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Wrap};
use ratatui::Frame;
use std::borrow::Cow;

/// How many of the spans beginning just before a cell it looks at (for nested spans), besides
/// the one reaching furthest.
pub const BEFORE: usize = 8;
/// How many of the spans beginning inside a cell it looks at, at most (evenly spread).
pub const INSIDE: usize = 16;
/// The narrowest view, in ns.
pub const MIN_WIDTH_NS: u64 = 1_000;

/// What a span is, for its colour and glyph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Bcast, Reduce, Allreduce, Barrier, Gather, Scatter, Alltoall, ...
    Collective,
    /// Send, Recv and their non-blocking forms, Sendrecv.
    PointToPoint,
    /// Wait, Waitall, Waitany, Test.
    Wait,
    /// Init and Finalize.
    Setup,
    /// An op this table does not know.
    Other,
    /// A user region (`graze_trace_region_begin`/`end`).
    Region,
}

impl Class {
    /// Every class, in the legend's order.
    pub const ALL: [Class; 6] = [
        Class::Collective,
        Class::PointToPoint,
        Class::Wait,
        Class::Setup,
        Class::Region,
        Class::Other,
    ];

    /// The glyph of its cells: distinct per class, so a screen without colour still tells them
    /// apart.
    pub fn glyph(self) -> &'static str {
        match self {
            Class::Collective => "█",
            Class::PointToPoint => "▓",
            Class::Wait => "▒",
            Class::Setup => "░",
            Class::Region => "▄",
            Class::Other => "▪",
        }
    }

    /// Its colour.
    pub fn color(self) -> Color {
        match self {
            Class::Collective => Color::Magenta,
            Class::PointToPoint => Color::Cyan,
            Class::Wait => Color::Yellow,
            Class::Setup => Color::Gray,
            Class::Region => Color::Green,
            Class::Other => Color::White,
        }
    }

    /// Its name in the legend.
    pub fn label(self) -> &'static str {
        match self {
            Class::Collective => "collective",
            Class::PointToPoint => "point-to-point",
            Class::Wait => "wait",
            Class::Setup => "init/finalize",
            Class::Region => "user region",
            Class::Other => "other",
        }
    }
}

/// The class of a span: graze-trace's class of its MPI call, or a user region.
pub fn class_of(what: &What) -> Class {
    match what {
        What::Region(_) => Class::Region,
        What::Mpi(op) => match graze_trace::op_class(*op) {
            OpClass::Setup => Class::Setup,
            OpClass::PointToPoint => Class::PointToPoint,
            OpClass::Wait => Class::Wait,
            OpClass::Collective => Class::Collective,
            OpClass::Other => Class::Other,
        },
    }
}

/// The name of a span: the MPI call or the region's name.
pub fn span_name(what: &What) -> Cow<'_, str> {
    match what {
        What::Mpi(op) => graze_trace::op_name(*op),
        What::Region(r) => Cow::Borrowed(r.as_str()),
    }
}

/// The timeline screen: which job, the screen to go back to, and what is known of its trace.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceView {
    /// The job whose trace this is.
    pub job: JobId,
    /// Where Esc and q go back to.
    pub back: Screen,
    /// Asked for, failed, or here.
    pub state: TraceState,
}

/// Where the trace of a [`TraceView`] is.
#[derive(Debug, Clone, PartialEq)]
pub enum TraceState {
    /// Asked for; no answer yet.
    Loading,
    /// It could not be had: why, for a person.
    Failed(String),
    /// Here, with the view's position.
    Loaded(Box<Timeline>),
}

/// A loaded trace, its index for drawing and the view over it.
#[derive(Debug, Clone, PartialEq)]
pub struct Timeline {
    trace: Trace,
    /// Per rank, per span `i`: the index of the span with the furthest end among `0..=i`
    /// (the later one on ties).
    reach: Vec<Vec<u32>>,
    /// The end of the last span of all ranks (ns since the trace's start).
    end_ns: u64,
    /// The cursor's time: the middle of the view.
    pub centre_ns: u64,
    /// The time the view's width stands for.
    pub width_ns: u64,
    /// The selected rank (an index into the ranks).
    pub rank_sel: usize,
}

impl Timeline {
    /// A timeline of `trace`, fit to the whole trace. Spans out of order are sorted first
    /// (the model promises order; a view must not depend on it).
    pub fn new(mut trace: Trace) -> Timeline {
        let mut reach = Vec::with_capacity(trace.ranks.len());
        let mut end_ns = 0;
        for r in &mut trace.ranks {
            if !r.spans.is_sorted_by_key(|s| s.begin_ns) {
                r.spans.sort_by_key(|s| s.begin_ns);
            }
            let mut idx = Vec::with_capacity(r.spans.len());
            let mut best = 0usize;
            for (i, s) in r.spans.iter().enumerate() {
                if s.end_ns >= r.spans[best].end_ns {
                    best = i;
                }
                idx.push(best as u32);
                end_ns = end_ns.max(s.end_ns);
            }
            reach.push(idx);
        }
        let mut t = Timeline {
            trace,
            reach,
            end_ns,
            centre_ns: 0,
            width_ns: MIN_WIDTH_NS,
            rank_sel: 0,
        };
        t.fit();
        t
    }

    /// The trace shown.
    pub fn trace(&self) -> &Trace {
        &self.trace
    }

    /// Whether no rank has a span.
    pub fn is_empty(&self) -> bool {
        self.trace.ranks.iter().all(|r| r.spans.is_empty())
    }

    /// Show the whole trace.
    pub fn fit(&mut self) {
        self.width_ns = self.end_ns.max(MIN_WIDTH_NS);
        self.centre_ns = self.width_ns / 2;
    }

    /// The furthest a view may get: twice the trace's length.
    fn max_width(&self) -> u64 {
        self.end_ns.max(MIN_WIDTH_NS).saturating_mul(2)
    }

    /// Take a key: zoom (`+ -`), pan (`← → h l`, by an eighth of the view), fit (`0`, Home),
    /// select a rank (`↑ ↓ j k`, PgUp/PgDn, g/G). Whether it was used.
    pub fn key(&mut self, k: KeyEvent) -> bool {
        let last = self.trace.ranks.len().saturating_sub(1);
        let step = (self.width_ns / 8).max(1);
        match k.code {
            KeyCode::Char('+') | KeyCode::Char('=') => self.zoom(true),
            KeyCode::Char('-') | KeyCode::Char('_') => self.zoom(false),
            KeyCode::Left | KeyCode::Char('h') => {
                self.centre_ns = self.centre_ns.saturating_sub(step)
            }
            KeyCode::Right | KeyCode::Char('l') => {
                self.centre_ns = self.centre_ns.saturating_add(step).min(self.end_ns)
            }
            KeyCode::Char('0') | KeyCode::Home => self.fit(),
            KeyCode::Up | KeyCode::Char('k') => self.rank_sel = self.rank_sel.saturating_sub(1),
            KeyCode::Down | KeyCode::Char('j') => self.rank_sel = (self.rank_sel + 1).min(last),
            KeyCode::PageUp => self.rank_sel = self.rank_sel.saturating_sub(10),
            KeyCode::PageDown => self.rank_sel = (self.rank_sel + 10).min(last),
            KeyCode::Char('g') => self.rank_sel = 0,
            KeyCode::End | KeyCode::Char('G') => self.rank_sel = last,
            _ => return false,
        }
        true
    }

    /// Halve the view's width around the cursor (`true`) or double it.
    pub fn zoom(&mut self, zoom_in: bool) {
        self.width_ns = if zoom_in {
            (self.width_ns / 2).max(MIN_WIDTH_NS)
        } else {
            self.width_ns.saturating_mul(2).min(self.max_width())
        };
    }

    /// The view's first time, which may lie before the trace's start.
    fn view_start(&self) -> i128 {
        i128::from(self.centre_ns) - i128::from(self.width_ns / 2)
    }

    /// The times cell `x` of `w` stands for, `[a, b)`, or `None` before the trace's start.
    fn cell(&self, x: u16, w: u16) -> Option<(u64, u64)> {
        let start = self.view_start();
        let width = i128::from(self.width_ns);
        let a = start + width * i128::from(x) / i128::from(w);
        let b = start + width * (i128::from(x) + 1) / i128::from(w);
        if b <= 0 {
            return None;
        }
        let a = a.max(0) as u64;
        Some((a, (b as u64).max(a + 1)))
    }

    /// The span of rank `r` covering most of `[a, b)`, the later-beginning (inner) one on ties;
    /// `None` when none touches it. Looks at the span reaching furthest among those that begin
    /// before `a`, the [`BEFORE`] latest of those, and at most [`INSIDE`] of those beginning in
    /// the cell (all of them when there are no more, evenly spread otherwise).
    pub fn dominant(&self, r: usize, a: u64, b: u64) -> Option<&TSpan> {
        let spans = &self.trace.ranks.get(r)?.spans;
        let mid = spans.partition_point(|s| s.begin_ns < a);
        self.dominant_from(r, a, b, mid).0
    }

    /// [`Timeline::dominant`] given `mid`, the index of rank `r`'s first span beginning at or
    /// after `a`; also returns the first beginning at or after `b`, the next cell's `mid`.
    fn dominant_from(&self, r: usize, a: u64, b: u64, mid: usize) -> (Option<&TSpan>, usize) {
        let Some(track) = self.trace.ranks.get(r) else {
            return (None, mid);
        };
        let spans = &track.spans;
        let reach = &self.reach[r];
        let hi = first_from(spans, mid, b);
        let overlap = |s: &TSpan| s.end_ns.min(b).saturating_sub(s.begin_ns.max(a));
        // (overlap, begin, index) of the best so far.
        let mut best: Option<(u64, u64, usize)> = None;
        let mut consider = |i: usize| {
            let s = &spans[i];
            let o = overlap(s);
            let inside = s.begin_ns >= a && s.begin_ns < b;
            if o == 0 && !inside {
                return;
            }
            if best.is_none_or(|(bo, bb, _)| (o, s.begin_ns) >= (bo, bb)) {
                best = Some((o, s.begin_ns, i));
            }
        };
        if mid > 0 {
            consider(reach[mid - 1] as usize);
            (mid.saturating_sub(BEFORE)..mid).for_each(&mut consider);
        }
        let n = hi - mid;
        let step = n.div_ceil(INSIDE).max(1);
        (mid..hi).step_by(step).for_each(&mut consider);
        (best.map(|(_, _, i)| &spans[i]), hi)
    }

    /// The innermost span of rank `r` at time `t` (the latest-beginning one containing it).
    pub fn at(&self, r: usize, t: u64) -> Option<&TSpan> {
        let spans = &self.trace.ranks.get(r)?.spans;
        let reach = &self.reach[r];
        let hi = spans.partition_point(|s| s.begin_ns <= t);
        // The first span that ends after t: nothing before it contains t.
        let lo = reach[..hi].partition_point(|&i| spans[i as usize].end_ns <= t);
        spans[lo..hi]
            .iter()
            .rev()
            .find(|s| s.end_ns > t || (s.begin_ns == t && s.end_ns == t))
    }
}

/// The first index at or after `from` of a span beginning at or after `t`, when every span
/// before `from` begins before `t`: a galloping search, so a row's cells, left to right, cost
/// the log of the spans each passes rather than of all spans.
fn first_from(spans: &[TSpan], from: usize, t: u64) -> usize {
    let n = spans.len();
    let mut lo = from.min(n);
    let mut bound = lo;
    let mut step = 1usize;
    while bound < n && spans[bound].begin_ns < t {
        lo = bound + 1;
        bound = bound.saturating_add(step);
        step = step.saturating_mul(2);
    }
    let hi = bound.min(n);
    lo + spans[lo..hi].partition_point(|s| s.begin_ns < t)
}

/// The smallest of 1, 2 or 5 times a power of ten that is at least `x` (at least 1).
pub fn nice_step(x: u64) -> u64 {
    let mut p: u64 = 1;
    loop {
        for m in [1, 2, 5] {
            let s = p.saturating_mul(m);
            if s >= x || s == u64::MAX {
                return s;
            }
        }
        p = p.saturating_mul(10);
    }
}

/// An axis label: `t` in the unit of `step` with as many decimals as the step needs
/// (`0`, `200 µs`, `1.5 ms`, `2 s`).
pub fn axis_label(t: u64, step: u64) -> String {
    // The largest unit of which the step is at least half: 0.5 ms rather than 500 µs.
    let (unit, name) = [
        (1_000_000_000, "s"),
        (1_000_000, "ms"),
        (1_000, "µs"),
        (1u64, "ns"),
    ]
    .into_iter()
    .find(|(u, _)| step.saturating_mul(2) >= *u)
    .unwrap_or((1, "ns"));
    if t == 0 {
        return "0".into();
    }
    let mut decimals = 0usize;
    let mut rest = step % unit;
    let mut scale = unit;
    while rest != 0 && decimals < 9 {
        decimals += 1;
        scale /= 10;
        rest = step % scale.max(1);
    }
    format!("{:.*} {name}", decimals, t as f64 / unit as f64)
}

impl TraceView {
    /// Draw the view into `area`. Read-only.
    pub fn draw(&self, f: &mut Frame<'_>, area: Rect) {
        let block = Block::bordered();
        let message = |text: Line<'static>, title: String| {
            Paragraph::new(text)
                .wrap(Wrap { trim: false })
                .block(block.clone().title(title))
        };
        let t = match &self.state {
            TraceState::Loading => {
                let p = message(
                    Line::from(format!(
                        "asking the scheduler for the trace of job {}…",
                        self.job
                    )),
                    format!(" trace of job {} ", self.job),
                );
                f.render_widget(p, area);
                return;
            }
            TraceState::Failed(why) => {
                let p = message(
                    Line::from(format!("no trace of job {}: {why}", self.job)).fg(Color::Red),
                    format!(" trace of job {} ", self.job),
                );
                f.render_widget(p, area);
                return;
            }
            TraceState::Loaded(t) => t,
        };
        if t.is_empty() {
            let p = message(
                Line::from(format!(
                    "the trace of job {} has no spans ({} ranks traced)",
                    self.job,
                    t.trace.ranks.len()
                )),
                format!(" trace of job {} ", self.job),
            );
            f.render_widget(p, area);
            return;
        }
        let block = block.title(title(self.job, t));
        let inner = block.inner(area);
        f.render_widget(block, area);
        if inner.height < 3 || inner.width < 10 {
            return;
        }
        let ranks = &t.trace.ranks;
        let rank_w = ranks
            .iter()
            .map(|r| r.rank.to_string().len())
            .max()
            .unwrap_or(1);
        let label_w = ranks
            .iter()
            .map(|r| label(r, rank_w).chars().count())
            .max()
            .unwrap_or(0)
            .min(20) as u16;
        let plot_x = inner.x + label_w + 1;
        let plot_w = inner.width.saturating_sub(label_w + 1);
        if plot_w < 4 {
            return;
        }
        // Rows: axis labels, ruler, ranks..., status, legend.
        let rows_h = inner.height.saturating_sub(4) as usize;
        let buf = f.buffer_mut();
        draw_axis(buf, t, Rect::new(plot_x, inner.y, plot_w, 2));
        let (offset, _) = window(t.rank_sel, rows_h, ranks.len());
        let cursor_x = plot_w / 2;
        for (row, (i, r)) in ranks
            .iter()
            .enumerate()
            .skip(offset)
            .take(rows_h)
            .enumerate()
        {
            let y = inner.y + 2 + row as u16;
            let sel = i == t.rank_sel;
            let text: String = label(r, rank_w).chars().take(label_w as usize).collect();
            let st = if sel {
                Style::new().bold().reversed()
            } else {
                Style::new()
            };
            buf.set_stringn(
                inner.x,
                y,
                format!("{text:<w$}", w = label_w as usize),
                label_w as usize,
                st,
            );
            let mut mid = None;
            for x in 0..plot_w {
                let Some((a, b)) = t.cell(x, plot_w) else {
                    continue;
                };
                let from = mid.unwrap_or_else(|| r.spans.partition_point(|s| s.begin_ns < a));
                let (span, next) = t.dominant_from(i, a, b, from);
                mid = Some(next);
                let cell = &mut buf[(plot_x + x, y)];
                match span {
                    Some(s) => {
                        let c = class_of(&s.what);
                        cell.set_symbol(c.glyph()).set_fg(c.color());
                    }
                    None if x == cursor_x => {
                        cell.set_symbol("│").set_fg(Color::DarkGray);
                    }
                    None => {}
                }
            }
        }
        let status_y = inner.y + inner.height - 2;
        let legend_y = inner.y + inner.height - 1;
        buf.set_line(inner.x, status_y, &status(t), inner.width);
        let mut legend = Vec::new();
        for c in Class::ALL {
            legend.push(Span::styled(c.glyph(), Style::new().fg(c.color())));
            legend.push(Span::raw(format!(" {}  ", c.label())));
        }
        buf.set_line(inner.x, legend_y, &Line::from(legend), inner.width);
    }
}

/// A rank's row label: rank (right-aligned to `rank_w`) and node.
fn label(r: &RankTrack, rank_w: usize) -> String {
    format!("{:>rank_w$} {}", r.rank, r.node)
}

/// The title: job, ranks, nodes, the view's width, the clock's error bound, losses.
fn title(job: JobId, t: &Timeline) -> String {
    let ranks = &t.trace.ranks;
    let mut nodes: Vec<&str> = ranks.iter().map(|r| r.node.as_str()).collect();
    nodes.sort_unstable();
    nodes.dedup();
    let plural = |n: usize, one: &str| format!("{n} {one}{}", if n == 1 { "" } else { "s" });
    let mut s = format!(
        " trace of job {job} · {} on {} · {} of {} shown",
        plural(ranks.len(), "rank"),
        plural(nodes.len(), "node"),
        human_ns(t.width_ns),
        human_ns(t.end_ns)
    );
    if let Some(e) = t.trace.nodes.iter().map(|n| n.error_ns).max() {
        s.push_str(&format!(" · clock ±{}", human_ns(e)));
    }
    let dropped: u64 = ranks.iter().map(|r| r.dropped).sum();
    if dropped > 0 {
        s.push_str(&format!(" · {dropped} events dropped"));
    }
    let cut = ranks.iter().filter(|r| r.truncated).count();
    if cut > 0 {
        s.push_str(&format!(" · {cut} files cut short"));
    }
    s.push(' ');
    s
}

/// The status line: the span under the cursor on the selected rank.
fn status(t: &Timeline) -> Line<'static> {
    let Some(r) = t.trace.ranks.get(t.rank_sel) else {
        return Line::from("");
    };
    let head = format!(
        "▼ {} · rank {} on {}: ",
        human_ns(t.centre_ns),
        r.rank,
        r.node
    );
    let Some(s) = t.at(t.rank_sel, t.centre_ns) else {
        return Line::from(vec![Span::raw(head), Span::raw("no call").dim()]);
    };
    let c = class_of(&s.what);
    let mut rest = format!(
        " {} from {}",
        human_ns(s.end_ns - s.begin_ns),
        human_ns(s.begin_ns)
    );
    if let Some(p) = s.peer {
        match p {
            -2 => rest.push_str(" · peer any"),
            p if p >= 0 => rest.push_str(&format!(" · peer {p}")),
            _ => {}
        }
    }
    if let Some(tag) = s.tag.filter(|t| *t >= 0) {
        rest.push_str(&format!(" · tag {tag}"));
    }
    if let Some(n) = s.comm_size.filter(|n| *n > 0) {
        rest.push_str(&format!(" · comm {n}"));
    }
    if let Some(b) = s.bytes {
        rest.push_str(&format!(" · {b} B"));
    }
    let name = match &s.what {
        What::Region(n) => format!("region {n}"),
        w => span_name(w).into_owned(),
    };
    Line::from(vec![
        Span::raw(head),
        Span::styled(name, Style::new().bold().fg(c.color())),
        Span::raw(rest),
    ])
}

/// Tick labels on the first row of `area`, a ruler with ticks and the cursor on the second.
fn draw_axis(buf: &mut ratatui::buffer::Buffer, t: &Timeline, area: Rect) {
    let w = area.width;
    let per_col = (t.width_ns / u64::from(w)).max(1);
    // Labels at least 12 columns apart.
    let step = nice_step(per_col * 12);
    let start = t.view_start();
    for x in 0..w {
        buf[(area.x + x, area.y + 1)]
            .set_symbol("─")
            .set_fg(Color::DarkGray);
    }
    let first = if start <= 0 {
        0
    } else {
        (start as u64).div_ceil(step) * step
    };
    let mut free_from = 0u16;
    let mut tick = first;
    loop {
        let col = (i128::from(tick) - start) * i128::from(w) / i128::from(t.width_ns);
        if col >= i128::from(w) {
            break;
        }
        let col = col as u16;
        buf[(area.x + col, area.y + 1)].set_symbol("┴");
        let text = axis_label(tick, step);
        let len = text.chars().count() as u16;
        if col >= free_from && col + len <= w {
            buf.set_string(area.x + col, area.y, &text, Style::new().dim());
            free_from = col + len + 1;
        }
        tick = match tick.checked_add(step) {
            Some(t) => t,
            None => break,
        };
    }
    buf[(area.x + w / 2, area.y + 1)]
        .set_symbol("▼")
        .set_fg(Color::White);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use graze_trace::Op;

    fn span(begin_ns: u64, end_ns: u64, what: What) -> TSpan {
        TSpan::new(begin_ns, end_ns, what)
    }

    fn one_rank(spans: Vec<TSpan>) -> Timeline {
        Timeline::new(Trace {
            start_ns: 0,
            ranks: vec![RankTrack {
                rank: 0,
                node: "ws1".into(),
                pid: 1,
                spans,
                dropped: 0,
                truncated: false,
            }],
            nodes: vec![],
            warnings: vec![],
        })
    }

    fn region(n: &str) -> What {
        What::Region(n.into())
    }

    const ALLREDUCE: What = What::Mpi(Op(10));

    #[test]
    fn op_table() {
        assert_eq!(span_name(&ALLREDUCE), "MPI_Allreduce");
        assert_eq!(span_name(&What::Mpi(Op(99))), "op 99");
        assert_eq!(class_of(&What::Mpi(Op(1))), Class::Setup);
        assert_eq!(class_of(&What::Mpi(Op(5))), Class::PointToPoint);
        assert_eq!(class_of(&What::Mpi(Op(17))), Class::Wait);
        assert_eq!(class_of(&ALLREDUCE), Class::Collective);
        assert_eq!(class_of(&What::Mpi(Op(200))), Class::Other);
        assert_eq!(class_of(&region("x")), Class::Region);
    }

    /// Each case: spans, the cell, the span (by begin) it shows.
    #[test]
    fn the_span_covering_most_of_a_cell() {
        let nested = vec![
            span(0, 1000, region("main")),
            span(100, 200, ALLREDUCE),
            span(300, 900, region("compute")),
        ];
        // (name, spans, cell, the begin of the span shown)
        type Case<'a> = (&'a str, &'a [TSpan], (u64, u64), Option<u64>);
        let cases: &[Case<'_>] = &[
            ("empty cell before", &nested[..1], (2000, 2100), None),
            ("long span before the cell", &nested, (950, 1000), Some(0)),
            ("inner on a tie", &nested, (120, 180), Some(100)),
            ("most covered wins", &nested[1..], (150, 450), Some(300)),
            (
                "inner on a tie, begun before",
                &nested,
                (310, 890),
                Some(300),
            ),
            ("enclosing beats two short", &nested, (50, 350), Some(0)),
            (
                "zero-length span inside",
                &[span(10, 10, ALLREDUCE)],
                (0, 20),
                Some(10),
            ),
            (
                "span ending at the cell's start",
                &[span(0, 100, ALLREDUCE)],
                (100, 200),
                None,
            ),
        ];
        for (name, spans, (a, b), want) in cases {
            let t = one_rank(spans.to_vec());
            let got = t.dominant(0, *a, *b).map(|s| s.begin_ns);
            assert_eq!(got, *want, "{name}");
        }
    }

    #[test]
    fn galloping_search() {
        let spans: Vec<TSpan> = (0..1000u64)
            .map(|i| span(i * 10, i * 10 + 5, ALLREDUCE))
            .collect();
        for from in [0, 1, 7, 500, 999, 1000] {
            for t in [0, 5, 10, 4995, 5000, 9990, 9991, 20_000] {
                let want = spans.partition_point(|s| s.begin_ns < t);
                if want < from {
                    continue;
                }
                assert_eq!(first_from(&spans, from, t), want, "from {from}, t {t}");
            }
        }
    }

    #[test]
    fn crowded_cells_look_at_a_bounded_sample() {
        // 100,000 spans of 10 ns, every 20 ns, and one long region over all of them.
        let mut spans = vec![span(0, 3_000_000, region("main"))];
        spans.extend((0..100_000u64).map(|i| span(i * 20, i * 20 + 10, ALLREDUCE)));
        let t = one_rank(spans);
        // A cell of 1 ms: the region covers it all.
        assert_eq!(
            t.dominant(0, 0, 1_000_000).map(|s| s.what.clone()),
            Some(region("main"))
        );
        // Past the spans, only the region.
        assert_eq!(t.at(0, 2_500_000).map(|s| s.begin_ns), Some(0));
        // Inside one call: the call, not the region.
        assert_eq!(t.at(0, 40_005).map(|s| s.begin_ns), Some(40_000));
        // Between calls: the region.
        assert_eq!(t.at(0, 40_015).map(|s| s.begin_ns), Some(0));
    }

    fn status_text(t: &Timeline) -> String {
        status(t).spans.iter().map(|s| s.content.as_ref()).collect()
    }

    #[test]
    fn the_status_line_names_the_call_under_the_cursor() {
        let mut t = Timeline::new(crate::top::testdata::trace(4, 2));
        t.centre_ns = 3_110_000;
        t.rank_sel = 1;
        assert_eq!(
            status_text(&t),
            "▼ 3.11 ms · rank 1 on ws2: MPI_Irecv 20.0 µs from 3.10 ms · peer 0 · tag 7 · 4096 B"
        );
        t.centre_ns = 3_300_000;
        assert_eq!(
            status_text(&t),
            "▼ 3.30 ms · rank 1 on ws2: MPI_Wait 480.0 µs from 3.12 ms"
        );
        t.rank_sel = 0;
        assert_eq!(status_text(&t), "▼ 3.30 ms · rank 0 on ws2: no call");
        t.centre_ns = 19_000_000;
        assert_eq!(
            status_text(&t),
            "▼ 19.00 ms · rank 0 on ws2: region sample 6.00 ms from 14.00 ms"
        );
    }

    #[test]
    fn unsorted_spans_are_sorted() {
        let t = one_rank(vec![span(500, 600, ALLREDUCE), span(0, 100, region("a"))]);
        assert_eq!(t.at(0, 50).map(|s| s.begin_ns), Some(0));
        assert_eq!(t.at(0, 550).map(|s| s.begin_ns), Some(500));
        assert_eq!(t.at(0, 300), None);
    }

    #[test]
    fn zoom_pan_and_fit() {
        let mut t = one_rank(vec![span(0, 1_000_000, ALLREDUCE)]);
        assert_eq!((t.centre_ns, t.width_ns), (500_000, 1_000_000));
        let key = |c| KeyEvent::from(c);
        assert!(t.key(key(KeyCode::Char('+'))));
        assert_eq!(t.width_ns, 500_000);
        assert!(t.key(key(KeyCode::Right)));
        assert_eq!(t.centre_ns, 562_500);
        for _ in 0..30 {
            t.key(key(KeyCode::Char('+')));
        }
        assert_eq!(t.width_ns, MIN_WIDTH_NS);
        for _ in 0..30 {
            t.key(key(KeyCode::Char('-')));
        }
        assert_eq!(t.width_ns, 2_000_000, "no further out than twice the trace");
        for _ in 0..30 {
            t.key(key(KeyCode::Char('l')));
        }
        assert_eq!(t.centre_ns, 1_000_000, "the cursor stays on the trace");
        assert!(t.key(key(KeyCode::Char('0'))));
        assert_eq!((t.centre_ns, t.width_ns), (500_000, 1_000_000));
        assert!(!t.key(key(KeyCode::Char('x'))));
    }

    #[test]
    fn axis_scale() {
        assert_eq!(nice_step(0), 1);
        assert_eq!(nice_step(3), 5);
        assert_eq!(nice_step(120_000), 200_000);
        assert_eq!(nice_step(1_000_000), 1_000_000);
        assert_eq!(axis_label(0, 200_000), "0");
        assert_eq!(axis_label(400_000, 200_000), "400 µs");
        assert_eq!(axis_label(1_500_000, 500_000), "1.5 ms");
        assert_eq!(axis_label(2_000_000, 1_000_000), "2 ms");
        assert_eq!(axis_label(2_500_000_000, 500_000_000), "2.5 s");
        assert_eq!(axis_label(50, 10), "50 ns");
    }
}

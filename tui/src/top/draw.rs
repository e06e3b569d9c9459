//! Drawing `graze top`: read-only functions of the [`App`] onto a ratatui frame.

use super::app::{App, Mode, Screen};
use super::estimate::expected_start;
use super::model::{offered_cores, CpuSample, NodeEntry, NodeState};
use crate::format;
use graze_proto::{JobState, JobView, Stream};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize as _};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{
    Axis, Block, Borders, Cell, Chart, Clear, Dataset, GraphType, Paragraph, Row, Sparkline, Table,
    TableState, Wrap,
};
use ratatui::Frame;

const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
const JOBS_COLOR: Color = Color::Green;
const OWNER_COLOR: Color = Color::Yellow;

fn state_color(s: NodeState) -> Color {
    match s {
        NodeState::Running => Color::Green,
        NodeState::Offered => Color::Cyan,
        NodeState::Idle => Color::Blue,
        NodeState::OwnerBusy => Color::Yellow,
        NodeState::OutsideWindow | NodeState::Snoozed => Color::Magenta,
        NodeState::Starting => Color::Gray,
        NodeState::Offline => Color::Red,
    }
}

fn job_color(s: JobState) -> Color {
    match s {
        JobState::Queued => Color::Yellow,
        JobState::Running => Color::Green,
        JobState::Suspended => Color::Blue,
        JobState::Cancelling => Color::Magenta,
        JobState::Completed => Color::Cyan,
        JobState::Failed => Color::Red,
        JobState::Cancelled => Color::Gray,
        JobState::Timeout | JobState::DependencyFailed => Color::LightRed,
    }
}

impl App {
    /// Draw the whole screen. Call [`App::prepare`] first so the rows are in order.
    pub fn draw(&self, f: &mut Frame<'_>) {
        let area = f.area();
        let banner = u16::from(self.model.lost.is_some() || !self.model.connected);
        let [top, ban, body, foot] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Length(banner),
            Constraint::Min(0),
            Constraint::Length(1),
        ])
        .areas(area);
        self.draw_top(f, top);
        if banner > 0 {
            let text = match &self.model.lost {
                Some((why, n)) => format!(
                    " scheduler lost: {why} - reconnecting (attempt {n}); data shown is from before"
                ),
                None => " connecting to the scheduler…".to_string(),
            };
            f.render_widget(
                Paragraph::new(text).style(Style::new().bg(Color::Red).fg(Color::White).bold()),
                ban,
            );
        }
        match self.screen {
            Screen::Nodes => self.draw_nodes(f, body),
            Screen::Queue => self.draw_queue(f, body),
            Screen::Job => self.draw_job(f, body),
            Screen::Harvest => self.draw_harvest(f, body),
            Screen::Trace => match &self.trace {
                Some(t) => t.draw(f, body),
                None => f.render_widget(Block::bordered().title(" no trace "), body),
            },
        }
        self.draw_footer(f, foot);
        match &self.mode {
            Mode::Help => self.draw_help(f, area),
            Mode::Confirm(id) => {
                let what = self
                    .model
                    .jobs
                    .get(id)
                    .map(|j| {
                        format!(
                            "{}, {} on {}",
                            format::job_name(&j.spec),
                            j.state,
                            format::hosts(&j.allocation)
                        )
                    })
                    .unwrap_or_default();
                let text = Text::from(vec![
                    Line::from(format!("Cancel job {id}?")).bold(),
                    Line::from(what),
                    Line::from(""),
                    Line::from("y: cancel it   n / Esc: keep it"),
                ]);
                popup(f, area, "cancel", text, 44, 6);
            }
            _ => {}
        }
    }

    fn draw_top(&self, f: &mut Frame<'_>, area: Rect) {
        let mut spans = vec![Span::styled(" graze top ", Style::new().bold().reversed())];
        let tab = |name: String, on: bool| {
            let st = if on {
                Style::new().bold().fg(Color::Black).bg(Color::Cyan)
            } else {
                Style::new().fg(Color::Cyan)
            };
            Span::styled(format!(" {name} "), st)
        };
        spans.push(Span::raw(" "));
        spans.push(tab("1 Nodes".into(), self.screen == Screen::Nodes));
        spans.push(tab("2 Queue".into(), self.screen == Screen::Queue));
        if let Some(j) = self.open_job() {
            spans.push(tab(
                format!(
                    "3 Job {} {}",
                    crate::batch::job_label(j),
                    format::job_name(&j.spec)
                ),
                self.screen == Screen::Job,
            ));
        }
        // Like the job tab, shown while open (key 4 opens it).
        if self.screen == Screen::Harvest {
            spans.push(tab("4 Harvest".into(), true));
        }
        if let Some(t) = &self.trace {
            spans.push(tab(
                format!("5 Trace {}", t.job),
                self.screen == Screen::Trace,
            ));
        }
        let m = &self.model;
        let online = m.nodes.values().filter(|e| e.view.online).count();
        let used: u32 = m.nodes.values().map(|e| e.view.used_cores).sum();
        let offered: u32 = m.nodes.values().map(|e| offered_cores(&e.view)).sum();
        let running = m
            .jobs
            .values()
            .filter(|j| j.state == JobState::Running)
            .count();
        let queued = m
            .jobs
            .values()
            .filter(|j| j.state == JobState::Queued)
            .count();
        let total: u32 = m.nodes.values().map(|e| e.view.info.cores).sum();
        let left: usize = spans.iter().map(|s| s.width()).sum();
        let room = (area.width as usize).saturating_sub(left);
        let long = format!(
            " nodes {online}/{} online · cores {used} used, {offered} offered, {total} total · jobs {running} running, {queued} waiting ",
            m.nodes.len()
        );
        let short = format!(" cores {used}/{offered}/{total} · {running} run {queued} wait ");
        if let Some(summary) = [long, short]
            .into_iter()
            .find(|s| s.chars().count() <= room)
        {
            spans.push(Span::raw(" ".repeat(room - summary.chars().count())));
            spans.push(Span::styled(summary, Style::new().dim()));
        }
        f.render_widget(Line::from(spans), area);
    }

    fn draw_footer(&self, f: &mut Frame<'_>, area: Rect) {
        let line = if self.mode == Mode::Filter {
            let text = match self.screen {
                Screen::Queue => &self.job_filter,
                _ => &self.node_filter,
            };
            Line::from(vec![
                Span::styled(" filter: ", Style::new().bold()),
                Span::raw(format!("{text}▏")),
                Span::styled("  Enter keep · Esc clear", Style::new().dim()),
            ])
        } else if let Some(n) = &self.notice {
            Line::from(Span::styled(
                format!(" {n}"),
                Style::new().fg(Color::Yellow),
            ))
        } else {
            let keys = match self.screen {
                Screen::Nodes if self.owner_key => {
                    "↑↓ move · Enter job · s sort · / filter · o owner types · Tab · ? · q"
                }
                Screen::Nodes => {
                    "↑↓ move · Enter job · s sort · / filter · Tab queue · ? help · q quit"
                }
                Screen::Queue => {
                    "↑↓ move · Enter open · t trace · c cancel · / filter · Tab · ? · q quit"
                }
                Screen::Job if self.owner_key => {
                    "↑↓ rank · PgUp/PgDn scroll · c cancel · o owner types · Esc · ? · q"
                }
                Screen::Job => {
                    "↑↓ rank · PgUp/PgDn scroll · t trace · c cancel · Esc back · ? · q quit"
                }
                Screen::Trace => "+/- zoom · ←→ h l pan · 0 fit · ↑↓ rank · Esc/q back · ? help",
                Screen::Harvest => {
                    "figures of the last 7 days, asked again each minute · Tab · ? help · q quit"
                }
            };
            Line::from(Span::styled(format!(" {keys}"), Style::new().dim()))
        };
        f.render_widget(line, area);
    }

    fn draw_nodes(&self, f: &mut Frame<'_>, area: Rect) {
        let detail = if area.height >= 16 { 7 } else { 0 };
        let [table_area, detail_area] =
            Layout::vertical([Constraint::Min(3), Constraint::Length(detail)]).areas(area);
        let wide = area.width >= 120;
        let spark_w: u16 = if wide { 30 } else { 12 };
        let header = [
            "NODE",
            "STATE",
            "CORES",
            "CPU jobs/owner",
            "IDLE",
            "GROUPS",
            "JOBS",
        ];
        let widths = [
            Constraint::Length(if wide { 16 } else { 8 }),
            Constraint::Length(10),
            Constraint::Length(7),
            Constraint::Length(spark_w.max(14)),
            Constraint::Length(6),
            Constraint::Length(if wide { 20 } else { 8 }),
            Constraint::Min(4),
        ];
        let visible = table_area.height.saturating_sub(3) as usize;
        let (offset, sel) = window(self.node_sel, visible, self.node_rows.len());
        let rows: Vec<Row<'_>> = self.node_rows
            [offset..(offset + visible).min(self.node_rows.len())]
            .iter()
            .filter_map(|name| self.model.nodes.get(name))
            .map(|e| node_row(e, spark_w as usize))
            .collect();
        let title = format!(
            " nodes ({}){} · sort: {} ",
            self.node_rows.len(),
            filter_note(&self.node_filter),
            self.node_sort.label()
        );
        render_list(f, table_area, rows, widths, &header, title, sel);
        if detail > 0 {
            self.draw_node_detail(f, detail_area);
        }
    }

    fn draw_node_detail(&self, f: &mut Frame<'_>, area: Rect) {
        let Some(e) = self.selected_node().and_then(|n| self.model.nodes.get(n)) else {
            f.render_widget(Block::bordered().title(" no node "), area);
            return;
        };
        let v = &e.view;
        let last = e.history.back().copied().unwrap_or_default();
        let title = Line::from(vec![
            Span::raw(format!(" {} ", v.info.name)).bold(),
            Span::raw(format!("{} · cpu last {} · ", v.info.addr, history_span(e))),
            Span::styled(
                format!("jobs {:.0}%", last.jobs),
                Style::new().fg(JOBS_COLOR),
            ),
            Span::raw(" · "),
            Span::styled(
                format!("owner {:.0}%", last.owner),
                Style::new().fg(OWNER_COLOR),
            ),
            Span::raw(" "),
        ]);
        let block = Block::bordered().title(title);
        let inner = block.inner(area);
        f.render_widget(block, area);
        let [info, jobs, owner] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Length(2),
            Constraint::Length(2),
        ])
        .areas(inner);
        let sources = v
            .status
            .as_ref()
            .map(|s| s.idle_sources.join(" "))
            .unwrap_or_default();
        let why = v
            .status
            .as_ref()
            .map(|s| s.availability.to_string())
            .unwrap_or_else(|| if v.online { "no status yet" } else { "offline" }.into());
        f.render_widget(
            Line::from(format!(
                "{why} · {} cores, {} socket(s), {} GiB · idle sources: {}",
                v.info.cores,
                v.info.sockets,
                v.info.memory_bytes >> 30,
                if sources.is_empty() { "-" } else { &sources }
            ))
            .dim(),
            info,
        );
        let w = jobs.width.saturating_sub(6) as usize;
        let take = |pick: fn(&CpuSample) -> f32| -> Vec<u64> {
            let skip = e.history.len().saturating_sub(w);
            e.history
                .iter()
                .skip(skip)
                .map(|s| pick(s).round() as u64)
                .collect()
        };
        for (area, label, color, data) in [
            (jobs, "jobs ", JOBS_COLOR, take(|s| s.jobs)),
            (owner, "owner", OWNER_COLOR, take(|s| s.owner)),
        ] {
            let [l, r] =
                Layout::horizontal([Constraint::Length(6), Constraint::Min(0)]).areas(area);
            f.render_widget(Span::styled(label, Style::new().fg(color)), l);
            f.render_widget(
                Sparkline::default()
                    .data(data)
                    .max(100)
                    .style(Style::new().fg(color)),
                r,
            );
        }
    }

    fn draw_queue(&self, f: &mut Frame<'_>, area: Rect) {
        let detail = if area.height >= 16 { 7 } else { 0 };
        let [table_area, detail_area] =
            Layout::vertical([Constraint::Min(3), Constraint::Length(detail)]).areas(area);
        let wide = area.width >= 120;
        let header = [
            "ID",
            "NAME",
            "USER",
            "CORES",
            "STATE",
            "TIME",
            "RQ",
            "WHERE / WHY",
        ];
        let widths = [
            Constraint::Length(5),
            Constraint::Length(if wide { 16 } else { 8 }),
            Constraint::Length(if wide { 10 } else { 6 }),
            Constraint::Length(5),
            Constraint::Length(10),
            Constraint::Length(6),
            Constraint::Length(2),
            Constraint::Min(10),
        ];
        let visible = table_area.height.saturating_sub(3) as usize;
        let (offset, sel) = window(self.job_sel, visible, self.job_rows.len());
        let rows: Vec<Row<'_>> = self.job_rows[offset..(offset + visible).min(self.job_rows.len())]
            .iter()
            .filter_map(|id| self.model.jobs.get(id))
            .map(|j| {
                Row::new(vec![
                    Cell::from(crate::batch::job_label(j)),
                    Cell::from(format::job_name(&j.spec).to_string()),
                    Cell::from(j.spec.user.clone()),
                    Cell::from(j.spec.nprocs.to_string()),
                    Cell::from(Span::styled(
                        j.state.to_string(),
                        Style::new().fg(job_color(j.state)),
                    )),
                    Cell::from(format::elapsed(j, self.now_ms)),
                    Cell::from(j.requeues.to_string()),
                    Cell::from(format::where_or_why(j)),
                ])
            })
            .collect();
        let title = format!(
            " queue ({} jobs){} ",
            self.job_rows.len(),
            filter_note(&self.job_filter)
        );
        render_list(f, table_area, rows, widths, &header, title, sel);
        if detail > 0 {
            self.draw_job_detail(f, detail_area);
        }
    }

    fn draw_job_detail(&self, f: &mut Frame<'_>, area: Rect) {
        let Some(j) = self.selected_job() else {
            f.render_widget(Block::bordered().title(" no job "), area);
            return;
        };
        let mut lines = vec![Line::from(format!(
            "{} · {} · submitted {} ago by {} · {}",
            format::request(&j.spec),
            format::shell_words(&j.spec.command),
            format::duration(self.now_ms.saturating_sub(j.submitted_ms)),
            j.spec.user,
            match j.state {
                JobState::Queued => "Enter: open its (empty) output",
                s if s.is_final() => "Enter: its output",
                _ => "Enter: live output",
            }
        ))];
        if j.state == JobState::Queued {
            lines.push(Line::from(vec![
                Span::styled("waits: ", Style::new().bold()),
                Span::raw(crate::when::waiting_for(j).unwrap_or_else(|| "-".into())),
            ]));
            lines.push(Line::from(vec![
                Span::styled("expected start: ", Style::new().bold()),
                Span::raw(expected_start(&self.model, j).to_string()),
            ]));
        }
        let room = (area.height as usize).saturating_sub(2 + lines.len());
        let skip = j.events.len().saturating_sub(room);
        for e in &j.events[skip..] {
            let ago = format::duration(self.now_ms.saturating_sub(e.at_ms));
            lines.push(Line::from(format!("{ago:>5} ago  {}", e.what)).dim());
        }
        let title = format!(
            " job {} {} ",
            crate::batch::job_label(j),
            format::job_name(&j.spec)
        );
        f.render_widget(
            Paragraph::new(lines)
                .block(Block::bordered().title(title))
                .wrap(Wrap { trim: true }),
            area,
        );
    }

    fn draw_job(&self, f: &mut Frame<'_>, area: Rect) {
        let Some(job) = self.open_job() else {
            f.render_widget(
                Paragraph::new("no job open: pick one in the queue (Tab) and press Enter")
                    .block(Block::bordered()),
                area,
            );
            return;
        };
        let [head, rest] =
            Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(area);
        let mut spans = vec![
            Span::raw(format!(" job {} ", job.id)).bold(),
            Span::raw(format!("{} · ", format::job_name(&job.spec))),
            Span::styled(job.state.to_string(), Style::new().fg(job_color(job.state))),
            Span::raw(format!(
                " {} · {} · requeues {}",
                format::elapsed(job, self.now_ms),
                format::hosts(&job.allocation),
                job.requeues
            )),
        ];
        if let Some(e) = job.exit {
            spans.push(Span::raw(format!(" · {e}")));
        }
        if self.model.logs.complete {
            spans.push(Span::raw(" · output complete").dim());
        }
        f.render_widget(Line::from(spans), head);
        let rank_w = if area.width >= 120 { 38 } else { 29 };
        let [ranks, right] =
            Layout::horizontal([Constraint::Length(rank_w), Constraint::Min(0)]).areas(rest);
        self.draw_ranks(f, ranks, job);
        let pi = &self.model.logs.pi;
        if pi.is_empty() {
            self.draw_output(f, right);
        } else {
            let [chart, out] =
                Layout::vertical([Constraint::Percentage(45), Constraint::Min(4)]).areas(right);
            draw_pi_chart(f, chart, pi);
            self.draw_output(f, out);
        }
    }

    fn draw_ranks(&self, f: &mut Frame<'_>, area: Rect, job: &JobView) {
        let rows_data = self.rank_rows();
        let visible = area.height.saturating_sub(3) as usize;
        let (offset, sel) = window(self.rank_sel, visible, rows_data.len());
        let rows: Vec<Row<'_>> = rows_data[offset..(offset + visible).min(rows_data.len())]
            .iter()
            .map(|(r, host)| {
                let lines = self.model.logs.ranks.get(r).map_or(0, |q| q.len());
                let state = match host {
                    Some(h) => self.model.rank_state(job, h),
                    None => "-",
                };
                Row::new(vec![
                    Cell::from(r.map_or("mpiexec".to_string(), |r| r.to_string())),
                    Cell::from(host.clone().unwrap_or_else(|| "-".into())),
                    Cell::from(state),
                    Cell::from(lines.to_string()),
                ])
            })
            .collect();
        let widths = [
            Constraint::Length(7),
            Constraint::Min(4),
            Constraint::Length(10),
            Constraint::Length(5),
        ];
        let title = format!(" ranks ({}) ", rows_data.len());
        render_list(
            f,
            area,
            rows,
            widths,
            &["RANK", "NODE", "STATE", "LINES"],
            title,
            sel,
        );
    }

    fn draw_output(&self, f: &mut Frame<'_>, area: Rect) {
        let rank = self.selected_rank().map(|(r, _)| r);
        let lines = rank.and_then(|r| self.model.logs.ranks.get(&r));
        let h = area.height.saturating_sub(2) as usize;
        let total = lines.map_or(0, |q| q.len());
        let scroll = self.scroll.min(total.saturating_sub(h));
        let end = total - scroll;
        let start = end.saturating_sub(h);
        let text: Vec<Line<'_>> = lines
            .map(|q| {
                q.range(start..end)
                    .map(|l| match l.stream {
                        Stream::Stdout => Line::from(l.line.as_str()),
                        Stream::Stderr => {
                            Line::styled(l.line.as_str(), Style::new().fg(Color::Red))
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        let who = match rank {
            Some(Some(r)) => format!("rank {r}"),
            Some(None) => "mpiexec (no rank label)".into(),
            None => "-".into(),
        };
        let pos = if scroll > 0 {
            format!(" · {scroll} lines back (End: follow)")
        } else {
            " · live".into()
        };
        let text = if text.is_empty() {
            vec![Line::from("no output yet").dim()]
        } else {
            text
        };
        f.render_widget(
            Paragraph::new(text).block(Block::bordered().title(format!(" output of {who}{pos} "))),
            area,
        );
    }

    fn draw_harvest(&self, f: &mut Frame<'_>, area: Rect) {
        let Some(d) = &self.model.harvest else {
            let p = Paragraph::new("asking the scheduler for the harvest figures…")
                .block(Block::bordered().title(" harvest "));
            f.render_widget(p, area);
            return;
        };
        // Per-PC figures do not depend on the local day split: UTC keeps drawing pure.
        let r = crate::report::build_report(d, &|_| 0);
        let ms = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |x| format!("{x:.1}"));
        // Core-hours given, offered and used; owner suspensions and vacates; release latency.
        let header = [
            "PC", "GIVEN", "SUSP", "VAC", "P50 MS", "P99 MS", "OFFERED", "USED", "USE%",
        ];
        let widths = [
            Constraint::Length(12),
            Constraint::Length(8),
            Constraint::Length(4),
            Constraint::Length(4),
            Constraint::Length(7),
            Constraint::Length(7),
            Constraint::Length(8),
            Constraint::Length(8),
            Constraint::Min(5),
        ];
        let rows: Vec<Row<'_>> = r
            .pcs
            .iter()
            .map(|p| {
                let share = if p.offered_core_hours > 0.0 {
                    format!("{:.0}%", 100.0 * p.used_core_hours / p.offered_core_hours)
                } else {
                    "-".into()
                };
                Row::new(vec![
                    Cell::from(p.node.clone()),
                    Cell::from(format!("{:.2}", p.core_hours)),
                    Cell::from(p.suspensions.to_string()),
                    Cell::from(p.vacates.to_string()),
                    Cell::from(ms(p.release_p50_ms)),
                    Cell::from(ms(p.release_p99_ms)),
                    Cell::from(format!("{:.2}", p.offered_core_hours)),
                    Cell::from(format!("{:.2}", p.used_core_hours)),
                    Cell::from(share),
                ])
            })
            .collect();
        let total: f64 = r.pcs.iter().map(|p| p.core_hours).sum();
        let title = format!(
            " harvest in core-hours since {} ({} PCs, {total:.2} given, {} runs) ",
            format::timestamp(d.since_ms),
            r.pcs.len(),
            d.attempts.iter().filter(|a| a.attempt > 0).count()
        );
        render_list(f, area, rows, widths, &header, title, None);
    }

    fn draw_help(&self, f: &mut Frame<'_>, area: Rect) {
        let mut rows = vec![
            ("↑ ↓  j k", "move; in a job: switch rank"),
            ("PgUp PgDn g G", "page, top, bottom; in a job: scroll"),
            ("Enter", "open the job (output, ranks, pi chart)"),
            ("Tab  1 2 3 4", "next view: nodes, queue, job, harvest"),
            ("/", "filter the nodes or the queue; Esc clears"),
            ("s", "sort the nodes: name, state, cpu, idle"),
            ("c", "cancel the job (asks first)"),
            ("t", "the job's trace: + - zoom, ← → pan, 0 fit"),
            ("Esc", "back from the job or trace view"),
            ("mouse wheel", "scroll; in a trace: zoom"),
            ("q  Ctrl-C", "quit"),
        ];
        if self.owner_key {
            rows.push(("o", "demo: the node's owner touches the keyboard"));
        }
        let text: Vec<Line<'_>> = rows
            .iter()
            .map(|(k, what)| {
                Line::from(vec![
                    Span::styled(format!("{k:<14}"), Style::new().bold().fg(Color::Cyan)),
                    Span::raw(*what),
                ])
            })
            .collect();
        let h = text.len() as u16 + 2;
        popup(f, area, "keys (any key closes)", Text::from(text), 62, h);
    }
}

/// A bordered list: bold underlined `header`, the `sel` row (within `rows`) reversed.
fn render_list<'a, const N: usize>(
    f: &mut Frame<'_>,
    area: Rect,
    rows: Vec<Row<'a>>,
    widths: [Constraint; N],
    header: &[&'a str],
    title: String,
    sel: Option<usize>,
) {
    let table = Table::new(rows, widths)
        .header(Row::new(header.iter().copied()).style(Style::new().bold().underlined()))
        .block(Block::bordered().title(title))
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
        .column_spacing(1);
    let mut st = TableState::default().with_selected(sel);
    f.render_stateful_widget(table, area, &mut st);
}

/// The title's note of an active list filter.
fn filter_note(filter: &str) -> String {
    if filter.is_empty() {
        String::new()
    } else {
        format!(" · filter '{filter}'")
    }
}

/// Which rows to show so the selection is visible: (offset, selected row within the window).
pub(super) fn window(sel: usize, visible: usize, len: usize) -> (usize, Option<usize>) {
    if len == 0 || visible == 0 {
        return (0, None);
    }
    let sel = sel.min(len - 1);
    let offset = if sel >= visible { sel + 1 - visible } else { 0 };
    (offset, Some(sel - offset))
}

fn history_span(e: &NodeEntry) -> String {
    format::duration(e.history.len() as u64 * 1000)
}

fn node_row(e: &NodeEntry, spark_w: usize) -> Row<'_> {
    let v = &e.view;
    let st = NodeState::of(v);
    let idle = v
        .status
        .as_ref()
        .map_or("-".to_string(), |s| format::duration(s.owner_idle_ms));
    let jobs = if v.jobs.is_empty() {
        "-".to_string()
    } else {
        v.jobs
            .iter()
            .map(|j| j.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let groups = if v.info.groups.is_empty() {
        "-".to_string()
    } else {
        v.info.groups.join(",")
    };
    Row::new(vec![
        Cell::from(v.info.name.as_str()),
        Cell::from(Span::styled(st.label(), Style::new().fg(state_color(st)))),
        Cell::from(format!(
            "{}/{}/{}",
            v.used_cores,
            offered_cores(v),
            v.info.cores
        )),
        Cell::from(spark_line(e, spark_w)),
        Cell::from(idle),
        Cell::from(groups),
        Cell::from(jobs),
    ])
}

/// A one-line sparkline of the total CPU: each bar's height is the total, its colour says
/// whose share is larger (green: jobs, yellow: owner).
fn spark_line(e: &NodeEntry, w: usize) -> Line<'static> {
    let skip = e.history.len().saturating_sub(w);
    let mut spans: Vec<Span<'static>> = Vec::with_capacity(w);
    let pad = w.saturating_sub(e.history.len() - skip);
    if pad > 0 {
        spans.push(Span::raw(" ".repeat(pad)));
    }
    for s in e.history.iter().skip(skip) {
        let i = ((s.total() / 100.0) * 7.0).round().clamp(0.0, 7.0) as usize;
        let color = if s.owner > s.jobs {
            OWNER_COLOR
        } else {
            JOBS_COLOR
        };
        spans.push(Span::styled(BARS[i].to_string(), Style::new().fg(color)));
    }
    Line::from(spans)
}

fn draw_pi_chart(f: &mut Frame<'_>, area: Rect, pi: &[(f64, f64)]) {
    let pts: Vec<(f64, f64)> = pi
        .iter()
        .enumerate()
        .map(|(i, (p, _))| ((i + 1) as f64, *p))
        .collect();
    let n = pts.len() as f64;
    let (cur, delta) = pi.last().copied().unwrap_or_default();
    let pi_ref = std::f64::consts::PI;
    // Skip the first round (compared against 0) when scaling, unless it is all there is.
    let body = if pts.len() > 2 { &pts[1..] } else { &pts[..] };
    let lo = body.iter().map(|p| p.1).fold(pi_ref, f64::min);
    let hi = body.iter().map(|p| p.1).fold(pi_ref, f64::max);
    let margin = ((hi - lo) * 0.1).max(1e-4);
    let (lo, hi) = (lo - margin, hi + margin);
    let reference = [(1.0, pi_ref), (n.max(2.0), pi_ref)];
    let datasets = vec![
        Dataset::default()
            .name("π")
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(Style::new().fg(Color::DarkGray))
            .data(&reference),
        Dataset::default()
            .name("estimate")
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(Style::new().fg(Color::Cyan))
            .data(&pts),
    ];
    let title = Line::from(vec![
        Span::raw(" pi ≈ "),
        Span::styled(format!("{cur:.6}"), Style::new().bold().fg(Color::Cyan)),
        Span::raw(format!(
            " · round {} · delta {delta:.6} · error {:.6} ",
            pts.len(),
            (cur - pi_ref).abs()
        )),
    ]);
    let chart = Chart::new(datasets)
        .block(Block::bordered().title(title))
        .x_axis(
            Axis::default()
                .bounds([1.0, n.max(2.0)])
                .labels(vec![Line::from("1"), Line::from(format!("{}", pts.len()))]),
        )
        .y_axis(Axis::default().bounds([lo, hi]).labels(vec![
            Line::from(format!("{lo:.4}")),
            Line::from(format!("{hi:.4}")),
        ]))
        .hidden_legend_constraints((Constraint::Percentage(40), Constraint::Percentage(40)));
    f.render_widget(chart, area);
}

fn popup(f: &mut Frame<'_>, area: Rect, title: &str, text: Text<'_>, w: u16, h: u16) {
    let w = w.min(area.width);
    let h = h.min(area.height);
    let r = Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    };
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(text)
            .block(
                Block::default()
                    .borders(Borders::ALL)
                    .title(format!(" {title} "))
                    .border_style(Style::new().fg(Color::Cyan)),
            )
            .wrap(Wrap { trim: false }),
        r,
    );
}

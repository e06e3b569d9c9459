//! The state of `graze top` and how events change it: [`App::update`] takes one [`Event`] and
//! returns the [`Command`]s for the loop to carry out. Drawing is in `draw.rs` and only reads.

use super::model::{DataEvent, Model, NodeState};
use super::timeline::{Timeline, TraceState, TraceView};
use crate::format;
use crossterm::event::{
    Event as TermEvent, KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseEvent, MouseEventKind,
};
use graze_proto::{JobId, JobState, JobView};

/// Everything the app reacts to.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// From the scheduler feed.
    Data(DataEvent),
    /// A key, mouse or resize event from the terminal.
    Term(TermEvent),
    /// The clock: ms since the epoch. Takes CPU samples and moves durations on.
    Tick(u64),
}

/// Effects the loop carries out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Follow this job's output (stored lines, then live ones).
    OpenLogs(JobId),
    /// Cancel this job (the user confirmed).
    Cancel(JobId),
    /// Ask for the harvest report's data of the last [`HARVEST_PERIOD_MS`].
    LoadHarvest,
    /// Ask for this job's merged trace (answered by [`DataEvent::Trace`]).
    LoadTrace(JobId),
    /// Demo only: make the node's owner look active (touch its idle file).
    TouchOwner(String),
    /// Leave.
    Quit,
}

/// The three screens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    /// One row per node.
    Nodes,
    /// One row per job.
    Queue,
    /// The open job: ranks, output, Pi chart.
    Job,
    /// The harvest report per PC (`graze report`'s figures).
    Harvest,
    /// The timeline of a traced job (`t` on a job).
    Trace,
}

/// The harvest view's period: the last 7 days.
pub const HARVEST_PERIOD_MS: u64 = 7 * 86_400_000;

/// The harvest view asks again this often while shown (its figures are history, not pushed).
pub const HARVEST_REFRESH_MS: u64 = 60_000;

/// Modal states on top of a screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Keys go to the screen.
    Normal,
    /// Typing a filter for the current screen.
    Filter,
    /// Asking whether to cancel this job.
    Confirm(JobId),
    /// The key help.
    Help,
}

/// How the nodes view is sorted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeSort {
    /// By name.
    Name,
    /// By state, then name.
    State,
    /// By CPU load, highest first.
    Cpu,
    /// By owner idle time, longest first.
    Idle,
}

impl NodeSort {
    fn next(self) -> NodeSort {
        match self {
            NodeSort::Name => NodeSort::State,
            NodeSort::State => NodeSort::Cpu,
            NodeSort::Cpu => NodeSort::Idle,
            NodeSort::Idle => NodeSort::Name,
        }
    }
    /// Its name in the title.
    pub fn label(self) -> &'static str {
        match self {
            NodeSort::Name => "name",
            NodeSort::State => "state",
            NodeSort::Cpu => "cpu",
            NodeSort::Idle => "owner idle",
        }
    }
}

/// Whether a key was used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Consumed,
    NotConsumed,
}

/// Rows a page key moves.
const PAGE: usize = 10;

/// The app: the data, what is selected and shown, and the rows in display order.
#[derive(Debug, Clone)]
pub struct App {
    /// The data.
    pub model: Model,
    /// Time of the last tick, ms since the epoch.
    pub now_ms: u64,
    /// The screen shown.
    pub screen: Screen,
    /// Modal state.
    pub mode: Mode,
    /// Filter of the nodes view.
    pub node_filter: String,
    /// Filter of the queue view.
    pub job_filter: String,
    /// Sort of the nodes view.
    pub node_sort: NodeSort,
    /// Selected row of the nodes view.
    pub node_sel: usize,
    /// Selected row of the queue view.
    pub job_sel: usize,
    /// Selected rank row of the job view.
    pub rank_sel: usize,
    /// Output lines scrolled back from the newest.
    pub scroll: usize,
    /// The open job.
    pub open: Option<JobId>,
    /// Status line message.
    pub notice: Option<String>,
    /// Whether `o` (owner touches the keyboard) is offered: only in `graze demo`.
    pub owner_key: bool,
    /// Node names in display order (after filter and sort).
    pub node_rows: Vec<String>,
    /// Job ids in display order (after filter).
    pub job_rows: Vec<JobId>,
    rows_dirty: bool,
    /// When the harvest view last asked for its data.
    harvest_asked_ms: Option<u64>,
    /// The timeline screen's job and trace, once `t` asked for one.
    pub trace: Option<TraceView>,
}

impl App {
    /// A new app at `now_ms`.
    pub fn new(now_ms: u64, owner_key: bool) -> App {
        App {
            model: Model::default(),
            now_ms,
            screen: Screen::Nodes,
            mode: Mode::Normal,
            node_filter: String::new(),
            job_filter: String::new(),
            node_sort: NodeSort::Name,
            node_sel: 0,
            job_sel: 0,
            rank_sel: 0,
            scroll: 0,
            open: None,
            notice: None,
            owner_key,
            node_rows: Vec::new(),
            job_rows: Vec::new(),
            rows_dirty: true,
            harvest_asked_ms: None,
            trace: None,
        }
    }

    /// Take in one event; the commands to carry out.
    pub fn update(&mut self, ev: Event) -> Vec<Command> {
        let mut out = Vec::new();
        match ev {
            Event::Data(DataEvent::Trace { job, trace }) => self.trace_arrived(job, trace),
            Event::Data(d) => {
                if let DataEvent::Notice(n) = &d {
                    self.notice = Some(n.clone());
                }
                let reopen = matches!(d, DataEvent::Snapshot { .. });
                if self.model.apply(d) {
                    self.rows_dirty = true;
                }
                // After a reconnection the open job's output stream starts again.
                if reopen {
                    if let Some(id) = self.open {
                        out.push(Command::OpenLogs(id));
                    }
                }
            }
            Event::Tick(now) => {
                self.now_ms = now;
                self.model.sample(now);
                self.refresh_harvest(&mut out);
            }
            Event::Term(TermEvent::Key(k)) if k.kind != KeyEventKind::Release => {
                self.prepare();
                self.key(k, &mut out);
            }
            Event::Term(TermEvent::Mouse(m)) => {
                self.prepare();
                self.mouse(m);
            }
            Event::Term(_) => {}
        }
        out
    }

    /// Rebuild the display order of rows if the data changed, keeping the selected row.
    pub fn prepare(&mut self) {
        if !self.rows_dirty {
            return;
        }
        self.rows_dirty = false;
        let sel_node = self.node_rows.get(self.node_sel).cloned();
        let sel_job = self.job_rows.get(self.job_sel).copied();
        self.node_rows = self.sorted_nodes();
        self.job_rows = self.ordered_jobs();
        if let Some(i) = sel_node.and_then(|n| self.node_rows.iter().position(|r| *r == n)) {
            self.node_sel = i;
        }
        if let Some(i) = sel_job.and_then(|j| self.job_rows.iter().position(|r| *r == j)) {
            self.job_sel = i;
        }
        self.node_sel = self.node_sel.min(self.node_rows.len().saturating_sub(1));
        self.job_sel = self.job_sel.min(self.job_rows.len().saturating_sub(1));
    }

    fn sorted_nodes(&self) -> Vec<String> {
        let f = self.node_filter.to_lowercase();
        let mut rows: Vec<&super::model::NodeEntry> = self
            .model
            .nodes
            .values()
            .filter(|e| {
                f.is_empty()
                    || e.view.info.name.to_lowercase().contains(&f)
                    || NodeState::of(&e.view).label().contains(&f)
                    || e.view
                        .info
                        .groups
                        .iter()
                        .any(|g| g.to_lowercase().contains(&f))
            })
            .collect();
        let cpu =
            |e: &super::model::NodeEntry| e.history.back().map_or(0, |s| (s.total() * 10.0) as i64);
        let idle =
            |e: &super::model::NodeEntry| e.view.status.as_ref().map_or(0, |s| s.owner_idle_ms);
        match self.node_sort {
            NodeSort::Name => {}
            NodeSort::State => rows.sort_by_key(|e| NodeState::of(&e.view)),
            NodeSort::Cpu => rows.sort_by_key(|e| std::cmp::Reverse(cpu(e))),
            NodeSort::Idle => rows.sort_by_key(|e| std::cmp::Reverse(idle(e))),
        }
        rows.into_iter().map(|e| e.view.info.name.clone()).collect()
    }

    /// Running jobs first, then queued in run order, then finished ones, newest first.
    fn ordered_jobs(&self) -> Vec<JobId> {
        let f = self.job_filter.to_lowercase();
        let mut rows: Vec<&JobView> = self
            .model
            .jobs
            .values()
            .filter(|j| {
                f.is_empty()
                    || j.id.to_string() == f
                    || crate::batch::job_label(j) == f
                    || j.task.is_some_and(|t| t.array.to_string() == f)
                    || format::job_name(&j.spec).to_lowercase().contains(&f)
                    || j.spec.user.to_lowercase().contains(&f)
                    || j.state.to_string().contains(&f)
            })
            .collect();
        rows.sort_by_key(|j| {
            let group = match j.state {
                JobState::Running | JobState::Cancelling => 0,
                JobState::Queued => 1,
                _ => 2,
            };
            let order = if group == 2 {
                u64::MAX - j.ended_ms.unwrap_or(0)
            } else {
                j.submitted_ms
            };
            (
                group,
                if group == 1 { -j.spec.priority } else { 0 },
                order,
                j.id,
            )
        });
        rows.into_iter().map(|j| j.id).collect()
    }

    /// The node of the selected row of the nodes view.
    pub fn selected_node(&self) -> Option<&str> {
        self.node_rows.get(self.node_sel).map(String::as_str)
    }

    /// The job of the selected row of the queue view.
    pub fn selected_job(&self) -> Option<&JobView> {
        self.job_rows
            .get(self.job_sel)
            .and_then(|id| self.model.jobs.get(id))
    }

    /// The open job.
    pub fn open_job(&self) -> Option<&JobView> {
        self.open.and_then(|id| self.model.jobs.get(&id))
    }

    /// The rows of the job view: every rank of the allocation, plus output without a rank.
    pub fn rank_rows(&self) -> Vec<(Option<u32>, Option<String>)> {
        let Some(job) = self.open_job() else {
            return Vec::new();
        };
        let mut rows: Vec<(Option<u32>, Option<String>)> = Model::rank_hosts(job)
            .into_iter()
            .map(|(r, h)| (Some(r), Some(h)))
            .collect();
        for k in self.model.logs.ranks.keys() {
            if !rows.iter().any(|(r, _)| r == k) {
                rows.push((*k, None));
            }
        }
        rows
    }

    /// The rank of the selected row of the job view and its node.
    pub fn selected_rank(&self) -> Option<(Option<u32>, Option<String>)> {
        self.rank_rows().into_iter().nth(self.rank_sel)
    }

    fn open_job_view(&mut self, id: JobId, out: &mut Vec<Command>) {
        if self.open != Some(id) {
            self.open = Some(id);
            self.rank_sel = 0;
            self.scroll = 0;
            self.model.open_logs(id);
            out.push(Command::OpenLogs(id));
        }
        self.screen = Screen::Job;
        self.mode = Mode::Normal;
    }

    /// Show the timeline of `id` and ask for its trace (again, if it was shown before: a
    /// running job's trace grows).
    fn open_trace(&mut self, id: JobId, out: &mut Vec<Command>) {
        let back = match self.screen {
            Screen::Trace => self.trace.as_ref().map_or(Screen::Queue, |t| t.back),
            s => s,
        };
        self.trace = Some(TraceView {
            job: id,
            back,
            state: TraceState::Loading,
        });
        self.screen = Screen::Trace;
        out.push(Command::LoadTrace(id));
    }

    /// A trace (or why there is none) arrived; kept only if it is the one the timeline waits
    /// for.
    fn trace_arrived(&mut self, job: JobId, trace: Result<Box<graze_trace::Trace>, String>) {
        let Some(view) = self.trace.as_mut() else {
            return;
        };
        if view.job != job || view.state != TraceState::Loading {
            return;
        }
        view.state = match trace {
            Ok(t) => TraceState::Loaded(Box::new(Timeline::new(*t))),
            Err(why) => TraceState::Failed(why),
        };
    }

    fn key(&mut self, k: KeyEvent, out: &mut Vec<Command>) {
        let before = self.screen;
        self.screen_key(k, out);
        // Entering the harvest view asks for fresh figures.
        if self.screen == Screen::Harvest && before != Screen::Harvest {
            self.harvest_asked_ms = None;
            self.refresh_harvest(out);
        }
    }

    fn screen_key(&mut self, k: KeyEvent, out: &mut Vec<Command>) {
        let ctrl_c = k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl_c {
            out.push(Command::Quit);
            return;
        }
        let used = match self.mode.clone() {
            Mode::Help => {
                self.mode = Mode::Normal;
                Key::Consumed
            }
            Mode::Confirm(id) => {
                match k.code {
                    KeyCode::Char('y') | KeyCode::Char('Y') | KeyCode::Enter => {
                        out.push(Command::Cancel(id));
                        self.notice = Some(format!("cancelling job {id}…"));
                    }
                    _ => self.notice = Some(format!("job {id} not cancelled")),
                }
                self.mode = Mode::Normal;
                Key::Consumed
            }
            Mode::Filter => self.filter_key(k),
            Mode::Normal => match self.screen {
                Screen::Nodes => self.nodes_key(k, out),
                Screen::Queue => self.queue_key(k, out),
                Screen::Job => self.job_key(k, out),
                Screen::Harvest => Key::NotConsumed,
                Screen::Trace => self.trace_key(k),
            },
        };
        if used == Key::Consumed {
            return;
        }
        match k.code {
            KeyCode::Char('q') => out.push(Command::Quit),
            KeyCode::Char('?') => self.mode = Mode::Help,
            KeyCode::Tab => self.screen = self.next_screen(true),
            KeyCode::BackTab => self.screen = self.next_screen(false),
            KeyCode::Char('1') => self.screen = Screen::Nodes,
            KeyCode::Char('2') => self.screen = Screen::Queue,
            KeyCode::Char('3') if self.open.is_some() => self.screen = Screen::Job,
            KeyCode::Char('4') => self.screen = Screen::Harvest,
            KeyCode::Char('5') if self.trace.is_some() => self.screen = Screen::Trace,
            KeyCode::Char('/') if matches!(self.screen, Screen::Nodes | Screen::Queue) => {
                self.mode = Mode::Filter
            }
            _ => {}
        }
    }

    /// While the harvest view is shown, ask for its data when it has none or it is a minute
    /// old.
    fn refresh_harvest(&mut self, out: &mut Vec<Command>) {
        if self.screen != Screen::Harvest {
            return;
        }
        let due = self
            .harvest_asked_ms
            .is_none_or(|t| self.now_ms.saturating_sub(t) >= HARVEST_REFRESH_MS);
        if due {
            self.harvest_asked_ms = Some(self.now_ms);
            out.push(Command::LoadHarvest);
        }
    }

    fn next_screen(&self, forward: bool) -> Screen {
        let mut all = vec![Screen::Nodes, Screen::Queue];
        if self.open.is_some() {
            all.push(Screen::Job);
        }
        all.push(Screen::Harvest);
        if self.trace.is_some() {
            all.push(Screen::Trace);
        }
        let i = all.iter().position(|s| *s == self.screen).unwrap_or(0);
        let n = all.len();
        all[if forward {
            (i + 1) % n
        } else {
            (i + n - 1) % n
        }]
    }

    fn filter_key(&mut self, k: KeyEvent) -> Key {
        let f = match self.screen {
            Screen::Queue => &mut self.job_filter,
            _ => &mut self.node_filter,
        };
        match k.code {
            KeyCode::Enter => self.mode = Mode::Normal,
            KeyCode::Esc => {
                f.clear();
                self.mode = Mode::Normal;
            }
            KeyCode::Backspace => {
                f.pop();
            }
            KeyCode::Char(c) => f.push(c),
            _ => {}
        }
        self.rows_dirty = true;
        self.prepare();
        Key::Consumed
    }

    /// Move a selection by a navigation key; `NotConsumed` for other keys.
    fn nav(k: KeyEvent, sel: &mut usize, len: usize) -> Key {
        let last = len.saturating_sub(1);
        match k.code {
            KeyCode::Up | KeyCode::Char('k') => *sel = sel.saturating_sub(1),
            KeyCode::Down | KeyCode::Char('j') => *sel = (*sel + 1).min(last),
            KeyCode::PageUp => *sel = sel.saturating_sub(PAGE),
            KeyCode::PageDown => *sel = (*sel + PAGE).min(last),
            KeyCode::Home | KeyCode::Char('g') => *sel = 0,
            KeyCode::End | KeyCode::Char('G') => *sel = last,
            _ => return Key::NotConsumed,
        }
        Key::Consumed
    }

    fn nodes_key(&mut self, k: KeyEvent, out: &mut Vec<Command>) -> Key {
        if Self::nav(k, &mut self.node_sel, self.node_rows.len()) == Key::Consumed {
            return Key::Consumed;
        }
        match k.code {
            KeyCode::Char('s') => {
                self.node_sort = self.node_sort.next();
                self.rows_dirty = true;
                self.prepare();
            }
            KeyCode::Esc => {
                self.node_filter.clear();
                self.rows_dirty = true;
                self.prepare();
            }
            KeyCode::Enter => {
                let job = self
                    .selected_node()
                    .and_then(|n| self.model.nodes.get(n))
                    .and_then(|e| e.view.jobs.first().copied());
                match job {
                    Some(id) => self.open_job_view(id, out),
                    None => self.notice = Some("no job runs on this node".into()),
                }
            }
            KeyCode::Char('o') if self.owner_key => {
                if let Some(n) = self.selected_node() {
                    let n = n.to_string();
                    self.notice = Some(format!("the owner of {n} touched the keyboard"));
                    out.push(Command::TouchOwner(n));
                }
            }
            _ => return Key::NotConsumed,
        }
        Key::Consumed
    }

    fn ask_cancel(&mut self, job: Option<(JobId, JobState)>) {
        match job {
            Some((id, state)) if !state.is_final() => self.mode = Mode::Confirm(id),
            Some((id, state)) => self.notice = Some(format!("job {id} is already {state}")),
            None => {}
        }
    }

    fn queue_key(&mut self, k: KeyEvent, out: &mut Vec<Command>) -> Key {
        if Self::nav(k, &mut self.job_sel, self.job_rows.len()) == Key::Consumed {
            return Key::Consumed;
        }
        match k.code {
            KeyCode::Enter => {
                if let Some(id) = self.selected_job().map(|j| j.id) {
                    self.open_job_view(id, out);
                }
            }
            KeyCode::Char('c') => self.ask_cancel(self.selected_job().map(|j| (j.id, j.state))),
            KeyCode::Char('t') => {
                if let Some(id) = self.selected_job().map(|j| j.id) {
                    self.open_trace(id, out);
                }
            }
            KeyCode::Esc => {
                self.job_filter.clear();
                self.rows_dirty = true;
                self.prepare();
            }
            _ => return Key::NotConsumed,
        }
        Key::Consumed
    }

    fn job_key(&mut self, k: KeyEvent, out: &mut Vec<Command>) -> Key {
        let ranks = self.rank_rows().len();
        let before = self.rank_sel;
        match k.code {
            KeyCode::Up | KeyCode::Char('k') | KeyCode::Left | KeyCode::Char('h') => {
                self.rank_sel = self.rank_sel.saturating_sub(1)
            }
            KeyCode::Down | KeyCode::Char('j') | KeyCode::Right | KeyCode::Char('l') => {
                self.rank_sel = (self.rank_sel + 1).min(ranks.saturating_sub(1))
            }
            KeyCode::PageUp => self.scroll += PAGE,
            KeyCode::PageDown => self.scroll = self.scroll.saturating_sub(PAGE),
            KeyCode::End | KeyCode::Char('G') => self.scroll = 0,
            KeyCode::Char('c') => {
                self.ask_cancel(self.open_job().map(|j| (j.id, j.state)));
            }
            KeyCode::Char('t') => {
                if let Some(id) = self.open {
                    self.open_trace(id, out);
                }
            }
            KeyCode::Char('o') if self.owner_key => {
                if let Some((_, Some(node))) = self.selected_rank() {
                    self.notice = Some(format!("the owner of {node} touched the keyboard"));
                    out.push(Command::TouchOwner(node));
                }
            }
            KeyCode::Esc | KeyCode::Backspace => self.screen = Screen::Queue,
            _ => return Key::NotConsumed,
        }
        if self.rank_sel != before {
            self.scroll = 0;
        }
        Key::Consumed
    }

    /// The timeline's keys: its own (zoom, pan, ranks), then Esc and q back to where it was
    /// opened from.
    fn trace_key(&mut self, k: KeyEvent) -> Key {
        let Some(view) = self.trace.as_mut() else {
            return Key::NotConsumed;
        };
        if let TraceState::Loaded(t) = &mut view.state {
            if t.key(k) {
                return Key::Consumed;
            }
        }
        match k.code {
            KeyCode::Esc | KeyCode::Backspace | KeyCode::Char('q') => {
                self.screen = view.back;
                Key::Consumed
            }
            _ => Key::NotConsumed,
        }
    }

    fn mouse(&mut self, m: MouseEvent) {
        let down = match m.kind {
            MouseEventKind::ScrollDown => true,
            MouseEventKind::ScrollUp => false,
            _ => return,
        };
        let step = 3;
        match self.screen {
            Screen::Nodes => {
                let last = self.node_rows.len().saturating_sub(1);
                self.node_sel = if down {
                    (self.node_sel + step).min(last)
                } else {
                    self.node_sel.saturating_sub(step)
                };
            }
            Screen::Queue => {
                let last = self.job_rows.len().saturating_sub(1);
                self.job_sel = if down {
                    (self.job_sel + step).min(last)
                } else {
                    self.job_sel.saturating_sub(step)
                };
            }
            Screen::Job => {
                self.scroll = if down {
                    self.scroll.saturating_sub(step)
                } else {
                    self.scroll + step
                };
            }
            Screen::Trace => {
                if let Some(TraceView {
                    state: TraceState::Loaded(t),
                    ..
                }) = self.trace.as_mut()
                {
                    t.zoom(!down);
                }
            }
            Screen::Harvest => {}
        }
    }
}

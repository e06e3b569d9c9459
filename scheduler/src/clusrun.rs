//! `graze clusrun` in the driver: the owning task's table of runs in flight.
//!
//! A clusrun is not a job: it is not queued, reserves no cores and is not stored; the core
//! never sees it. The owning task checks the request (admin token, a known node selection, a
//! sane timeout), picks the nodes ([`choose`], pure), sends [`SchedulerMsg::Clusrun`] to each
//! connected chosen agent and streams their lines to the client, bounded per node. A node's
//! run ends with the agent's [`AgentMsg::ClusrunDone`], with its loss (the agent disconnected:
//! `node lost`), or at the scheduler's own deadline, the timeout plus [`DEADLINE_MARGIN_MS`]
//! (an agent that stays connected but never answers). When every node has ended, the client
//! gets [`ClientReply::ClusrunEnd`] and its stream closes. A client that goes away has its
//! runs killed ([`SchedulerMsg::ClusrunKill`]).
//!
//! [`AgentMsg::ClusrunDone`]: graze_proto::AgentMsg::ClusrunDone

use crate::audit::Outcome;
use crate::auth::{self, Identity};
use crate::core::ConnId;
use crate::owner::Owner;
use graze_proto::{
    self as proto, ClientReply, ClusrunId, ClusrunLine, ClusrunOutcome, ClusrunResult, ClusrunSpec,
    NodeSelect, NodeView, SchedulerMsg, Stream, CLUSRUN_MAX_BYTES, CLUSRUN_MAX_LINES,
    CLUSRUN_MAX_TIMEOUT_MS,
};
use std::collections::{BTreeMap, HashMap};
use tokio::sync::mpsc;
use tracing::{debug, info};

/// How long past a clusrun's timeout the scheduler waits for a node's end before it calls
/// the node lost: the agent kills at the timeout, then needs a moment to reap and report.
pub(crate) const DEADLINE_MARGIN_MS: u64 = 10_000;

/// The longest reason text kept from an agent.
const MAX_REASON: usize = 1000;

/// The runs in flight.
#[derive(Default)]
pub(crate) struct Clusruns {
    next: u64,
    runs: HashMap<ClusrunId, Run>,
}

struct Run {
    tx: mpsc::UnboundedSender<ClientReply>,
    started_ms: u64,
    deadline_ms: u64,
    nodes: BTreeMap<String, Slot>,
}

struct Slot {
    /// The agent connection it runs on (`None`: decided without running).
    conn: Option<ConnId>,
    /// Set once the node's run ended.
    outcome: Option<ClusrunOutcome>,
    lines: u32,
    bytes: u64,
    dropped: u64,
    elapsed_ms: u64,
}

impl Run {
    fn pending(&self) -> impl Iterator<Item = (&String, &Slot)> {
        self.nodes.iter().filter(|(_, s)| s.outcome.is_none())
    }
    fn done(&self) -> bool {
        self.pending().next().is_none()
    }
}

/// What to do on one chosen node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Choice {
    /// Run the command there.
    Run,
    /// Do not: this is its result.
    Not(ClusrunOutcome),
}

/// Why a node's owner keeps a clusrun off it, or `None` when it may run there. Without
/// `even_if_busy` a clusrun runs only where jobs may run now ([`proto::Availability::runs_jobs`]).
fn owner_reason(v: &NodeView) -> Option<String> {
    use proto::Availability as A;
    let Some(s) = &v.status else {
        return Some("no status from the node yet".into());
    };
    let idle = proto::human_duration(s.owner_idle_ms);
    match &s.availability {
        A::Offered | A::Waiting { .. } => None,
        A::OwnerActive => Some(format!("owner present (input {idle} ago)")),
        A::OwnerPresent { reason } => Some(format!("owner present: {reason}")),
        A::OwnerCpuBusy { percent } => Some(format!("owner present (cpu {percent}%)")),
        A::OutsideWindow => Some("outside the node's availability window".into()),
        A::Snoozed { .. } => Some("its owner snoozed graze".into()),
        A::Reclaimed { resumes_in_ms } => Some(format!(
            "owner present (input {idle} ago; jobs resume in {}s)",
            resumes_in_ms.div_ceil(1000)
        )),
    }
}

/// Check a request and choose its nodes from the node table: each chosen node, in name order,
/// with what to do there. Errors quote the bad value; nothing runs then.
///
/// 1. The command must have a non-empty first word; the timeout must be 1 ms ..= 24 h.
/// 2. `Nodes`: every name must be known (an unknown one refuses the whole request);
///    `Group`: the group must have a node; `All`: some node must be known.
/// 3. Per node, first match wins: not connected: `offline`; owner present and not
///    `even_if_busy`: `skipped` with the reason; else run. Drained nodes run: drain keeps
///    jobs off a node, not an admin's commands.
pub(crate) fn choose(
    nodes: &[NodeView],
    spec: &ClusrunSpec,
) -> Result<Vec<(String, Choice)>, String> {
    if spec.command.first().is_none_or(|w| w.trim().is_empty()) {
        return Err(format!(
            "invalid clusrun command {:?}: the first word must not be empty",
            spec.command
        ));
    }
    if spec.timeout_ms == 0 || spec.timeout_ms > CLUSRUN_MAX_TIMEOUT_MS {
        return Err(format!(
            "invalid clusrun timeout '{}ms': must be more than 0 and at most 24h",
            spec.timeout_ms
        ));
    }
    let by_name: BTreeMap<&str, &NodeView> =
        nodes.iter().map(|n| (n.info.name.as_str(), n)).collect();
    let chosen: Vec<&NodeView> = match &spec.select {
        NodeSelect::All => {
            if by_name.is_empty() {
                return Err("no nodes are registered with the scheduler".into());
            }
            by_name.values().copied().collect()
        }
        NodeSelect::Group(g) => {
            let v: Vec<&NodeView> = by_name
                .values()
                .copied()
                .filter(|n| n.info.groups.contains(g))
                .collect();
            if v.is_empty() {
                return Err(format!("no node is in group '{g}'"));
            }
            v
        }
        NodeSelect::Nodes(names) => {
            if names.is_empty() {
                return Err("no nodes named: give --all, --group G or --nodes a,b".into());
            }
            let mut v = BTreeMap::new();
            for name in names {
                match by_name.get(name.as_str()) {
                    Some(n) => {
                        v.insert(name.as_str(), *n);
                    }
                    None => {
                        let known: Vec<&str> = by_name.keys().copied().collect();
                        return Err(format!(
                            "no node '{name}' (known nodes: {})",
                            if known.is_empty() {
                                "none".to_string()
                            } else {
                                known.join(", ")
                            }
                        ));
                    }
                }
            }
            v.into_values().collect()
        }
    };
    Ok(chosen
        .into_iter()
        .map(|n| {
            let choice = if !n.online {
                Choice::Not(ClusrunOutcome::Offline)
            } else if let Some(reason) = owner_reason(n).filter(|_| !spec.even_if_busy) {
                Choice::Not(ClusrunOutcome::Skipped { reason })
            } else {
                Choice::Run
            };
            (n.info.name.clone(), choice)
        })
        .collect())
}

impl Owner {
    fn conn_of(&self, node: &str) -> Option<ConnId> {
        self.agents
            .keys()
            .copied()
            .find(|c| self.core.node_name(*c) == Some(node))
    }

    /// `ClientRequest::Clusrun` from `who`.
    pub(crate) fn clusrun(
        &mut self,
        who: &Identity,
        spec: ClusrunSpec,
        tx: mpsc::UnboundedSender<ClientReply>,
        now: u64,
    ) {
        let command = format!("{:?}", spec.command.join(" "));
        let refuse = |owner: &Self, message: String| {
            owner.audit.record(
                &who.name,
                &who.role.to_string(),
                "clusrun",
                Outcome::Refused,
                &[("command", command.clone())],
                &message,
            );
            let _ = tx.send(ClientReply::Error { message });
        };
        if !auth::may_drain(who) {
            let message = format!(
                "clusrun needs an admin token; '{}' has role {}",
                who.name, who.role
            );
            return refuse(self, message);
        }
        let chosen = match choose(&self.core.node_views(), &spec) {
            Ok(c) => c,
            Err(message) => return refuse(self, message),
        };
        self.clusruns.next += 1;
        let id = ClusrunId(self.clusruns.next);
        let mut nodes = BTreeMap::new();
        let mut ran = Vec::new();
        for (name, choice) in chosen {
            let mut slot = Slot {
                conn: None,
                outcome: None,
                lines: 0,
                bytes: 0,
                dropped: 0,
                elapsed_ms: 0,
            };
            match choice {
                Choice::Not(o) => slot.outcome = Some(o),
                Choice::Run => {
                    let msg = SchedulerMsg::Clusrun {
                        id,
                        command: spec.command.clone(),
                        timeout_ms: spec.timeout_ms,
                        even_if_busy: spec.even_if_busy,
                    };
                    match self.conn_of(&name) {
                        Some(c) if self.agents[&c].0.send(msg).is_ok() => {
                            slot.conn = Some(c);
                            ran.push(name.clone());
                        }
                        _ => slot.outcome = Some(ClusrunOutcome::Offline),
                    }
                }
            }
            nodes.insert(name, slot);
        }
        self.audit.record(
            &who.name,
            &who.role.to_string(),
            "clusrun",
            Outcome::Ok,
            &[
                ("id", id.to_string()),
                ("nodes", ran.join(",")),
                ("timeout_ms", spec.timeout_ms.to_string()),
                ("even_if_busy", spec.even_if_busy.to_string()),
                ("command", command.clone()),
            ],
            "",
        );
        info!(%id, nodes = %ran.join(","), command, "clusrun started");
        self.clusruns.runs.insert(
            id,
            Run {
                tx,
                started_ms: now,
                deadline_ms: now
                    .saturating_add(spec.timeout_ms)
                    .saturating_add(DEADLINE_MARGIN_MS),
                nodes,
            },
        );
        self.clusrun_maybe_end(id);
    }

    /// The slot of `conn`'s node in run `id`, if it still runs there.
    fn clusrun_slot(&mut self, conn: ConnId, id: ClusrunId) -> Option<(&String, &mut Slot)> {
        let name = self.core.node_name(conn)?;
        let run = self.clusruns.runs.get_mut(&id)?;
        let (name, slot) = run.nodes.iter_mut().find(|(n, _)| n.as_str() == name)?;
        (slot.conn == Some(conn) && slot.outcome.is_none()).then_some((name, slot))
    }

    /// An output line of run `id` from the agent on `conn`; kept within the per-node bound.
    pub(crate) fn clusrun_output(
        &mut self,
        conn: ConnId,
        id: ClusrunId,
        stream: Stream,
        line: String,
    ) {
        let Some((name, slot)) = self.clusrun_slot(conn, id) else {
            debug!(conn, %id, "clusrun output for no run here; dropped");
            return;
        };
        let line = proto::clip_line(line);
        let size = line.len() as u64 + 1;
        if slot.lines >= CLUSRUN_MAX_LINES || slot.bytes + size > CLUSRUN_MAX_BYTES {
            slot.dropped += 1;
            return;
        }
        slot.lines += 1;
        slot.bytes += size;
        let reply = ClientReply::ClusrunOutput(ClusrunLine {
            node: name.clone(),
            stream,
            line,
        });
        if let Some(run) = self.clusruns.runs.get(&id) {
            // A client gone is noticed by the tick.
            let _ = run.tx.send(reply);
        }
    }

    /// Run `id` ended on `conn`'s node.
    pub(crate) fn clusrun_done(
        &mut self,
        conn: ConnId,
        id: ClusrunId,
        outcome: ClusrunOutcome,
        dropped: u64,
        now: u64,
    ) {
        let started = self.clusruns.runs.get(&id).map_or(now, |r| r.started_ms);
        let Some((name, slot)) = self.clusrun_slot(conn, id) else {
            debug!(conn, %id, "clusrun end for no run here; ignored");
            return;
        };
        let clip = |s: String| proto::clip(s, MAX_REASON, "...");
        let outcome = match outcome {
            ClusrunOutcome::NotStarted { reason } => ClusrunOutcome::NotStarted {
                reason: clip(reason),
            },
            ClusrunOutcome::Lost { reason } => ClusrunOutcome::Lost {
                reason: clip(reason),
            },
            ClusrunOutcome::Skipped { reason } => ClusrunOutcome::Skipped {
                reason: clip(reason),
            },
            o => o,
        };
        debug!(%id, node = %name, %outcome, "clusrun ended on a node");
        slot.dropped = slot.dropped.saturating_add(dropped);
        slot.elapsed_ms = now.saturating_sub(started);
        slot.outcome = Some(outcome);
        self.clusrun_maybe_end(id);
    }

    /// The agent on `conn` is gone: its nodes' runs end as lost.
    pub(crate) fn clusrun_conn_lost(&mut self, conn: ConnId, now: u64) {
        let ids: Vec<ClusrunId> = self.clusruns.runs.keys().copied().collect();
        for id in ids {
            if let Some(run) = self.clusruns.runs.get_mut(&id) {
                for slot in run.nodes.values_mut() {
                    if slot.conn == Some(conn) && slot.outcome.is_none() {
                        slot.elapsed_ms = now.saturating_sub(run.started_ms);
                        slot.outcome = Some(ClusrunOutcome::Lost {
                            reason: "the node's agent disconnected during the run".into(),
                        });
                    }
                }
            }
            self.clusrun_maybe_end(id);
        }
    }

    /// Every tick: runs past their deadline end (nodes still running count as lost and are
    /// told to kill); runs whose client went away are killed and forgotten.
    pub(crate) fn clusrun_tick(&mut self, now: u64) {
        let ids: Vec<ClusrunId> = self.clusruns.runs.keys().copied().collect();
        for id in ids {
            let Some(run) = self.clusruns.runs.get(&id) else {
                continue;
            };
            let gone = run.tx.is_closed();
            if !gone && now < run.deadline_ms {
                continue;
            }
            let pending: Vec<(String, Option<ConnId>)> =
                run.pending().map(|(n, s)| (n.clone(), s.conn)).collect();
            for (_, conn) in &pending {
                if let Some((tx, _)) = conn.and_then(|c| self.agents.get(&c)) {
                    let _ = tx.send(SchedulerMsg::ClusrunKill { id });
                }
            }
            if gone {
                info!(%id, "the client of a clusrun went away; killing it");
                self.clusruns.runs.remove(&id);
                continue;
            }
            if let Some(run) = self.clusruns.runs.get_mut(&id) {
                for (name, _) in pending {
                    if let Some(slot) = run.nodes.get_mut(&name) {
                        slot.elapsed_ms = now.saturating_sub(run.started_ms);
                        slot.outcome = Some(ClusrunOutcome::Lost {
                            reason: format!(
                                "no end from the node within the timeout plus {}s",
                                DEADLINE_MARGIN_MS / 1000
                            ),
                        });
                    }
                }
            }
            self.clusrun_maybe_end(id);
        }
    }

    /// Send the end and forget the run once every node has ended.
    fn clusrun_maybe_end(&mut self, id: ClusrunId) {
        if !self.clusruns.runs.get(&id).is_some_and(Run::done) {
            return;
        }
        let Some(run) = self.clusruns.runs.remove(&id) else {
            return;
        };
        let results: Vec<ClusrunResult> = run
            .nodes
            .into_iter()
            .map(|(node, s)| ClusrunResult {
                node,
                outcome: s.outcome.unwrap_or(ClusrunOutcome::Offline),
                dropped_lines: s.dropped,
                elapsed_ms: s.elapsed_ms,
            })
            .collect();
        info!(%id, failed = results.iter().filter(|r| r.outcome.failed()).count(), "clusrun ended");
        let _ = run.tx.send(ClientReply::ClusrunEnd { results });
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proto::{Availability, NodeInfo, NodeStatus};

    fn node(name: &str, online: bool, avail: Option<Availability>, groups: &[&str]) -> NodeView {
        NodeView {
            info: NodeInfo {
                name: name.into(),
                addr: String::new(),
                cores: 2,
                sockets: 1,
                memory_bytes: 0,
                groups: groups.iter().map(|g| g.to_string()).collect(),
                mpi: Vec::new(),
                software: String::new(),
                policy: Default::default(),
                held: Vec::new(),
                instance: String::new(),
                isolation: None,
            },
            online,
            status: avail.map(|availability| NodeStatus {
                core_load: Vec::new(),
                owner_cpu: 0.0,
                owner_idle_ms: 3_000,
                availability,
                idle_sources: Vec::new(),
                unavailable_sources: Vec::new(),
                window_ends_ms: None,
            }),
            used_cores: 0,
            jobs: Vec::new(),
            drained: false,
        }
    }

    fn spec(select: NodeSelect, even_if_busy: bool) -> ClusrunSpec {
        ClusrunSpec {
            select,
            command: vec!["hostname".into()],
            timeout_ms: 30_000,
            even_if_busy,
        }
    }

    fn table() -> Vec<NodeView> {
        let mut drained = node("d", true, Some(Availability::Offered), &["lab"]);
        drained.drained = true;
        vec![
            node("c", true, Some(Availability::OwnerActive), &["lab"]),
            node("a", true, Some(Availability::Offered), &["lab"]),
            node("b", false, Some(Availability::Offered), &[]),
            drained,
            node("e", true, None, &[]),
            node(
                "f",
                true,
                Some(Availability::Waiting { remaining_ms: 5 }),
                &[],
            ),
        ]
    }

    #[test]
    fn all_in_name_order_with_reasons() {
        let got = choose(&table(), &spec(NodeSelect::All, false)).unwrap();
        let skip = |r: &str| {
            Choice::Not(ClusrunOutcome::Skipped {
                reason: r.to_string(),
            })
        };
        assert_eq!(
            got,
            vec![
                ("a".to_string(), Choice::Run),
                ("b".to_string(), Choice::Not(ClusrunOutcome::Offline)),
                ("c".to_string(), skip("owner present (input 3s ago)")),
                ("d".to_string(), Choice::Run),
                ("e".to_string(), skip("no status from the node yet")),
                ("f".to_string(), Choice::Run),
            ]
        );
    }

    #[test]
    fn even_if_busy_runs_where_the_owner_is() {
        let got = choose(&table(), &spec(NodeSelect::All, true)).unwrap();
        let runs: Vec<&str> = got
            .iter()
            .filter(|(_, c)| *c == Choice::Run)
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(runs, ["a", "c", "d", "e", "f"]);
    }

    #[test]
    fn groups_and_names() {
        let got = choose(&table(), &spec(NodeSelect::Group("lab".into()), false)).unwrap();
        let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["a", "c", "d"]);
        let got = choose(
            &table(),
            &spec(
                NodeSelect::Nodes(vec!["f".into(), "a".into(), "f".into()]),
                false,
            ),
        )
        .unwrap();
        let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["a", "f"]);
    }

    #[test]
    fn bad_requests_quote_the_value() {
        let e = choose(
            &table(),
            &spec(NodeSelect::Nodes(vec!["a".into(), "ghost".into()]), false),
        )
        .unwrap_err();
        assert_eq!(e, "no node 'ghost' (known nodes: a, b, c, d, e, f)");
        let e = choose(&table(), &spec(NodeSelect::Group("gpu".into()), false)).unwrap_err();
        assert_eq!(e, "no node is in group 'gpu'");
        let e = choose(&[], &spec(NodeSelect::All, false)).unwrap_err();
        assert!(e.contains("no nodes are registered"), "{e}");
        let e = choose(&table(), &spec(NodeSelect::Nodes(vec![]), false)).unwrap_err();
        assert!(e.contains("--all, --group G or --nodes"), "{e}");
        let mut s = spec(NodeSelect::All, false);
        s.timeout_ms = 0;
        let e = choose(&table(), &s).unwrap_err();
        assert_eq!(
            e,
            "invalid clusrun timeout '0ms': must be more than 0 and at most 24h"
        );
        s.timeout_ms = CLUSRUN_MAX_TIMEOUT_MS + 1;
        assert!(choose(&table(), &s).is_err());
        s.timeout_ms = 1000;
        s.command = vec![" ".into()];
        let e = choose(&table(), &s).unwrap_err();
        assert!(e.contains("invalid clusrun command [\" \"]"), "{e}");
        s.command = vec![];
        assert!(choose(&table(), &s).is_err());
    }

    #[test]
    fn owner_reasons() {
        let r = |a: Availability| owner_reason(&node("x", true, Some(a), &[]));
        assert_eq!(r(Availability::Offered), None);
        assert_eq!(
            r(Availability::OwnerCpuBusy { percent: 80 }).unwrap(),
            "owner present (cpu 80%)"
        );
        assert_eq!(
            r(Availability::OwnerPresent {
                reason: "inhibitor 'mpv: playing video'".into()
            })
            .unwrap(),
            "owner present: inhibitor 'mpv: playing video'"
        );
        assert_eq!(
            r(Availability::Reclaimed {
                resumes_in_ms: 1500
            })
            .unwrap(),
            "owner present (input 3s ago; jobs resume in 2s)"
        );
        assert!(r(Availability::OutsideWindow)
            .unwrap()
            .contains("availability window"));
    }
}

//! The assembly of one checkpoint from its nodes' parts: which nodes were asked, which parts
//! arrived, and whether together they make a complete checkpoint. Pure: no I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

/// Where an assembly stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Status {
    /// Parts are still to come.
    Pending,
    /// Every node asked replied and the parts cover every rank: it may become current.
    Complete,
    /// It can never complete; why.
    Failed(String),
}

/// One checkpoint being received.
#[derive(Debug)]
pub(crate) struct Assembly {
    /// The job's ranks: the parts must cover `0..nprocs`.
    nprocs: u32,
    /// The nodes asked (an outgoing `Checkpoint` message each) and their ranks.
    expected: BTreeMap<String, Vec<u32>>,
    /// The nodes whose part is stored, with the ranks it holds.
    stored: BTreeMap<String, Vec<u32>>,
    /// Nodes whose part is being received now.
    receiving: BTreeSet<String>,
    /// The first reason it cannot complete.
    failed: Option<String>,
    /// Data bytes received for it so far, over all its streams (shared with the receivers,
    /// which stop reading once it passes the limit).
    pub(crate) received: Arc<AtomicU64>,
}

impl Assembly {
    /// A new assembly for a job of `nprocs` ranks.
    pub(crate) fn new(nprocs: u32) -> Self {
        Assembly {
            nprocs,
            expected: BTreeMap::new(),
            stored: BTreeMap::new(),
            receiving: BTreeSet::new(),
            failed: None,
            received: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Node `node` was asked for its part, holding `ranks`.
    pub(crate) fn expect(&mut self, node: &str, ranks: Vec<u32>) {
        self.expected.insert(node.to_string(), ranks);
    }

    /// A part from `node` starts arriving: refused unless `node` was asked and has sent
    /// nothing yet.
    pub(crate) fn begin(&mut self, node: &str) -> Result<(), String> {
        if !self.expected.contains_key(node) {
            return Err(format!(
                "{node} was not asked for a part of this checkpoint"
            ));
        }
        if self.stored.contains_key(node) || self.receiving.contains(node) {
            return Err(format!("{node} already sent its part of this checkpoint"));
        }
        if let Some(why) = &self.failed {
            return Err(format!("the checkpoint is void already: {why}"));
        }
        self.receiving.insert(node.to_string());
        Ok(())
    }

    /// `node`'s part is stored, holding `ranks`. Ranks it was not asked for make the whole
    /// checkpoint void (a confused or hostile agent must not supply another node's ranks).
    pub(crate) fn stored(&mut self, node: &str, ranks: Vec<u32>) {
        self.receiving.remove(node);
        let Some(asked) = self.expected.get(node) else {
            self.fail(format!(
                "{node} was not asked for a part of this checkpoint"
            ));
            return;
        };
        let alien: Vec<String> = ranks
            .iter()
            .filter(|r| !asked.contains(r))
            .map(u32::to_string)
            .collect();
        if !alien.is_empty() {
            self.fail(format!(
                "{node} sent ranks {} it does not run",
                alien.join(",")
            ));
            return;
        }
        self.stored.insert(node.to_string(), ranks);
    }

    /// The checkpoint can no longer complete (the first reason is kept).
    pub(crate) fn fail(&mut self, why: String) {
        if self.failed.is_none() {
            self.failed = Some(why);
        }
    }

    /// Node `node` is gone: if its part was still to come, the checkpoint cannot complete.
    pub(crate) fn node_lost(&mut self, node: &str) {
        if self.expected.contains_key(node) && !self.stored.contains_key(node) {
            self.fail(format!("{node} was lost before its part arrived"));
        }
    }

    /// True when `node` was asked for a part.
    pub(crate) fn expects(&self, node: &str) -> bool {
        self.expected.contains_key(node)
    }

    /// Where it stands.
    pub(crate) fn status(&self) -> Status {
        if let Some(why) = &self.failed {
            return Status::Failed(why.clone());
        }
        if self.expected.is_empty()
            || !self.receiving.is_empty()
            || self.expected.keys().any(|n| !self.stored.contains_key(n))
        {
            return Status::Pending;
        }
        let have: BTreeSet<u32> = self.stored.values().flatten().copied().collect();
        let missing: Vec<String> = (0..self.nprocs)
            .filter(|r| !have.contains(r))
            .map(|r| r.to_string())
            .collect();
        if missing.is_empty() {
            Status::Complete
        } else {
            Status::Failed(format!("no part holds ranks {}", missing.join(",")))
        }
    }

    /// The stored parts: node → ranks.
    pub(crate) fn parts(&self) -> &BTreeMap<String, Vec<u32>> {
        &self.stored
    }

    /// The job's ranks.
    pub(crate) fn nprocs(&self) -> u32 {
        self.nprocs
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn two_nodes() -> Assembly {
        let mut a = Assembly::new(4);
        a.expect("a1", vec![0, 1]);
        a.expect("a2", vec![2, 3]);
        a
    }

    #[test]
    fn completes_when_every_node_sent_and_ranks_are_covered() {
        let mut a = two_nodes();
        assert_eq!(a.status(), Status::Pending);
        a.begin("a1").unwrap();
        a.stored("a1", vec![0, 1]);
        assert_eq!(a.status(), Status::Pending);
        a.begin("a2").unwrap();
        assert_eq!(a.status(), Status::Pending, "a2 is still receiving");
        a.stored("a2", vec![2, 3]);
        assert_eq!(a.status(), Status::Complete);
        assert_eq!(a.parts().len(), 2);
    }

    #[test]
    fn a_rank_without_marker_voids_it() {
        let mut a = two_nodes();
        a.stored("a1", vec![0, 1]);
        a.stored("a2", vec![2]);
        assert_eq!(a.status(), Status::Failed("no part holds ranks 3".into()));
    }

    #[test]
    fn a_part_error_or_a_lost_node_voids_it_and_the_first_reason_stays() {
        let mut a = two_nodes();
        a.stored("a1", vec![0, 1]);
        a.node_lost("a1");
        assert_eq!(a.status(), Status::Pending, "a1's part had arrived");
        a.fail("a2: rank 2: symlink '2/x' points out of the checkpoint directory".into());
        a.node_lost("a2");
        match a.status() {
            Status::Failed(w) => assert!(w.contains("symlink"), "{w}"),
            s => panic!("{s:?}"),
        }
        assert!(
            a.begin("a2").is_err(),
            "a void checkpoint takes no more parts"
        );
    }

    #[test]
    fn parts_from_strangers_twice_or_with_foreign_ranks_are_refused() {
        let mut a = two_nodes();
        assert!(a.begin("a9").unwrap_err().contains("not asked"));
        a.begin("a1").unwrap();
        assert!(a.begin("a1").unwrap_err().contains("already"));
        a.stored("a1", vec![0, 1]);
        assert!(a.begin("a1").unwrap_err().contains("already"));
        a.stored("a2", vec![2, 3, 0]);
        match a.status() {
            Status::Failed(w) => assert!(w.contains("ranks 0 it does not run"), "{w}"),
            s => panic!("{s:?}"),
        }
    }

    #[test]
    fn nothing_asked_is_never_complete() {
        assert_eq!(Assembly::new(0).status(), Status::Pending);
    }
}

//! The outbox of job messages ([`JobMsg`]: output, exits, clears, remote exits): numbered,
//! kept until the scheduler acknowledges them, and sent again after a reconnect, so none is lost in a broken connection. Sans-IO: the owning task
//! pushes, the connection's writer sends what [`Outbox::push`] returns and, after a
//! reconnect, the [`Outbox::backlog`] first.

use graze_proto::{AgentMsg, JobMsg};
use std::collections::VecDeque;

/// Job messages kept until the scheduler acknowledges them.
pub(crate) const UNACKED_MAX: usize = 200_000;

/// Sequenced job messages not yet acknowledged, oldest first.
#[derive(Debug)]
pub(crate) struct Outbox {
    unacked: VecDeque<(u64, AgentMsg)>,
    /// Last sequence number used.
    seq: u64,
    /// At most this many are kept; beyond, the oldest is dropped.
    max: usize,
}

/// What [`Outbox::push`] made of a job message.
#[derive(Debug, PartialEq)]
pub(crate) struct Pushed {
    /// The message to send now: the job message, numbered.
    pub(crate) msg: AgentMsg,
    /// The outbox was full and dropped its oldest message to keep this one.
    pub(crate) dropped_oldest: bool,
}

impl Default for Outbox {
    fn default() -> Self {
        Outbox::new(UNACKED_MAX)
    }
}

impl Outbox {
    /// An empty outbox keeping at most `max` messages.
    pub(crate) fn new(max: usize) -> Outbox {
        Outbox {
            unacked: VecDeque::new(),
            seq: 0,
            max: max.max(1),
        }
    }

    /// Number a job message and keep it until acknowledged.
    pub(crate) fn push(&mut self, msg: JobMsg) -> Pushed {
        self.seq += 1;
        let m = AgentMsg::Sequenced { seq: self.seq, msg };
        let dropped_oldest = self.unacked.len() >= self.max;
        if dropped_oldest {
            self.unacked.pop_front();
        }
        self.unacked.push_back((self.seq, m.clone()));
        Pushed {
            msg: m,
            dropped_oldest,
        }
    }

    /// The scheduler applied every message up to and including `seq`.
    pub(crate) fn ack(&mut self, seq: u64) {
        while self.unacked.front().is_some_and(|(s, _)| *s <= seq) {
            self.unacked.pop_front();
        }
    }

    /// Every unacknowledged message, oldest first: sent first on a new connection (the
    /// scheduler drops any it has applied).
    pub(crate) fn backlog(&self) -> Vec<AgentMsg> {
        self.unacked.iter().map(|(_, m)| m.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use graze_proto::JobId;

    fn cleared(job: u64) -> JobMsg {
        JobMsg::JobCleared { job: JobId(job) }
    }

    fn seq_of(m: &AgentMsg) -> Option<u64> {
        match m {
            AgentMsg::Sequenced { seq, .. } => Some(*seq),
            _ => None,
        }
    }

    #[test]
    fn job_messages_are_numbered_in_order_and_kept() {
        let mut o = Outbox::default();
        let a = o.push(cleared(1));
        let b = o.push(cleared(2));
        assert_eq!(seq_of(&a.msg), Some(1));
        assert_eq!(seq_of(&b.msg), Some(2));
        assert!(!a.dropped_oldest && !b.dropped_oldest);
        assert_eq!(o.backlog(), vec![a.msg, b.msg]);
    }

    #[test]
    fn ack_drops_everything_up_to_it() {
        let mut o = Outbox::default();
        for j in 1..=5 {
            o.push(cleared(j));
        }
        o.ack(3);
        let left: Vec<_> = o.backlog().iter().filter_map(seq_of).collect();
        assert_eq!(left, vec![4, 5]);
        // An old or repeated ack changes nothing.
        o.ack(2);
        assert_eq!(o.backlog().len(), 2);
        o.ack(9);
        assert_eq!(o.backlog().len(), 0);
        assert_eq!(seq_of(&o.push(cleared(6)).msg), Some(6));
    }

    #[test]
    fn a_full_outbox_drops_its_oldest() {
        let mut o = Outbox::new(2);
        o.push(cleared(1));
        o.push(cleared(2));
        let p = o.push(cleared(3));
        assert!(p.dropped_oldest);
        let left: Vec<_> = o.backlog().iter().filter_map(seq_of).collect();
        assert_eq!(left, vec![2, 3]);
    }
}

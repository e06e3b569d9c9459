//! Names and classes of the format's MPI ops (`docs/TRACE_FORMAT.md`, "Ops").

use std::borrow::Cow;

use crate::Op;

/// What kind of call an op is, for colouring and for the summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpClass {
    /// Bcast, Reduce, Allreduce, Barrier, Gather, Scatter, Alltoall, Allgather, their `v`
    /// forms, Iallreduce.
    Collective,
    /// Send, Recv, Isend, Irecv, Sendrecv, Ssend.
    PointToPoint,
    /// Wait, Waitall, Waitany, Test.
    Wait,
    /// Init, Finalize.
    Setup,
    /// An op this graze does not know.
    Other,
}

impl Op {
    pub const INIT: Op = Op(1);
    pub const FINALIZE: Op = Op(2);
    pub const SEND: Op = Op(3);
    pub const RECV: Op = Op(4);
    pub const ISEND: Op = Op(5);
    pub const IRECV: Op = Op(6);
    pub const WAIT: Op = Op(7);
    pub const BCAST: Op = Op(8);
    pub const REDUCE: Op = Op(9);
    pub const ALLREDUCE: Op = Op(10);
    pub const BARRIER: Op = Op(11);
    pub const GATHER: Op = Op(12);
    pub const SCATTER: Op = Op(13);
    pub const ALLTOALL: Op = Op(14);
    pub const ALLGATHER: Op = Op(15);
    pub const SENDRECV: Op = Op(16);
    pub const WAITALL: Op = Op(17);
    pub const SSEND: Op = Op(18);
    pub const IALLREDUCE: Op = Op(19);
    pub const TEST: Op = Op(20);
    pub const WAITANY: Op = Op(21);
    pub const GATHERV: Op = Op(22);
    pub const SCATTERV: Op = Op(23);
    pub const ALLGATHERV: Op = Op(24);
    pub const ALLTOALLV: Op = Op(25);
}

const NAMES: [&str; 26] = [
    "",
    "MPI_Init",
    "MPI_Finalize",
    "MPI_Send",
    "MPI_Recv",
    "MPI_Isend",
    "MPI_Irecv",
    "MPI_Wait",
    "MPI_Bcast",
    "MPI_Reduce",
    "MPI_Allreduce",
    "MPI_Barrier",
    "MPI_Gather",
    "MPI_Scatter",
    "MPI_Alltoall",
    "MPI_Allgather",
    "MPI_Sendrecv",
    "MPI_Waitall",
    "MPI_Ssend",
    "MPI_Iallreduce",
    "MPI_Test",
    "MPI_Waitany",
    "MPI_Gatherv",
    "MPI_Scatterv",
    "MPI_Allgatherv",
    "MPI_Alltoallv",
];

/// The MPI name of an op (`MPI_Allreduce`); an unknown one is `op N`.
pub fn op_name(op: Op) -> Cow<'static, str> {
    match NAMES.get(usize::from(op.0)) {
        Some(n) if !n.is_empty() => Cow::Borrowed(n),
        _ => Cow::Owned(format!("op {}", op.0)),
    }
}

/// The class of an op.
pub fn op_class(op: Op) -> OpClass {
    match op.0 {
        1 | 2 => OpClass::Setup,
        3 | 4 | 5 | 6 | 16 | 18 => OpClass::PointToPoint,
        7 | 17 | 20 | 21 => OpClass::Wait,
        8..=15 | 19 | 22..=25 => OpClass::Collective,
        _ => OpClass::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_format_table() {
        assert_eq!(op_name(Op::INIT), "MPI_Init");
        assert_eq!(op_name(Op::ALLREDUCE), "MPI_Allreduce");
        assert_eq!(op_name(Op::WAITANY), "MPI_Waitany");
        assert_eq!(op_name(Op::ALLTOALLV), "MPI_Alltoallv");
        assert_eq!(op_name(Op(0)), "op 0");
        assert_eq!(op_name(Op(99)), "op 99");
    }

    #[test]
    fn classes() {
        assert_eq!(op_class(Op::FINALIZE), OpClass::Setup);
        assert_eq!(op_class(Op::ISEND), OpClass::PointToPoint);
        assert_eq!(op_class(Op::SENDRECV), OpClass::PointToPoint);
        assert_eq!(op_class(Op::WAITALL), OpClass::Wait);
        assert_eq!(op_class(Op::BARRIER), OpClass::Collective);
        assert_eq!(op_class(Op::GATHERV), OpClass::Collective);
        assert_eq!(op_class(Op(26)), OpClass::Other);
        // Every known op has a name and a class other than Other.
        for n in 1..=25u8 {
            assert!(!op_name(Op(n)).starts_with("op "), "{n}");
            assert_ne!(op_class(Op(n)), OpClass::Other, "{n}");
        }
    }
}

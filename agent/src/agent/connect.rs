//! One connection attempt: connect, say hello, register; and why an attempt failed.

use graze_net::{Access, NetError, Session};
use graze_proto::{AgentMsg, NodeInfo, Role, SchedulerMsg};
use std::time::Duration;

/// Connect plus register must finish within this.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// Why a connection attempt failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum ConnectError {
    #[error(transparent)]
    Net(#[from] NetError),
    #[error("the scheduler refused to register node '{name}': {reason}")]
    RegisterRefused { name: String, reason: String },
    #[error("the scheduler answered the registration with {0}")]
    Unexpected(String),
    #[error("the scheduler closed the connection during registration")]
    Closed,
    #[error("no answer from the scheduler within {}s", CONNECT_TIMEOUT.as_secs())]
    Timeout,
}

impl ConnectError {
    pub(super) fn is_fatal(&self) -> bool {
        match self {
            ConnectError::Net(e) => !e.is_retryable(),
            ConnectError::RegisterRefused { .. } => true,
            ConnectError::Unexpected(_) | ConnectError::Closed | ConnectError::Timeout => false,
        }
    }
}

/// Connect, say hello, register.
pub(super) async fn connect(
    access: Access,
    bind: Option<std::net::IpAddr>,
    idle: Duration,
    info: NodeInfo,
) -> Result<(Session, Duration), ConnectError> {
    let mut s = graze_net::connect(&access, Role::Agent, bind, idle).await?;
    let name = info.name.clone();
    s.control.send(&AgentMsg::Register(info)).await?;
    match s.control.recv::<SchedulerMsg>().await? {
        Some(SchedulerMsg::Registered { node_timeout_ms }) => {
            Ok((s, Duration::from_millis(node_timeout_ms)))
        }
        Some(SchedulerMsg::RegisterRefused { reason }) => {
            Err(ConnectError::RegisterRefused { name, reason })
        }
        Some(other) => Err(ConnectError::Unexpected(graze_proto::clip(
            format!("{other:?}"),
            200,
            "...",
        ))),
        None => Err(ConnectError::Closed),
    }
}

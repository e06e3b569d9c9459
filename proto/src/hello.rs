//! The first message of every connection and the version check.

use serde::{Deserialize, Serialize};

/// The protocol version this build speaks. Checked in the first message of every connection.
/// 7: `Availability::OwnerPresent` (an idle inhibitor held in a logind session).
/// 9: `ClientReply::NodeLoads` (a watch's load-only node deltas, batched).
pub const PROTOCOL_VERSION: u32 = 9;

/// Who is connecting.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A `graze-agent` offering a PC's cores.
    Agent,
    /// The `graze` command or the TUI.
    Client,
}

/// First message on every connection, from the connecting side.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    /// The sender's [`PROTOCOL_VERSION`].
    pub version: u32,
    /// What the sender is.
    pub role: Role,
    /// The cluster token from the access file.
    pub token: String,
    /// Free text naming the sender's software, e.g. `graze-agent 0.1.0`.
    pub software: String,
}

/// The scheduler's answer to a [`Hello`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum HelloReply {
    /// Accepted; the connection goes on.
    Welcome {
        /// The scheduler's protocol version.
        version: u32,
    },
    /// Refused; the scheduler closes the connection after this.
    Refused {
        /// Why, in words for a person.
        reason: String,
    },
}

/// Check a peer's version against ours, with an explicit error.
pub fn check_version(peer: &str, theirs: u32) -> Result<(), String> {
    if theirs == PROTOCOL_VERSION {
        Ok(())
    } else {
        Err(format!(
            "protocol version mismatch: this side speaks graze protocol {PROTOCOL_VERSION}, the {peer} speaks {theirs}; install the same graze version on both"
        ))
    }
}

//! Accepting connections: the QUIC accept loop, and per connection the hello (protocol
//! version, token, role) before it is handed to the agent or client connection task.

use crate::agent_conn::serve_agent;
use crate::audit::{Audit, Outcome};
use crate::auth::{self, TokenStore};
use crate::client_conn::serve_client;
use crate::core::ConnId;
use crate::owner::Input;
use anyhow::{Context, Result};
use graze_net::Framed;
use graze_proto::{self as proto, Hello, HelloReply, Role};
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::{debug, info, info_span, warn, Instrument};

/// Time a new connection has to open its control stream and say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Accept connections until the endpoint closes, one task each.
pub(crate) async fn accept_loop(
    endpoint: graze_net::quinn::Endpoint,
    tokens: TokenStore,
    audit: Audit,
    tx: mpsc::UnboundedSender<Input>,
) {
    let mut next_conn: ConnId = 1;
    while let Some(incoming) = endpoint.accept().await {
        let conn_id = next_conn;
        next_conn += 1;
        let tokens = tokens.clone();
        let audit = audit.clone();
        let tx = tx.clone();
        let peer = incoming.remote_address();
        tokio::spawn(
            async move {
                if let Err(e) = serve_connection(incoming, conn_id, &tokens, &audit, tx).await {
                    info!("connection ended: {e:#}");
                }
            }
            .instrument(info_span!("conn", id = conn_id, %peer)),
        );
    }
}

async fn serve_connection(
    incoming: graze_net::quinn::Incoming,
    conn_id: ConnId,
    tokens: &TokenStore,
    audit: &Audit,
    tx: mpsc::UnboundedSender<Input>,
) -> Result<()> {
    let peer = incoming.remote_address();
    let conn = incoming.await.context("handshake")?;
    let (send, recv) = tokio::time::timeout(HELLO_TIMEOUT, conn.accept_bi())
        .await
        .with_context(|| format!("no hello within {HELLO_TIMEOUT:?}"))??;
    let mut control = Framed { send, recv };
    let hello: Hello = match tokio::time::timeout(HELLO_TIMEOUT, control.recv()).await {
        Ok(Ok(Some(h))) => h,
        Ok(Ok(None)) => anyhow::bail!("peer closed before the hello"),
        Ok(Err(e)) => {
            conn.close(2u32.into(), b"bad hello");
            anyhow::bail!("bad hello: {e}");
        }
        Err(_) => anyhow::bail!("no hello within 10 s"),
    };
    // In place, not on the blocking pool: a `stat` of the store, and a read of its small
    // file only when it changed (`TokenStore::lookup`); handing it to a blocking thread and
    // back cost more than the lookup, on every connection.
    let identity = match tokens.lookup(&hello.token) {
        Ok(i) => i,
        Err(e) => {
            tracing::error!("{e}");
            None
        }
    };
    let refusal = if let Err(e) = proto::check_version(
        &format!("{:?} peer", hello.role).to_lowercase(),
        hello.version,
    ) {
        Some(e)
    } else {
        match &identity {
            None => Some(
                "invalid cluster token: unknown or revoked; use an access file from this scheduler (access.toml, or one printed by `graze-scheduler token create`)"
                    .to_string(),
            ),
            Some(who) => auth::may_connect(who, hello.role).err(),
        }
    };
    if let Some(reason) = refusal {
        let (who, role) = identity
            .as_ref()
            .map_or(("-".to_string(), "-".to_string()), |i| {
                (i.name.clone(), i.role.to_string())
            });
        audit.record(
            &who,
            &role,
            "connect",
            Outcome::Refused,
            &[
                ("peer", peer.to_string()),
                ("as", format!("{:?}", hello.role).to_lowercase()),
            ],
            &reason,
        );
        warn!(software = %hello.software, "refused connection: {reason}");
        control
            .send(&HelloReply::Refused {
                reason: reason.clone(),
            })
            .await?;
        let _ = control.send.finish();
        // Give the refusal time to reach the peer before closing.
        tokio::time::sleep(Duration::from_millis(200)).await;
        conn.close(3u32.into(), reason.as_bytes());
        return Ok(());
    }
    control
        .send(&HelloReply::Welcome {
            version: proto::PROTOCOL_VERSION,
        })
        .await?;
    let Some(identity) = identity else {
        anyhow::bail!("no identity after the hello");
    };
    debug!(who = %identity, "connection accepted");
    match hello.role {
        Role::Agent => serve_agent(conn, conn_id, control, identity, audit, peer, tx).await,
        Role::Client => serve_client(conn, identity, tx).await,
    }
}

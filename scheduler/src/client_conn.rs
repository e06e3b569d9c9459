//! A client connection: each bidirectional stream carries one request, whose replies the
//! owning task streams back.

use crate::auth::Identity;
use crate::owner::Input;
use anyhow::Result;
use graze_net::Framed;
use graze_proto::ClientRequest;
use tokio::sync::mpsc;
use tracing::{debug, warn};

/// Serve a client's request streams until the connection ends.
pub(crate) async fn serve_client(
    conn: graze_net::quinn::Connection,
    identity: Identity,
    tx: mpsc::UnboundedSender<Input>,
) -> Result<()> {
    loop {
        let (send, recv) = match conn.accept_bi().await {
            Ok(s) => s,
            Err(e) => {
                debug!("client gone: {e}");
                return Ok(());
            }
        };
        let tx = tx.clone();
        let conn = conn.clone();
        let identity = identity.clone();
        tokio::spawn(async move {
            let mut s = Framed { send, recv };
            let req = match s.recv::<ClientRequest>().await {
                Ok(Some(r)) => r,
                Ok(None) => return,
                Err(e) => {
                    warn!("closing client connection: {e}");
                    conn.close(2u32.into(), b"bad request");
                    return;
                }
            };
            let (rtx, mut rrx) = mpsc::unbounded_channel();
            if tx.send(Input::Client(identity, req, rtx)).is_err() {
                return;
            }
            loop {
                // A client that goes away drops the receiver at once, so the owning task
                // sees it (e.g. a `graze clusrun` interrupted: its commands are killed).
                let reply = tokio::select! {
                    r = rrx.recv() => r,
                    _ = conn.closed() => return,
                };
                let Some(reply) = reply else { break };
                if s.send(&reply).await.is_err() {
                    return;
                }
            }
            let _ = s.send.finish();
        });
    }
}

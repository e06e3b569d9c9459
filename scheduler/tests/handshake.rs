//! The scheduler in-process, reached over real QUIC: hello, token, pinning, version.
#![allow(clippy::unwrap_used)]

use graze_net::{Access, Framed};
use graze_proto::{ClientReply, ClientRequest, Hello, HelloReply, Role, PROTOCOL_VERSION};
use std::time::Duration;

async fn start() -> (tempfile::TempDir, Access, tokio::sync::oneshot::Sender<()>) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = graze_scheduler::SchedulerConfig::for_tests(dir.path());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        graze_scheduler::run(
            cfg,
            async {
                let _ = stop_rx.await;
            },
            move |s| {
                let _ = tx.send(s.access);
            },
        )
        .await
        .unwrap();
    });
    let access = rx.await.unwrap();
    (dir, access, stop_tx)
}

#[tokio::test]
async fn good_access_is_welcome_and_answers() {
    let (_dir, access, _stop) = start().await;
    let s = graze_net::connect(&access, Role::Client, None, Duration::from_secs(5))
        .await
        .unwrap();
    let (send, recv) = s.conn.open_bi().await.unwrap();
    let mut f = Framed { send, recv };
    f.send(&ClientRequest::Queue { all: true }).await.unwrap();
    let r: ClientReply = f.recv().await.unwrap().unwrap();
    assert_eq!(r, ClientReply::Jobs(vec![]));
}

#[tokio::test]
async fn wrong_token_is_refused() {
    let (_dir, access, _stop) = start().await;
    let bad = Access {
        token: "nope".into(),
        ..access
    };
    let e = graze_net::connect(&bad, Role::Agent, None, Duration::from_secs(5))
        .await
        .err()
        .unwrap();
    assert!(!e.is_retryable());
    assert!(e.to_string().contains("invalid cluster token"), "{e}");
}

#[tokio::test]
async fn wrong_fingerprint_is_refused() {
    let (_dir, access, _stop) = start().await;
    let bad = Access {
        fingerprint: graze_net::fingerprint(b"other"),
        ..access
    };
    let e = graze_net::connect(&bad, Role::Client, None, Duration::from_secs(5))
        .await
        .err()
        .unwrap();
    assert!(e.to_string().contains("does not match the pinned"), "{e}");
}

#[tokio::test]
async fn version_mismatch_names_both_versions() {
    let (_dir, access, _stop) = start().await;
    let ep = graze_net::client_endpoint(
        "0.0.0.0".parse().unwrap(),
        &access.fingerprint,
        Duration::from_secs(5),
    )
    .unwrap();
    let addr = graze_net::resolve(&access.scheduler).await.unwrap();
    let conn = ep
        .connect(addr, graze_net::SERVER_NAME)
        .unwrap()
        .await
        .unwrap();
    let (send, recv) = conn.open_bi().await.unwrap();
    let mut f = Framed { send, recv };
    f.send(&Hello {
        version: PROTOCOL_VERSION + 7,
        role: Role::Agent,
        token: access.token.clone(),
        software: "future".into(),
    })
    .await
    .unwrap();
    match f.recv::<HelloReply>().await.unwrap().unwrap() {
        HelloReply::Refused { reason } => {
            assert!(
                reason.contains(&format!("speaks graze protocol {PROTOCOL_VERSION}")),
                "{reason}"
            );
            assert!(
                reason.contains(&format!("speaks {}", PROTOCOL_VERSION + 7)),
                "{reason}"
            );
        }
        r => panic!("{r:?}"),
    }
}

#[tokio::test]
async fn garbage_frame_closes_only_that_connection() {
    let (_dir, access, _stop) = start().await;
    let ep = graze_net::client_endpoint(
        "0.0.0.0".parse().unwrap(),
        &access.fingerprint,
        Duration::from_secs(5),
    )
    .unwrap();
    let addr = graze_net::resolve(&access.scheduler).await.unwrap();
    let conn = ep
        .connect(addr, graze_net::SERVER_NAME)
        .unwrap()
        .await
        .unwrap();
    let (mut send, _recv) = conn.open_bi().await.unwrap();
    send.write_all(&[0, 0, 0, 5, b'{', b'x', 0xff, 0, 1])
        .await
        .unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(5), conn.closed()).await;
    // A too-large length prefix, too.
    let conn2 = ep
        .connect(addr, graze_net::SERVER_NAME)
        .unwrap()
        .await
        .unwrap();
    let (mut send, _recv) = conn2.open_bi().await.unwrap();
    send.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(5), conn2.closed()).await;
    // The scheduler still serves others.
    let s = graze_net::connect(&access, Role::Client, None, Duration::from_secs(5))
        .await
        .unwrap();
    drop(s);
}

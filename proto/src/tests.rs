//! Round trips, limits and the decoders under arbitrary bytes.

use super::*;
use proptest::prelude::*;

#[test]
fn round_trip() {
    let m = AgentMsg::Launch {
        id: LaunchId(3),
        job: JobId(7),
        secret: "s".into(),
        host: "a1".into(),
        command: vec!["/usr/bin/hydra_pmi_proxy".into(), "--proxy-id".into()],
    };
    let mut d = FrameDecoder::new();
    let bytes = encode(&m);
    d.push(&bytes[..3]);
    assert!(d.next_frame().unwrap().is_none());
    d.push(&bytes[3..]);
    let body = d.next_frame().unwrap().unwrap();
    assert_eq!(decode::<AgentMsg>(&body).unwrap(), m);
}

#[test]
fn too_large_is_refused() {
    let mut d = FrameDecoder::new();
    d.push(&u32::MAX.to_be_bytes());
    let e = d.next_frame().unwrap_err().to_string();
    assert!(e.contains("exceeds the limit"), "{e}");
}

#[test]
fn version_mismatch_names_both() {
    let e = check_version("scheduler", PROTOCOL_VERSION + 1).unwrap_err();
    assert!(e.contains(&format!("speaks graze protocol {PROTOCOL_VERSION}")));
    assert!(e.contains(&format!("speaks {}", PROTOCOL_VERSION + 1)));
}

#[test]
fn launch_outcome_round_trips() {
    for outcome in [
        LaunchOutcome::Exited(ExitStatus {
            code: Some(3),
            signal: None,
        }),
        LaunchOutcome::Refused {
            reason: "wrong secret for job 3".into(),
        },
    ] {
        let m = SchedulerMsg::LaunchDone {
            id: LaunchId(2),
            outcome,
        };
        let back: SchedulerMsg = decode(&encode(&m)[4..]).unwrap();
        assert_eq!(back, m);
    }
}

#[test]
fn clusrun_messages_round_trip() {
    let outcomes = [
        ClusrunOutcome::Exited {
            exit: ExitStatus {
                code: None,
                signal: Some(9),
            },
        },
        ClusrunOutcome::Timeout,
        ClusrunOutcome::NotStarted { reason: "x".into() },
        ClusrunOutcome::Lost { reason: "y".into() },
        ClusrunOutcome::Skipped { reason: "z".into() },
        ClusrunOutcome::Offline,
    ];
    for outcome in outcomes.clone() {
        let m = AgentMsg::ClusrunDone {
            id: ClusrunId(4),
            outcome,
            dropped_lines: 2,
        };
        assert_eq!(decode::<AgentMsg>(&encode(&m)[4..]).unwrap(), m);
    }
    let failed: Vec<bool> = outcomes.iter().map(ClusrunOutcome::failed).collect();
    assert_eq!(failed, [true, true, true, true, false, false]);
    let m = SchedulerMsg::Clusrun {
        id: ClusrunId(1),
        command: vec!["hostname".into()],
        timeout_ms: 30_000,
        even_if_busy: true,
    };
    assert_eq!(decode::<SchedulerMsg>(&encode(&m)[4..]).unwrap(), m);
    let m = ClientRequest::Clusrun(Box::new(ClusrunSpec {
        select: NodeSelect::Nodes(vec!["a".into()]),
        command: vec!["true".into()],
        timeout_ms: 1,
        even_if_busy: false,
    }));
    assert_eq!(decode::<ClientRequest>(&encode(&m)[4..]).unwrap(), m);
    // `graze requeue`: `checkpoint` may be left out (false).
    let m = ClientRequest::Requeue {
        job: JobId(7).into(),
        checkpoint: true,
    };
    assert_eq!(decode::<ClientRequest>(&encode(&m)[4..]).unwrap(), m);
    let plain: ClientRequest = serde_json::from_str(r#"{"requeue":{"job":{"job":7}}}"#).unwrap();
    assert_eq!(
        plain,
        ClientRequest::Requeue {
            job: JobId(7).into(),
            checkpoint: false
        }
    );
    // The JSON of a result, as `graze clusrun --json` shows it.
    let r = ClusrunResult {
        node: "n2".into(),
        outcome: ClusrunOutcome::Exited {
            exit: ExitStatus {
                code: Some(3),
                signal: None,
            },
        },
        dropped_lines: 0,
        elapsed_ms: 5,
    };
    assert_eq!(
        serde_json::to_string(&r).unwrap(),
        r#"{"node":"n2","outcome":{"result":"exited","exit":{"code":3,"signal":null}},"dropped_lines":0,"elapsed_ms":5}"#
    );
}

#[test]
fn clip_cuts_on_char_boundaries() {
    assert_eq!(clip("héllo".into(), 2, "..."), "h...");
    assert_eq!(clip("héllo".into(), 3, "..."), "hé...");
    assert_eq!(clip("short".into(), 5, "..."), "short");
}

#[test]
fn durations() {
    assert_eq!(human_duration(0), "0s");
    assert_eq!(human_duration(999), "0s");
    assert_eq!(human_duration(3_999), "3s");
    assert_eq!(human_duration(59_999), "59s");
    assert_eq!(human_duration(60_000), "1m");
    assert_eq!(human_duration(90_000), "1m");
    assert_eq!(human_duration(14 * 60_000 + 59_000), "14m");
    assert_eq!(human_duration(3_600_000), "1h00m");
    assert_eq!(human_duration(3_600_000 + 5 * 60_000), "1h05m");
    assert_eq!(human_duration(2 * 3_600_000 + 5 * 60_000), "2h05m");
    assert_eq!(human_duration(86_400_000 + 4 * 3_600_000), "1d04h");
}

#[test]
fn clip_keeps_char_boundaries() {
    let s = "é".repeat(MAX_LINE);
    let c = clip_line(s);
    assert!(c.ends_with("[line cut by graze]"));
}

proptest! {
    #[test]
    fn decoder_never_panics(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..16)) {
        let mut d = FrameDecoder::new();
        for c in &chunks {
            d.push(c);
            while let Ok(Some(body)) = d.next_frame() {
                let _ = decode::<AgentMsg>(&body);
                let _ = decode::<SchedulerMsg>(&body);
                let _ = decode::<ClientRequest>(&body);
                let _ = decode::<Hello>(&body);
            }
        }
    }

    #[test]
    fn output_round_trips(line in ".{0,200}", rank in proptest::option::of(0u32..1000)) {
        let m = AgentMsg::Sequenced {
        seq: 9,
        msg: JobMsg::Output { job: JobId(1), line: LogLine { rank, stream: Stream::Stderr, line } },
    };
        let bytes = encode(&m);
        let mut d = FrameDecoder::new();
        d.push(&bytes);
        let back: AgentMsg = decode(&d.next_frame().unwrap().unwrap()).unwrap();
        prop_assert_eq!(back, m);
    }
}

#[test]
fn owner_present_on_the_wire_and_shown() {
    let a = Availability::OwnerPresent {
        reason: "inhibitor 'mpv: playing video'".into(),
    };
    let json = serde_json::to_string(&a).unwrap();
    assert_eq!(
        json,
        r#"{"state":"owner_present","reason":"inhibitor 'mpv: playing video'"}"#
    );
    assert_eq!(serde_json::from_str::<Availability>(&json).unwrap(), a);
    assert_eq!(
        a.to_string(),
        "owner present: inhibitor 'mpv: playing video'"
    );
    assert!(!a.runs_jobs() && !a.is_offered());
}

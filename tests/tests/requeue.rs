//! `graze requeue JOB` with real processes (issue 12): a running job is vacated and runs again
//! at once, its second run sees `GRAZE_RESTART_COUNT=1`; only the job's owner (or an admin)
//! may requeue it, `--checkpoint` needs a job submitted with `--checkpoint`, and every
//! attempt is audited. (Checkpoint vacates themselves are in checkpoint.rs.)
#![allow(clippy::unwrap_used)]

use graze_tests::*;
use std::process::Output;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(120);

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn show(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        text(&o.stdout),
        text(&o.stderr)
    )
}

#[test]
fn requeue_runs_the_job_again_for_its_owner_only() {
    let mut c = Cluster::start(&[]);
    c.add_agent("rq1", "127.0.0.2", 2, &[]);
    c.wait_offered(1);
    let alice = c.create_token("user", "alice");
    let bob = c.create_token("user", "bob");

    let out = c.graze_with(
        &alice,
        &[
            "submit",
            "--parsable",
            "-n",
            "1",
            "--",
            "sh",
            "-c",
            "echo run $GRAZE_RESTART_COUNT; exec sleep 300",
        ],
    );
    assert!(out.status.success(), "{}", show(&out));
    let id: u64 = text(&out.stdout).trim().parse().unwrap();
    let ids = id.to_string();
    c.wait_output(id, "run 0", 1);

    // Someone else's job: refused, nothing changes.
    let out = c.graze_with(&bob, &["requeue", &ids]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        text(&out.stderr).contains(&format!("job {id} belongs to 'alice'")),
        "{}",
        show(&out)
    );
    // --checkpoint on a job without it: a clear error, nothing changes.
    let out = c.graze_with(&alice, &["requeue", &ids, "--checkpoint"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        text(&out.stderr).contains(&format!("job {id} was not submitted with --checkpoint")),
        "{}",
        show(&out)
    );
    assert_eq!(c.show(id)["state"], "running");
    assert_eq!(c.show(id)["requeues"], 0);

    let out = c.graze_with(&alice, &["requeue", &ids]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(
        text(&out.stdout),
        format!("requeued job {id} (queued): it starts again from the beginning\n")
    );
    // The second run starts on the same node once the first one's processes are gone.
    let job = wait_for("the second run", LONG, || {
        let j = c.show(id);
        (j["state"] == "running" && j["requeues"] == 1).then_some(j)
    });
    let events: Vec<String> = job["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["what"].as_str().unwrap().to_string())
        .collect();
    assert!(
        events.iter().any(|e| e == "requeued by alice"),
        "{events:?}"
    );
    c.wait_output(id, "run 1", 1);
    let out = c.graze(&["logs", &ids, "--attempt", "1"]);
    assert!(text(&out.stdout).contains("run 0"), "{}", show(&out));

    let audit = std::fs::read_to_string(c.state_dir().join("audit.log")).unwrap();
    let has = |who: &str, result: &str| {
        audit.lines().any(|l| {
            l.contains(&format!("who={who}"))
                && l.contains("action=requeue")
                && l.contains(&format!("result={result}"))
        })
    };
    assert!(has("bob", "refused"), "{audit}");
    assert!(has("alice", "refused"), "{audit}");
    assert!(has("alice", "ok"), "{audit}");

    let out = c.graze_with(&alice, &["cancel", &ids]);
    assert!(out.status.success(), "{}", show(&out));
    wait_for("the job cancelled", LONG, || {
        (c.show(id)["state"] == "cancelled").then_some(())
    });
}

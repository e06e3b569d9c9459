//! Issue 14, one user per slot: an agent running as root with slot users runs two jobs of two
//! users' tokens as two different unprivileged users, and the kernel keeps them apart. Real
//! scheduler, agent, processes and users (created like `graze-agent install` does).
#![allow(clippy::unwrap_used)]

use graze_tests::*;
use std::path::Path;
use std::time::Duration;

#[test]
fn two_jobs_on_one_agent_cannot_touch_each_other() {
    ensure_built();
    if ensure_test_user().is_none() {
        eprintln!("skipped: slot users need root (the agent switches users only as root)");
        return;
    }
    // Two slot users in the test user's group, as `graze-agent install` makes them.
    let gid = graze_agent::jobs::confine::user_by_name(TEST_USER)
        .unwrap()
        .gid;
    let prefix = format!("{TEST_USER}-s");
    for i in 0..2 {
        graze_agent::install::ensure_user_in(Path::new("/"), &format!("{prefix}{i}"), Some(gid))
            .unwrap();
    }
    let mut c = Cluster::start(&[]);
    c.add_agent("iso", "127.0.0.2", 2, &["--slot-users", &prefix]);
    c.wait_offered(1);
    let alice = c.create_token("user", "alice");
    let bob = c.create_token("user", "bob");

    // Bob's job keeps a file in its job directory and runs a while.
    let b = c.submit_with(
        &bob,
        &[
            "-n",
            "1",
            "--",
            "sh",
            "-c",
            "echo bob-secret > $TMPDIR/mine; echo ran as $(id -un); sleep 12; cat $TMPDIR/mine",
        ],
    );
    let pid = wait_for("bob's job running", Duration::from_secs(60), || {
        c.job_processes(b).into_iter().min()
    });
    let bdir = c.dir.path().join("spool/iso/jobs").join(b.to_string());
    // Alice's job tries to stop Bob's process, read its environment and its job directory.
    let probe = format!(
        "exec 2>&1; echo ran as $(id -un); kill -STOP {pid} || echo kill-refused; \
         cat /proc/{pid}/environ >/dev/null || echo environ-refused; \
         ls {d} >/dev/null || echo dir-refused; cat {d}/tmp/mine || echo file-refused",
        d = bdir.display()
    );
    let a = c.submit_with(&alice, &["-n", "1", "--", "sh", "-c", &probe]);
    let done = c.graze_with(&alice, &["wait", &a.to_string()]);
    let alogs = c.logs(a);
    assert!(done.status.success(), "{alogs}");
    // Each attempt refused by the kernel, with its errno's message.
    for (word, errno) in [
        ("kill-refused", "Operation not permitted"),
        ("environ-refused", "Permission denied"),
        ("dir-refused", "Permission denied"),
        ("file-refused", "Permission denied"),
    ] {
        assert!(alogs.contains(word), "{word} missing:\n{alogs}");
        assert!(alogs.contains(errno), "{errno} missing:\n{alogs}");
    }
    assert!(!alogs.contains("bob-secret"), "{alogs}");
    assert_ne!(process_state(pid), Some('T'), "bob's process was stopped");
    // Bob's job completes, as another user than Alice's.
    let done = c.graze_with(&bob, &["wait", &b.to_string()]);
    let blogs = c.logs(b);
    assert!(done.status.success(), "{blogs}");
    assert!(blogs.contains("bob-secret"), "{blogs}");
    let user_of = |logs: &str| {
        logs.lines()
            .find_map(|l| l.split("ran as ").nth(1).map(str::trim).map(str::to_owned))
            .unwrap()
    };
    let (ua, ub) = (user_of(&alogs), user_of(&blogs));
    assert!(
        ua.starts_with(&prefix) && ub.starts_with(&prefix),
        "{ua} {ub}"
    );
    assert_ne!(ua, ub);
    // Users go back to the pool at the clear: a later job gets one again.
    let id = c.submit_with(
        &alice,
        &["-n", "1", "--", "sh", "-c", "echo ran as $(id -un)"],
    );
    assert!(c.graze(&["wait", &id.to_string()]).status.success());
    assert!(user_of(&c.logs(id)).starts_with(&prefix));
    // `graze nodes` says which nodes do not isolate jobs: not this one, but one without
    // slot users.
    c.add_agent("shared", "127.0.0.3", 1, &[]);
    c.wait_offered(2);
    let nodes = String::from_utf8_lossy(&c.graze(&["nodes"]).stdout).into_owned();
    assert!(!nodes.contains("iso: "), "{nodes}");
    assert!(
        nodes.contains(&format!(
            "shared: every job runs as '{TEST_USER}': jobs here are not isolated"
        )),
        "{nodes}"
    );
}

//! Issue 6 acceptance: unprivileged jobs, roles, revocation, a contained launcher shim, audit.
//! Real scheduler, real agents (as root here, running jobs as an unprivileged test user), real
//! `graze` commands.
#![allow(clippy::unwrap_used)]

use graze_tests::*;
use std::time::Duration;

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn err(out: &std::process::Output) -> String {
    assert!(
        !out.status.success(),
        "expected a failure, got: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn wait_done(c: &Cluster, id: u64) -> serde_json::Value {
    let _ = c.graze(&["wait", &id.to_string()]);
    c.show(id)
}

#[test]
fn job_runs_unprivileged_without_the_agents_secrets() {
    let mut c = Cluster::start(&[]);
    c.add_agent("u2", "127.0.0.2", 1, &[]);
    c.wait_offered(1);
    let id = c.submit(&["-n", "1", "--", "sh", "-c", "id -u; env; pwd"]);
    let job = wait_done(&c, id);
    assert_eq!(job["state"], "completed", "{job}");
    let text = ok(&c.graze(&["logs", &id.to_string()]));
    let uid: u32 = text
        .lines()
        .find_map(|l| l.trim_start_matches("[-]").trim().parse().ok())
        .unwrap_or_else(|| panic!("no uid line in the job's output:\n{text}"));
    if is_root() {
        assert_ne!(uid, 0, "the job ran as root:\n{text}");
        assert_eq!(Some(uid), ensure_test_user(), "{text}");
    }
    let access = graze_net::Access::load(&c.access).unwrap();
    assert!(
        !text.contains(&access.token),
        "the token reached the job:\n{text}"
    );
    assert!(!text.contains("GRAZE_ACCESS"), "{text}");
    assert!(
        !text.contains(&c.access.display().to_string()),
        "the access file path reached the job:\n{text}"
    );
    assert!(text.contains("GRAZE_JOB_ID="), "{text}");
    assert!(text.contains("PATH="), "{text}");
    // It ran in its own directory under the spool, removed after the job.
    let jobdir = c.dir.path().join("spool/u2/jobs").join(id.to_string());
    assert!(text.contains(&jobdir.display().to_string()), "{text}");
    wait_for("the job directory removed", Duration::from_secs(10), || {
        (!jobdir.exists()).then_some(())
    });
    // Files a job leaves behind are kept as its output, the rest goes.
    let id = c.submit(&[
        "-n",
        "1",
        "--",
        "sh",
        "-c",
        "cd \"$(dirname \"$GRAZE_NODEFILE\")\" && echo 42 > result.txt",
    ]);
    assert_eq!(wait_done(&c, id)["state"], "completed");
    let kept = c.dir.path().join("spool/u2/output").join(id.to_string());
    wait_for("the job's output kept", Duration::from_secs(10), || {
        kept.join("result.txt").exists().then_some(())
    });
    assert_eq!(
        std::fs::read_dir(&kept).unwrap().count(),
        1,
        "only the job's own file"
    );
}

#[test]
fn roles_are_enforced_and_revocation_is_immediate() {
    let mut c = Cluster::start(&[]);
    let alice = c.create_token("user", "alice");
    let bob = c.create_token("user", "bob");
    let pc = c.create_token("agent", "pc-r2");

    // A user token cannot register an agent.
    c.add_agent_with(&alice.clone(), "intruder", "127.0.0.9", 1, &[]);
    let a = c.agents.last_mut().unwrap();
    let st = wait_for("the refused agent to exit", Duration::from_secs(30), || {
        a.child.try_wait().unwrap()
    });
    assert!(!st.success());
    let log = c.log("intruder");
    assert!(log.contains("cannot register an agent"), "agent log: {log}");
    c.agents.pop();

    // A token bound to a node registers that node only: one PC cannot pose as another.
    let bound = c.create_token_with("agent", "pc-r3", &["--node", "r3"]);
    c.add_agent_with(&bound, "r4", "127.0.0.4", 1, &[]);
    let a = c.agents.last_mut().unwrap();
    let st = wait_for(
        "the impostor agent to exit",
        Duration::from_secs(30),
        || a.child.try_wait().unwrap(),
    );
    assert!(!st.success());
    let log = c.log("r4");
    assert!(
        log.contains("token 'pc-r3' may register only node 'r3', not 'r4'"),
        "agent log: {log}"
    );
    c.agents.pop();
    assert!(
        c.graze_json(&["nodes", "--json"])
            .as_array()
            .unwrap()
            .is_empty(),
        "the impostor registered"
    );

    // An agent token registers a node, but cannot submit or look at jobs.
    c.add_agent_with(&pc.clone(), "r2", "127.0.0.2", 2, &[]);
    c.wait_offered(1);
    let e = err(&c.graze_with(&pc, &["submit", "-n", "1", "--", "true"]));
    assert!(e.contains("has role agent"), "{e}");
    let e = err(&c.graze_with(&pc, &["queue"]));
    assert!(e.contains("has role agent"), "{e}");

    // Alice's job records alice, whatever her login says.
    let out = c.graze_with(
        &alice,
        &["submit", "--json", "-n", "1", "--", "sleep", "60"],
    );
    let id: u64 = serde_json::from_str::<serde_json::Value>(&ok(&out)).unwrap()["id"]
        .as_u64()
        .unwrap();
    assert_eq!(c.show(id)["spec"]["user"], "alice");
    let q = ok(&c.graze_with(&alice, &["queue"]));
    assert!(q.contains("alice"), "{q}");

    // Bob cannot see or cancel it.
    let q: serde_json::Value =
        serde_json::from_str(&ok(&c.graze_with(&bob, &["queue", "--json"]))).unwrap();
    assert_eq!(q.as_array().unwrap().len(), 0, "bob sees alice's job: {q}");
    let e = err(&c.graze_with(&bob, &["cancel", &id.to_string()]));
    assert!(e.contains("belongs to 'alice'"), "{e}");
    assert_eq!(c.show(id)["state"], "running");
    // Users cannot drain; the admin can.
    let e = err(&c.graze_with(&bob, &["drain", "r2"]));
    assert!(e.contains("needs an admin token"), "{e}");
    ok(&c.graze(&["drain", "r2"]));
    let nodes = c.graze_json(&["nodes", "--json"]);
    assert_eq!(nodes[0]["drained"], true, "{nodes}");
    // The mark is durable: it survives a scheduler crash.
    c.kill_scheduler();
    c.restart_scheduler(&[]);
    let nodes = c.graze_json(&["nodes", "--json"]);
    assert_eq!(
        nodes[0]["drained"], true,
        "drain lost in a restart: {nodes}"
    );
    wait_for("r2 back online", Duration::from_secs(30), || {
        (c.graze_json(&["nodes", "--json"])[0]["online"] == true).then_some(())
    });
    ok(&c.graze(&["undrain", "r2"]));

    // Alice cancels her own job.
    ok(&c.graze_with(&alice, &["cancel", &id.to_string()]));
    wait_for("alice's job cancelled", Duration::from_secs(20), || {
        (c.show(id)["state"] == "cancelled").then_some(())
    });

    // Revoked: refused on the next connection, without restarting the scheduler.
    ok(&c.graze_with(&alice, &["queue"]));
    c.revoke_token("alice");
    let e = err(&c.graze_with(&alice, &["queue"]));
    assert!(e.contains("invalid cluster token"), "{e}");

    // Everything above is in the audit log, with identity and reason.
    let audit = std::fs::read_to_string(c.state_dir().join("audit.log")).unwrap();
    for want in [
        "action=connect result=refused",
        "who=alice role=user action=connect result=refused peer=127.0.0.9",
        "who=alice role=user action=submit result=ok",
        "who=bob role=user action=cancel result=refused",
        "belongs to 'alice'",
        "who=bob role=user action=drain result=refused",
        "who=admin role=admin action=drain result=ok node=r2",
        "who=alice role=user action=cancel result=ok",
        "who=pc-r2 role=agent action=connect result=refused",
        "who=pc-r3 role=agent action=register result=refused",
    ] {
        assert!(audit.contains(want), "audit log lacks {want:?}:\n{audit}");
    }
}

#[test]
fn shim_is_contained() {
    let mut c = Cluster::start(&[]);
    c.add_agent("s2", "127.0.0.2", 1, &[]);
    c.add_agent("s3", "127.0.0.3", 1, &[]);
    c.add_agent("s4", "127.0.0.4", 2, &[]);
    c.wait_offered(3);
    // A place the job's user may write, to see whether anything ran.
    let marks = c.dir.path().join("marks");
    std::fs::create_dir(&marks).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&marks, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    // Job A holds s4 alone.
    let a = c.submit(&["-n", "2", "--nodes", "s4", "--", "sleep", "60"]);
    wait_for("job A running", Duration::from_secs(20), || {
        (c.show(a)["state"] == "running").then_some(())
    });
    // Job B runs on s2 (1 core); s3 is not its node.
    let m = marks.display();
    let script = format!(
        "graze-launch s2 touch {m}/own-node; echo own=$?; \
         graze-launch s3 touch {m}/other-node; echo other=$?; \
         GRAZE_JOB_ID={a} graze-launch s4 touch {m}/other-job; echo job=$?"
    );
    let b = c.submit(&["-n", "1", "--nodes", "s2", "--", "sh", "-c", &script]);
    let job = wait_done(&c, b);
    assert_eq!(job["state"], "completed", "{job}");
    let out = c.graze(&["logs", &b.to_string()]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The control: a launch onto its own node works.
    assert!(text.contains("own=0"), "{text}");
    assert!(marks.join("own-node").exists(), "{text}");
    // A node outside the allocation, and another job's id: refused, nothing started.
    assert!(text.contains("other=255"), "{text}");
    assert!(text.contains("not allocated to job"), "{text}");
    assert!(text.contains("job=255"), "{text}");
    assert!(!marks.join("other-node").exists(), "{text}");
    assert!(!marks.join("other-job").exists(), "{text}");
    ok(&c.graze(&["cancel", &a.to_string()]));
}

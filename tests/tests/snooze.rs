//! Issue 14, owner controls: `graze-agent snooze` by the person at the PC (a user the test's
//! utmp file has on `tty1`) offers nothing and vacates running jobs; a user logged in only
//! over SSH (a `pts` line from a remote host) is refused; `graze-agent status` tells anyone
//! what graze does there; `snooze off` gives the PC back to the cluster. Real scheduler,
//! agent, processes and users; the uid comes from the kernel (SO_PEERCRED).
#![allow(clippy::unwrap_used)]

use graze_tests::*;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(120);
const AWAY: &str = "graze-test-away";

/// `graze-agent ARGS` as the user `(uid, gid)`.
fn agent_cmd(who: (u32, u32), args: &[&str]) -> std::process::Output {
    std::process::Command::new(bin("graze-agent"))
        .args(args)
        .uid(who.0)
        .gid(who.1)
        .env_remove("GRAZE_OWNER_SOCKET")
        .output()
        .unwrap()
}

#[test]
fn the_person_at_the_pc_snoozes_graze_and_others_are_refused() {
    ensure_built();
    if ensure_test_user().is_none() {
        eprintln!("skipped: needs root (two users and their uids)");
        return;
    }
    let at_pc = graze_agent::jobs::confine::user_by_name(TEST_USER).unwrap();
    graze_agent::install::ensure_user(Path::new("/"), AWAY).unwrap();
    let away = graze_agent::jobs::confine::user_by_name(AWAY).unwrap();
    let mut c = Cluster::start(&[]);
    // Who is logged in: the test user at the console, the other over SSH.
    let utmp = c.dir.path().join("utmp");
    let mut u = graze_agent::owner::local::utmp_record(TEST_USER, "tty1", "");
    u.extend(graze_agent::owner::local::utmp_record(
        AWAY, "pts/4", "10.1.2.3",
    ));
    std::fs::write(&utmp, u).unwrap();
    let sock = c.dir.path().join("pc.owner.sock");
    let (sock_s, utmp_s) = (sock.display().to_string(), utmp.display().to_string());
    c.add_agent(
        "pc",
        "127.0.0.2",
        1,
        &["--owner-socket", &sock_s, "--utmp", &utmp_s],
    );
    c.wait_offered(1);
    let id = c.submit(&["-n", "1", "--", "sleep", "300"]);
    wait_for("the job running", LONG, || {
        (c.show(id)["state"] == "running").then_some(())
    });
    let as_pc = (at_pc.uid, at_pc.gid);
    let as_away = (away.uid, away.gid);

    // Someone not at the seat cannot snooze it; the job runs on.
    let out = agent_cmd(as_away, &["snooze", "1h", "--socket", &sock_s]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        err.contains(&format!(
            "refused: '{AWAY}' is not logged in at this PC's seat or console"
        )),
        "{err}"
    );
    assert_eq!(c.show(id)["state"], "running");

    // The person at the PC does: nothing offered, the job vacated and requeued.
    let out = agent_cmd(as_pc, &["snooze", "1h", "--socket", &sock_s]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(said.contains("graze is snoozed until"), "{said}");
    assert!(said.contains(&format!("job {id}")), "{said}");
    wait_for("the job vacated by the snooze", LONG, || {
        let j = c.show(id);
        (j["requeues"] == 1 && j["state"] == "queued").then_some(())
    });
    let ev = events(&c.show(id));
    assert!(
        ev.iter()
            .any(|e| e.contains("the owner of node pc snoozed graze")),
        "{ev:?}"
    );
    assert_eq!(c.node("pc")["status"]["availability"]["state"], "snoozed");
    assert!(c.offered_nodes().is_empty());
    let nodes = String::from_utf8_lossy(&c.graze(&["nodes"]).stdout).into_owned();
    assert!(nodes.contains("snoozed by its owner"), "{nodes}");

    // Anyone on the PC may ask what graze does there.
    let out = agent_cmd(as_away, &["status", "--socket", &sock_s]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(said.contains("You snoozed graze until"), "{said}");
    assert!(
        said.contains("When you touch the keyboard or mouse"),
        "{said}"
    );

    // Bad requests get a clear error, and change nothing.
    let out = agent_cmd(as_pc, &["snooze", "a while", "--socket", &sock_s]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a duration"));

    // `snooze off`: the PC is offered again and the job runs there again.
    let out = agent_cmd(as_pc, &["snooze", "off", "--socket", &sock_s]);
    assert!(out.status.success(), "{out:?}");
    c.wait_offered(1);
    wait_for("the job running again", LONG, || {
        (c.show(id)["state"] == "running").then_some(())
    });
    let out = agent_cmd(as_away, &["status", "--socket", &sock_s]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains(&format!("job {id} since")), "{said}");
    assert!(c.graze(&["cancel", &id.to_string()]).status.success());
}

//! `graze clusrun` with real processes: a scheduler and 3 agents on loopback, the real
//! `graze` command. Output labelled per node, exit codes in the table and the CLI's status,
//! the owner's presence (the agent's `file:` idle source), nice 19 with --even-if-busy, the
//! timeout killing the whole process group, the job user (never root), refusals, node loss.
#![allow(clippy::unwrap_used)]

use graze_tests::*;
use serde_json::Value;
use std::process::{Output, Stdio};
use std::time::{Duration, SystemTime};

const LONG: Duration = Duration::from_secs(60);

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn show(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    )
}

/// The closing table's row of `node`, as words.
fn row(out: &Output, node: &str) -> String {
    let t = text(&out.stdout);
    t.lines()
        .find(|l| l.split_whitespace().next() == Some(node))
        .unwrap_or_else(|| panic!("no row for {node}:\n{}", show(out)))
        .to_string()
}

fn three(extra_scheduler: &[&str]) -> Cluster {
    let mut c = Cluster::start(extra_scheduler);
    for (i, n) in ["x1", "x2", "x3"].iter().enumerate() {
        c.add_agent(n, &format!("127.0.0.{}", i + 2), 1, &[]);
    }
    c.wait_offered(3);
    c
}

fn availability(c: &Cluster, node: &str) -> String {
    c.node(node)["status"]["availability"]["state"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// Pids of live processes whose command line is exactly `words`.
fn processes_running(words: &[&str]) -> Vec<u32> {
    let want = words.join("\0") + "\0";
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == want.as_bytes())
                && process_state(*pid).is_some_and(|s| s != 'Z')
        })
        .collect()
}

#[test]
fn clusrun_labels_output_reports_exits_and_respects_the_owner() {
    let c = three(&[]);
    let uid = ensure_test_user();

    // Every node, one exits 3. The command prints its uid, nice, PATH and whether the
    // agent's own environment leaked in (the harness sets GRAZE_TEST_CLUSTER for agents).
    let script = r#"echo "hi from $GRAZE_NODE uid=$(id -u) ni=$(cut -d' ' -f19 /proc/$$/stat) path=$PATH leak=${GRAZE_TEST_CLUSTER:-none}"; echo "err from $GRAZE_NODE" >&2; [ "$GRAZE_NODE" = x2 ] && exit 3; exit 0"#;
    let out = c.graze(&["clusrun", "--all", "--", "sh", "-c", script]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    for n in ["x1", "x2", "x3"] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("[{n}] hi from {n} ")))
            .unwrap_or_else(|| panic!("no labelled line of {n}:\n{}", show(&out)));
        let uid_seen: u32 = line
            .split("uid=")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no uid in {line}"));
        assert_ne!(uid_seen, 0, "clusrun ran as root: {line}");
        if let Some(u) = uid {
            assert_eq!(uid_seen, u, "not the job user {TEST_USER}: {line}");
        }
        assert!(
            line.contains("path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "),
            "{line}"
        );
        assert!(line.ends_with("leak=none"), "{line}");
        assert!(
            stderr.contains(&format!("[{n}] err from {n}")),
            "{}",
            show(&out)
        );
    }
    assert!(row(&out, "x2").ends_with("exit 3"), "{}", show(&out));
    assert!(row(&out, "x1").ends_with("exit 0"), "{}", show(&out));
    assert!(row(&out, "x3").ends_with("exit 0"), "{}", show(&out));
    assert!(
        stdout.contains("3 nodes: 2 ok, 1 failed, 0 skipped, 0 offline"),
        "{}",
        show(&out)
    );

    // The owner of x3 is at the keyboard (the idle file's mtime in the future: input "now"
    // for as long as the test needs).
    let idle = c.agents[2].idle_file.clone();
    std::fs::File::options()
        .write(true)
        .open(&idle)
        .unwrap()
        .set_modified(SystemTime::now() + Duration::from_secs(3600))
        .unwrap();
    wait_for("x3 owner-busy", LONG, || {
        (availability(&c, "x3") == "owner_active").then_some(())
    });
    let out = c.graze(&["clusrun", "--all", "--", "sh", "-c", "echo ok $GRAZE_NODE"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("[x1] ok x1") && stdout.contains("[x2] ok x2"),
        "{stdout}"
    );
    assert!(!stdout.contains("[x3]"), "ran where the owner is: {stdout}");
    assert!(
        row(&out, "x3").contains("skipped: owner present (input"),
        "{}",
        show(&out)
    );
    // Only x3 asked for: it ran nowhere, which is a failure.
    let out = c.graze(&["clusrun", "--nodes", "x3", "--", "true"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        row(&out, "x3").contains("skipped: owner present"),
        "{}",
        show(&out)
    );
    // --even-if-busy runs there, at nice 19.
    let out = c.graze(&[
        "clusrun",
        "--nodes",
        "x3",
        "--even-if-busy",
        "--",
        "sh",
        "-c",
        "echo ni=$(cut -d' ' -f19 /proc/$$/stat)",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(text(&out.stdout).contains("[x3] ni=19"), "{}", show(&out));

    // --json: one document with every node's result and output.
    let out = c.graze(&[
        "clusrun",
        "--json",
        "--nodes",
        "x2,x1",
        "--",
        "sh",
        "-c",
        "echo j $GRAZE_NODE; echo e >&2",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let doc: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", show(&out)));
    assert_eq!(doc["exit_code"], 0, "{doc}");
    let nodes = doc["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 2, "{doc}");
    for (v, n) in nodes.iter().zip(["x1", "x2"]) {
        assert_eq!(v["node"], n, "{doc}");
        assert_eq!(v["outcome"]["result"], "exited", "{doc}");
        assert_eq!(v["outcome"]["exit"]["code"], 0, "{doc}");
        let lines: Vec<(String, String)> = v["output"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                (
                    l["stream"].as_str().unwrap().to_string(),
                    l["line"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert!(
            lines.contains(&("stdout".into(), format!("j {n}"))),
            "{doc}"
        );
        assert!(lines.contains(&("stderr".into(), "e".into())), "{doc}");
    }
}

#[test]
fn clusrun_timeout_refusals_and_node_loss() {
    let mut c = three(&["--node-timeout", "3s"]);

    // The timeout kills the whole process group (sh and its sleep) and says so.
    let out = c.graze(&[
        "clusrun",
        "--nodes",
        "x1",
        "--timeout",
        "1s",
        "--",
        "sh",
        "-c",
        "echo start; sleep 97; echo never",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(text(&out.stdout).contains("[x1] start"), "{}", show(&out));
    assert!(!text(&out.stdout).contains("never"), "{}", show(&out));
    assert!(row(&out, "x1").ends_with("timeout"), "{}", show(&out));
    wait_for("no sleep 97 left", LONG, || {
        processes_running(&["sleep", "97"]).is_empty().then_some(())
    });

    // A user token is refused, and the refusal is audited.
    let alice = c.create_token("user", "alice");
    let out = c.graze_with(&alice, &["clusrun", "--all", "--", "true"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        text(&out.stderr).contains("clusrun needs an admin token; 'alice' has role user"),
        "{}",
        show(&out)
    );
    let audit = std::fs::read_to_string(c.state_dir().join("audit.log")).unwrap();
    assert!(
        audit.lines().any(|l| l.contains("who=alice")
            && l.contains("action=clusrun")
            && l.contains("result=refused")),
        "{audit}"
    );
    assert!(
        audit.lines().any(|l| l.contains("who=admin")
            && l.contains("action=clusrun")
            && l.contains("result=ok")),
        "{audit}"
    );

    // An unknown node refuses the whole run, naming it; nothing runs.
    let out = c.graze(&["clusrun", "--nodes", "x1,ghost", "--", "true"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        text(&out.stderr).contains("no node 'ghost' (known nodes: x1, x2, x3)"),
        "{}",
        show(&out)
    );
    let out = c.graze(&["clusrun", "--group", "gpu", "--", "true"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        text(&out.stderr).contains("no node is in group 'gpu'"),
        "{}",
        show(&out)
    );

    // A program that is not there: that node could not start it.
    let out = c.graze(&["clusrun", "--nodes", "x1", "--", "nosuch-graze-cmd"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        row(&out, "x1")
            .contains("not started: cannot run 'nosuch-graze-cmd': No such file or directory"),
        "{}",
        show(&out)
    );

    // The CLI killed mid-run (as by ctrl-c): the scheduler notices the client gone (at the
    // latest at the connection's idle timeout) and has the command killed.
    let mut cli = command(None, &bin("graze"))
        .arg("--access")
        .arg(&c.access)
        .args([
            "clusrun",
            "--nodes",
            "x2",
            "--timeout",
            "5m",
            "--",
            "sleep",
            "95",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("sleep 95 running on x2", LONG, || {
        (!processes_running(&["sleep", "95"]).is_empty()).then_some(())
    });
    cli.kill().unwrap();
    cli.wait().unwrap();
    wait_for("sleep 95 killed after its client went away", LONG, || {
        processes_running(&["sleep", "95"]).is_empty().then_some(())
    });

    // An agent killed mid-run: that node is lost, never a hang; the others report.
    let mut child = command(None, &bin("graze"))
        .arg("--access")
        .arg(&c.access)
        .args([
            "clusrun",
            "--all",
            "--timeout",
            "2m",
            "--",
            "sh",
            "-c",
            r#"[ "$GRAZE_NODE" = x3 ] && exec sleep 96; echo done"#,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("sleep 96 running on x3", LONG, || {
        (!processes_running(&["sleep", "96"]).is_empty()).then_some(())
    });
    let agent = &mut c.agents[2].child;
    agent.kill().unwrap();
    agent.wait().unwrap();
    wait_for("graze clusrun to end after the node loss", LONG, || {
        child.try_wait().unwrap().map(|_| ())
    });
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(row(&out, "x3").contains("node lost"), "{}", show(&out));
    assert!(row(&out, "x1").ends_with("exit 0"), "{}", show(&out));
    // The dead agent's guard killed its clusrun.
    wait_for("no sleep 96 left", LONG, || {
        processes_running(&["sleep", "96"]).is_empty().then_some(())
    });
    // x3 is offline now.
    let out = c.graze(&["clusrun", "--all", "--", "true"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(row(&out, "x3").ends_with("offline"), "{}", show(&out));
}

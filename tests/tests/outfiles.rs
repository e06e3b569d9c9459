//! Issue 11, output files and attempts: `graze submit --stdout PATTERN --stderr PATTERN` with
//! real agents (as root, jobs as the test user) and real MPICH jobs; a requeued job's
//! attempts kept apart in the files and in `graze logs --attempt`; bad patterns refused; a
//! planted symlink not written through.
#![allow(clippy::unwrap_used)]

use graze_tests::*;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(120);

/// A directory the job's user owns (the job's working directory), inside the cluster's.
fn job_dir(c: &Cluster, name: &str) -> PathBuf {
    let d = c.dir.path().join(name);
    std::fs::create_dir_all(&d).unwrap();
    if let Some(uid) = ensure_test_user() {
        std::os::unix::fs::chown(&d, Some(uid), None).unwrap();
    }
    d
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn wait_done(c: &Cluster, id: u64) -> serde_json::Value {
    let out = c.graze(&["wait", &id.to_string()]);
    let job = c.show(id);
    assert!(out.status.success(), "{job}\n{}", c.logs(id));
    job
}

#[test]
fn one_file_per_rank_on_the_first_node_owned_by_the_job_user() {
    let mut c = Cluster::start(&[]);
    c.add_agent("o2", "127.0.0.2", 2, &[]);
    c.add_agent("o3", "127.0.0.3", 2, &[]);
    c.wait_offered(2);
    let dir = job_dir(&c, "ranks");
    // Each rank writes three stdout lines and one stderr line (no --stderr: the same file).
    let script = "for i in 1 2 3; do echo \"rank $PMI_RANK line $i\"; done; \
                  echo \"rank $PMI_RANK err\" >&2";
    let id = c.submit(&[
        "-n",
        "4",
        "--cwd",
        dir.to_str().unwrap(),
        "--stdout",
        "out-%j-%r.txt",
        "--",
        "mpiexec",
        "sh",
        "-c",
        script,
    ]);
    let job = wait_done(&c, id);
    assert_eq!(job["allocation"].as_array().unwrap().len(), 2, "{job}");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let want: Vec<String> = (0..4).map(|r| format!("out-{id}-{r}.txt")).collect();
    assert_eq!(names, want, "{}", c.logs(id));
    for r in 0..4 {
        let p = dir.join(format!("out-{id}-{r}.txt"));
        let text = read(&p);
        let mut out: Vec<&str> = text.lines().filter(|l| !l.ends_with(" err")).collect();
        let err: Vec<&str> = text.lines().filter(|l| l.ends_with(" err")).collect();
        // Each stream's lines in their order; stdout and stderr interleave as they arrived.
        assert_eq!(
            out,
            (1..=3)
                .map(|i| format!("rank {r} line {i}"))
                .collect::<Vec<_>>(),
            "{}",
            p.display()
        );
        assert_eq!(err, [format!("rank {r} err")], "{}", p.display());
        out.clear();
        if let Some(uid) = ensure_test_user() {
            let m = std::fs::metadata(&p).unwrap();
            assert_eq!(m.uid(), uid, "{} belongs to the job's user", p.display());
            assert_ne!(m.uid(), 0);
        }
    }
    // graze logs still has every line.
    let logs = c.logs(id);
    assert_eq!(logs.matches(" line ").count(), 12, "{logs}");
}

#[test]
fn a_requeued_job_keeps_each_attempts_output() {
    let mut c = Cluster::start(&[]);
    // The owner comes back and stays 2 s: the job is vacated and requeued; once the owner has
    // been away 1 s the node offers again and the job's second attempt runs there.
    let policy = [
        "--resume-after",
        "1s",
        "--vacate-after",
        "2s",
        "--vacate-grace",
        "1s",
    ];
    c.add_agent("v2", "127.0.0.2", 2, &policy);
    c.wait_offered(1);
    let dir = job_dir(&c, "attempts");
    // The first run marks itself and waits to be vacated; the second prints and ends.
    let script = "if [ -e first-ran ]; then echo second run; echo second err >&2; \
                  else touch first-ran; echo first run; echo first err >&2; sleep 600; fi";
    let id = c.submit(&[
        "-n",
        "1",
        "--cwd",
        dir.to_str().unwrap(),
        "--stdout",
        "out-%j.txt",
        "--stderr",
        "err-%j-%n.txt",
        "--",
        "sh",
        "-c",
        script,
    ]);
    c.wait_output(id, "first run", 1);
    // A follower from attempt 1 on: it goes on into attempt 2, saying so, until the end.
    let follower = std::process::Command::new(bin("graze"))
        .arg("--access")
        .arg(&c.access)
        .args(["logs", &id.to_string(), "--follow"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let idle = c.agents[0].idle_file.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let typing = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                touch(&idle);
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    wait_for("the job vacated and requeued", LONG, || {
        let job = c.show(id);
        (job["requeues"] == 1).then_some(())
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    typing.join().unwrap();
    let job = wait_done(&c, id);
    assert_eq!(job["state"], "completed", "{job}");
    let followed = follower.wait_with_output().unwrap();
    assert!(followed.status.success(), "{followed:?}");
    assert_eq!(
        String::from_utf8_lossy(&followed.stdout),
        "[-] first run\n[-] second run\n"
    );
    assert_eq!(
        String::from_utf8_lossy(&followed.stderr),
        format!("[-] first err\ngraze: job {id}: attempt 2 started (the job was requeued)\n[-] second err\n")
    );

    // Files: the plain name holds the latest attempt, the earlier one is renamed aside;
    // with %n each attempt has its own file.
    assert_eq!(read(&dir.join(format!("out-{id}.txt"))), "second run\n");
    assert_eq!(
        read(&dir.join(format!("out-{id}.attempt1.txt"))),
        "first run\n"
    );
    assert_eq!(read(&dir.join(format!("err-{id}-1.txt"))), "first err\n");
    assert_eq!(read(&dir.join(format!("err-{id}-2.txt"))), "second err\n");

    // graze logs: each attempt on its own; the plain form shows the latest and names the rest.
    let logs = |extra: &[&str]| {
        let mut a = vec!["logs".to_string(), id.to_string()];
        a.extend(extra.iter().map(|s| s.to_string()));
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let out = c.graze(&a);
        assert!(out.status.success(), "{a:?}: {out:?}");
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (out, err) = logs(&["--attempt", "1"]);
    assert_eq!(
        (out.as_str(), err.as_str()),
        ("[-] first run\n", "[-] first err\n")
    );
    let (out, err) = logs(&["--attempt", "2"]);
    assert_eq!(
        (out.as_str(), err.as_str()),
        ("[-] second run\n", "[-] second err\n")
    );
    let (out, err) = logs(&[]);
    assert_eq!(out, "[-] second run\n");
    assert!(
        err.contains(&format!(
            "graze: job {id}: showing attempt 2; earlier attempt 1 (graze logs {id} --attempt N"
        )),
        "{err}"
    );
    assert!(err.ends_with("[-] second err\n"), "{err}");
    let (out, _) = logs(&["--attempt", "all"]);
    assert_eq!(
        out,
        "==> attempt 1 <==\n[-] first run\n==> attempt 2 <==\n[-] second run\n"
    );
    let bad = c.graze(&["logs", &id.to_string(), "--attempt", "3"]);
    assert!(!bad.status.success());
    let e = String::from_utf8_lossy(&bad.stderr);
    assert!(
        e.contains(&format!(
            "invalid --attempt '3': job {id} has output from attempts 1, 2 only"
        )),
        "{e}"
    );
}

#[test]
fn bad_patterns_are_refused_and_nothing_is_queued() {
    let mut c = Cluster::start(&[]);
    c.add_agent("p2", "127.0.0.2", 1, &[]);
    c.wait_offered(1);
    for (flags, want) in [
        (
            vec!["--stdout", "out-%x.txt"],
            "invalid value 'out-%x.txt' for '--stdout <PATTERN>': unknown '%x'",
        ),
        (
            vec!["--stdout", "out-%"],
            "invalid value 'out-%' for '--stdout <PATTERN>': it ends in a lone '%'",
        ),
        (
            vec!["--stdout", ""],
            "invalid value '' for '--stdout <PATTERN>': the pattern is empty",
        ),
        (
            vec!["--stdout", "o", "--stderr", "logs/"],
            "invalid value 'logs/' for '--stderr <PATTERN>': it names a directory",
        ),
    ] {
        let mut args = vec!["submit", "-n", "1"];
        args.extend(&flags);
        args.extend(["--", "true"]);
        let out = c.graze(&args);
        assert!(!out.status.success(), "{flags:?}");
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(e.contains(want), "{flags:?}: {e}");
    }
    let jobs = c.graze_json(&["queue", "--all", "--json"]);
    assert_eq!(jobs.as_array().unwrap().len(), 0, "{jobs}");
}

#[test]
fn a_planted_symlink_is_not_written_through() {
    if ensure_test_user().is_none() {
        eprintln!("skipped: needs root (jobs as an unprivileged user)");
        return;
    }
    let mut c = Cluster::start(&[]);
    c.add_agent("s2", "127.0.0.2", 1, &[]);
    c.wait_offered(1);
    let dir = job_dir(&c, "planted");
    // Root's file, readable by all, and a symlink to it where the job's stdout file goes.
    let secret = c.dir.path().join("root-file");
    std::fs::write(&secret, "root's own\n").unwrap();
    std::os::unix::fs::symlink(&secret, dir.join("out.txt")).unwrap();
    // And a directory only root may write, for stderr.
    let locked = dir.join("locked");
    std::fs::create_dir(&locked).unwrap();
    std::os::unix::fs::chown(&locked, Some(0), Some(0)).unwrap();
    let id = c.submit(&[
        "-n",
        "1",
        "--cwd",
        dir.to_str().unwrap(),
        "--stdout",
        "out.txt",
        "--stderr",
        "locked/err.txt",
        "--",
        "sh",
        "-c",
        "echo to stdout; echo to stderr >&2",
    ]);
    let job = wait_done(&c, id);
    assert_eq!(job["state"], "completed", "{job}");
    assert_eq!(read(&secret), "root's own\n");
    assert!(!locked.join("err.txt").exists());
    // The job's end waits for its output files (and the writer's reports): both notes are
    // there when the job is final, before its end event.
    let ev = events(&job);
    let out_file = dir.join("out.txt");
    let err_file = locked.join("err.txt");
    for f in [&out_file, &err_file] {
        let want = format!(
            "on s2: cannot create output file '{}': Permission denied",
            f.display()
        );
        let at = ev.iter().position(|e| *e == want);
        let end = ev.iter().position(|e| e.starts_with("completed"));
        assert!(at.is_some() && at < end, "{want} before the end\n{ev:#?}");
    }
    // The output is still in graze logs.
    let out = c.graze(&["logs", &id.to_string()]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "[-] to stdout\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "[-] to stderr\n");
}

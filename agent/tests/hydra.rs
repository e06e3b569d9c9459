//! Checks, with the real MPICH `mpiexec`, that the files and environment the agent gives a
//! job make hydra launch through graze's launcher (here a stand-in script) on made-up host
//! names, and label every output line with `[RANK@HOST]`.
//!
//! Skipped (with a message) where `mpiexec` is not hydra.

#![allow(clippy::unwrap_used)]

use graze_agent::hydra::{self, JobEnv, JobFiles};
use graze_proto::{HostSlots, JobId};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn hydra_available() -> bool {
    Command::new("mpiexec")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("HYDRA"))
        .unwrap_or(false)
}

fn run_with_timeout(mut cmd: Command, limit: Duration) -> std::process::Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "mpiexec did not finish in {limit:?}; stdout: {} stderr: {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn hydra_launches_through_the_launcher_and_labels_ranks() {
    if !hydra_available() {
        eprintln!("skipped: mpiexec is not MPICH hydra");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("launcher.log");
    let launcher = dir.path().join("fake-launch");
    std::fs::write(
        &launcher,
        format!(
            "#!/bin/sh\necho \"$1\" >> '{}'\nhost=$1; shift; exec sh -c \"$*\"\n",
            log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&launcher, std::fs::Permissions::from_mode(0o755)).unwrap();

    let hosts = vec![
        HostSlots {
            host: "x1".into(),
            slots: 2,
        },
        HostSlots {
            host: "x2".into(),
            slots: 1,
        },
    ];
    let files = JobFiles::paths(&dir.path().join("jobs"), JobId(1));
    files.write(&hosts).unwrap();
    let vars = JobEnv {
        job: JobId(1),
        files: &files,
        hosts: &hosts,
        launcher: &launcher,
        launch_sock: Path::new("/nonexistent/launch.sock"),
        secret: "s",
        tag: "hydra-test",
        extra: &[],
    }
    .vars();

    let mut cmd = Command::new("mpiexec");
    // Each rank writes its line in three pieces (hydra labels each piece).
    cmd.args([
        "sh",
        "-c",
        "printf 'hi '; sleep 0.05; printf 'from '; sleep 0.05; echo $PMI_RANK",
    ])
    .current_dir(&files.dir)
    .envs(vars);
    let out = run_with_timeout(cmd, Duration::from_secs(60));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "mpiexec failed: {:?}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );

    let mut relabel = hydra::Relabel::new(vec!["x1".into(), "x2".into()]);
    let mut seen: Vec<(u32, String)> = stdout
        .lines()
        .flat_map(|l| relabel.line(l))
        .map(|(r, rest)| match r {
            Some(r) => (r, rest),
            None => panic!("unlabelled line {rest:?} in {stdout}"),
        })
        .collect();
    assert!(relabel.finish().is_empty());
    seen.sort();
    assert_eq!(
        seen,
        vec![
            (0, "hi from 0".to_string()),
            (1, "hi from 1".to_string()),
            (2, "hi from 2".to_string()),
        ]
    );
    // The raw output had labels inside lines: hydra labels each write, not each line.
    assert!(
        stdout.lines().any(|l| l.matches("@x").count() > 1),
        "{stdout}"
    );
    // The raw labels carry the host names from the host file.
    assert!(stdout.contains("[0@x1]"), "{stdout}");
    assert!(stdout.contains("[2@x2]"), "{stdout}");

    let mut called: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    called.sort();
    assert_eq!(called, vec!["x1", "x2"], "one launch per host");
}

//! Runs the real `graze-pi` binary under MPICH's `mpiexec -n 2`.
//!
//! MPICH (`mpiexec` on PATH) is a declared requirement of this crate, so a
//! missing `mpiexec` FAILS these tests rather than skipping them.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_graze-pi");
const TIMEOUT: Duration = Duration::from_secs(180);

fn find_mpiexec() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("mpiexec"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`mpiexec` not found on PATH ({}). MPICH is a required dependency of graze-pi: \
                 install it (Debian: `apt-get install mpich libmpich-dev`)",
                path.to_string_lossy()
            )
        })
}

/// Runs `mpiexec -n <ranks> graze-pi <args>` with a timeout.
fn mpiexec(ranks: u32, args: &[&str]) -> Output {
    let mut child = Command::new(find_mpiexec())
        .arg("-n")
        .arg(ranks.to_string())
        .arg(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning mpiexec");
    // Drain the pipes on threads so a chatty child cannot block on a full pipe.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut out, &mut v).unwrap();
        v
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut err, &mut v).unwrap();
        v
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("mpiexec {args:?} did not finish within {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out_t.join().unwrap(),
        stderr: err_t.join().unwrap(),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Parses `Computed value of pi on N processors is X`.
fn computed(stdout: &str) -> (u64, f64) {
    let lines: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("Computed value of pi on "))
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "exactly one Computed line expected:\n{stdout}"
    );
    let rest = lines[0].strip_prefix("Computed value of pi on ").unwrap();
    let (n, pi) = rest.split_once(" processors is ").unwrap();
    (n.parse().unwrap(), pi.parse().unwrap())
}

fn assert_pi_lines_well_formed(stdout: &str) -> usize {
    let mut count = 0;
    for l in stdout.lines().filter(|l| l.starts_with("pi: ")) {
        let (pi, delta) = l
            .strip_prefix("pi: ")
            .unwrap()
            .split_once(" - delta: ")
            .unwrap_or_else(|| panic!("malformed line {l:?}"));
        for v in [pi, delta] {
            let (_, frac) = v.split_once('.').unwrap();
            assert_eq!(frac.len(), 6, "not {{:.6}} in {l:?}");
            v.parse::<f64>().unwrap();
        }
        count += 1;
    }
    count
}

#[test]
fn two_ranks_converge_near_pi() {
    // Converging is luck: delta < 1e-5 means two rounds with the same total hit count, about
    // one round in a thousand here. Seed 5 converges after 108 rounds (with the kernel of
    // pi/src/kernel.rs; a new kernel draws other numbers and may need another seed).
    let out = mpiexec(2, &["--samples", "200000", "--seed", "5"]);
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert!(
        out.status.success(),
        "mpiexec failed: {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );

    let (size, pi) = computed(&stdout);
    assert_eq!(size, 2);
    assert!(
        (pi - std::f64::consts::PI).abs() < 0.01,
        "pi {pi} too far from PI\n{stdout}"
    );
    assert!(assert_pi_lines_well_formed(&stdout) >= 2, "{stdout}");
    for rank in 0..2 {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(&format!("rank {rank}: round 1 local estimate "))),
            "rank {rank} printed no per-rank line:\n{stdout}"
        );
    }
    // The last delta printed is below the tolerance (converged, not capped).
    assert!(!stderr.contains("not converged"), "{stderr}");
}

#[test]
fn round_cap_still_prints_computed_line() {
    let out = mpiexec(
        2,
        &[
            "--samples",
            "1000",
            "--seed",
            "7",
            "--tolerance",
            "1e-300",
            "--max-rounds",
            "3",
            "--report-ms",
            "0",
        ],
    );
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{:?}\n{stdout}\n{stderr}", out.status);
    assert_eq!(assert_pi_lines_well_formed(&stdout), 3, "{stdout}");
    assert!(stderr.contains("not converged after 3 rounds"), "{stderr}");
    let (size, _) = computed(&stdout);
    assert_eq!(size, 2);
    // --report-ms 0: every rank reports every round.
    for rank in 0..2 {
        for round in 1..=3 {
            let prefix = format!("rank {rank}: round {round} local estimate ");
            assert!(
                stdout.lines().any(|l| l.starts_with(&prefix)),
                "{prefix}\n{stdout}"
            );
        }
    }
}

#[test]
fn bad_flag_values_are_rejected_with_the_value_quoted() {
    // Flag parsing happens before MPI_Init, so no mpiexec is needed here.
    for (flag, value) in [("--samples", "0"), ("--tolerance", "-1")] {
        let out = Command::new(BIN).args([flag, value]).output().unwrap();
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {stderr}");
        assert!(stderr.contains(&format!("'{value}'")), "{stderr}");
    }
}

/// The parent of `pid`, from `/proc/PID/stat` (the field after the parenthesised name).
fn ppid(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// The pids of the `graze-pi` ranks under `root` (processes whose executable is [`BIN`]).
fn rank_pids(root: i32) -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if std::fs::read_link(entry.path().join("exe"))
            .is_ok_and(|exe| exe == std::path::Path::new(BIN))
            && std::iter::successors(Some(pid), |&p| ppid(p).filter(|&q| q > 1)).any(|p| p == root)
        {
            pids.push(pid);
        }
    }
    pids
}

/// `mpiexec -n 2 graze-pi` under the checkpoint protocol: a checkpoint signal to ONE rank makes
/// both save after the same round and exit 85 (`--checkpoint-exit`); the next run resumes from
/// there and prints the same rounds and the same final Pi as an uninterrupted run.
#[test]
fn checkpoint_at_signal_and_resume_gives_the_uninterrupted_result() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--seed",
        "11",
        // Long enough (about 0.1 s after the first round) for the signal to land mid-run.
        "--samples",
        "250000",
        "--min-rounds",
        "400",
        "--max-rounds",
        "400",
        "--report-ms",
        "100000",
        "--checkpoint-exit",
    ];
    let run = |restart: &str| {
        Command::new(find_mpiexec())
            .args(["-n", "2", BIN])
            .args(args)
            .env("GRAZE_CHECKPOINT_DIR", dir.path())
            .env("GRAZE_CHECKPOINT_SIGNAL", "10")
            .env("GRAZE_RESTART_COUNT", restart)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut first = run("0");
    // Signal one rank once the first round is printed (each rank installs its handler before
    // its first round, and the round needs both ranks).
    let mut lines = std::io::BufReader::new(first.stdout.take().unwrap());
    let mut stdout1 = String::new();
    loop {
        let mut line = String::new();
        let n = std::io::BufRead::read_line(&mut lines, &mut line).unwrap();
        assert!(n > 0, "graze-pi ended before its first round: {stdout1}");
        stdout1.push_str(&line);
        if line.starts_with("pi: ") {
            break;
        }
    }
    let pids = rank_pids(first.id() as i32);
    assert_eq!(pids.len(), 2, "{pids:?}");
    assert!(std::process::Command::new("kill")
        .args(["-USR1", &pids[0].to_string()])
        .status()
        .unwrap()
        .success());
    std::io::Read::read_to_string(&mut lines, &mut stdout1).unwrap();
    let out1 = first.wait_with_output().unwrap();
    let stderr1 = text(&out1.stderr);
    assert_eq!(out1.status.code(), Some(85), "{stdout1}\n{stderr1}");
    let saved: u64 = stdout1
        .lines()
        .find_map(|l| l.strip_prefix("graze-pi: checkpoint saved after round "))
        .unwrap_or_else(|| panic!("no saved line: {stdout1}"))
        .parse()
        .unwrap();
    assert!(dir.path().join("0.done").is_file() && dir.path().join("1.done").is_file());

    let out2 = run("1").wait_with_output().unwrap();
    let stdout2 = text(&out2.stdout);
    assert!(out2.status.success(), "{stdout2}\n{}", text(&out2.stderr));
    assert!(
        stdout2.contains(&format!(
            "graze-pi: resumed from checkpoint after round {saved} (restart 1)"
        )),
        "{stdout2}"
    );

    let whole = mpiexec(2, &args[..args.len() - 1]);
    assert!(whole.status.success());
    let whole = text(&whole.stdout);
    let rounds = |s: &str| -> Vec<String> {
        s.lines()
            .filter(|l| l.starts_with("pi: "))
            .map(str::to_owned)
            .collect()
    };
    let mut resumed = rounds(&stdout1);
    assert_eq!(resumed.len() as u64, saved);
    resumed.extend(rounds(&stdout2));
    assert_eq!(resumed, rounds(&whole), "the rounds differ");
    assert_eq!(computed(&stdout2), computed(&whole));
}

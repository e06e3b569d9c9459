//! Issue 4 acceptance: the real `graze demo` (scheduler, 4 agents, MPICH Pi jobs) and the real
//! `graze top` in a tmux session of fixed size; and `graze demo --no-tui` headless.
#![allow(clippy::unwrap_used)]

use graze_tests::*;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// Processes started by a demo whose temp dir is under `root`.
fn demo_processes(root: &Path) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        let prefix = format!("GRAZE_DEMO_DIR={}", root.display());
        let marked = env
            .split(|b| *b == 0)
            .any(|v| v.starts_with(prefix.as_bytes()));
        if marked && process_state(pid).is_some_and(|s| s != 'Z' && s != 'X') {
            out.push(pid);
        }
    }
    out
}

/// A tmux server of our own (its own socket) with one session of a fixed size.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn cmd(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("running tmux (install it: scripts/setup)")
    }
    fn keys(&self, keys: &[&str]) {
        let mut a = vec!["send-keys", "-t", "demo"];
        a.extend_from_slice(keys);
        let out = self.cmd(&a);
        assert!(out.status.success(), "send-keys {keys:?}: {out:?}");
    }
    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.cmd(&["capture-pane", "-p", "-t", "demo"]).stdout).into()
    }
    fn wait_screen(&self, what: &str, timeout: Duration, cond: impl Fn(&str) -> bool) -> String {
        let mut last = String::new();
        let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            wait_for(what, timeout, || {
                last = self.screen();
                cond(&last).then(|| last.clone())
            })
        }));
        match found {
            Ok(s) => s,
            Err(_) => panic!("timed out waiting for {what}; screen:\n{}", self.screen()),
        }
    }
    fn alternate_on(&self) -> bool {
        let out = self.cmd(&["display-message", "-p", "-t", "demo", "#{alternate_on}"]);
        String::from_utf8_lossy(&out.stdout).trim() == "1"
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let path = self.cmd(&["display-message", "-p", "#{socket_path}"]);
        let _ = self.cmd(&["kill-server"]);
        // kill-server leaves the socket file behind.
        let path = String::from_utf8_lossy(&path.stdout).trim().to_string();
        if !path.is_empty() {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[test]
fn graze_top_in_tmux() {
    ensure_built();
    let tmp = tempfile::Builder::new()
        .prefix("graze-tui-")
        .tempdir()
        .unwrap();
    let tmux = Tmux {
        socket: format!("graze-test-{}", std::process::id()),
    };
    let shell = format!(
        "env -i PATH=/usr/bin:/bin HOME={home} TERM=xterm-256color TMPDIR={tmp} \
         GRAZE_LOG_FILE={tmp}/top.log PS1='ready> ' bash --norc --noprofile",
        home = tmp.path().display(),
        tmp = tmp.path().display()
    );
    let out = tmux.cmd(&[
        "new-session",
        "-d",
        "-s",
        "demo",
        "-x",
        "100",
        "-y",
        "30",
        &shell,
    ]);
    assert!(out.status.success(), "tmux new-session: {out:?}");
    tmux.wait_screen("the shell prompt", Duration::from_secs(10), |s| {
        s.contains("ready>")
    });
    let graze = bin("graze");
    tmux.keys(&[&format!("{} demo --rounds 2000", graze.display()), "Enter"]);

    // The TUI comes up on the nodes view with the 4 demo nodes.
    tmux.wait_screen("the nodes view", Duration::from_secs(90), |s| {
        s.contains("1 Nodes") && ["ws2", "ws3", "ws4", "ws5"].iter().all(|n| s.contains(n))
    });
    // Open the queue, then the first running job (running jobs come first).
    tmux.keys(&["2"]);
    tmux.wait_screen("a running job in the queue", Duration::from_secs(60), |s| {
        s.contains("running") && s.contains("WHERE / WHY")
    });
    tmux.keys(&["Enter"]);
    // Rank output appears: rank 0's per-round estimates and the Pi chart.
    let s = tmux.wait_screen("rank 0's output", Duration::from_secs(60), |s| {
        s.contains("output of rank 0") && s.contains("pi: 3.")
    });
    assert!(s.contains("pi ≈ 3."), "no pi chart:\n{s}");
    // Switch ranks.
    tmux.keys(&["j"]);
    tmux.wait_screen("rank 1's output", Duration::from_secs(30), |s| {
        s.contains("output of rank 1") && s.contains("rank 1: round")
    });

    // The owner of ws2 touches the keyboard: the node turns owner-busy.
    tmux.keys(&["1"]);
    tmux.wait_screen("the nodes view again", Duration::from_secs(10), |s| {
        s.contains("sort: name")
    });
    let row = |s: &str| {
        s.lines()
            .find(|l| l.contains("│ws2 "))
            .unwrap_or_default()
            .to_string()
    };
    let before = row(&tmux.screen());
    assert!(!before.contains("owner-busy"), "{before}");
    tmux.keys(&["o"]);
    let s = tmux.wait_screen("ws2 owner-busy", Duration::from_secs(30), |s| {
        row(s).contains("owner-busy")
    });
    assert!(s.contains("the owner of ws2 touched the keyboard"), "{s}");

    // Quit: the terminal is restored (main screen, the shell prompt back) and the demo's
    // processes are gone.
    tmux.keys(&["q"]);
    let s = tmux.wait_screen("the prompt after the demo", Duration::from_secs(60), |s| {
        s.contains("stopping the demo cluster") && s.trim_end().ends_with("ready>")
    });
    assert!(!tmux.alternate_on(), "still on the alternate screen:\n{s}");
    assert!(!s.contains("1 Nodes"), "TUI left on screen:\n{s}");
    wait_for(
        "the demo's processes to end",
        Duration::from_secs(15),
        || demo_processes(tmp.path()).is_empty().then_some(()),
    );
}

#[test]
fn demo_without_a_terminal() {
    ensure_built();
    let tmp = tempfile::Builder::new()
        .prefix("graze-demo-test-")
        .tempdir()
        .unwrap();
    let out = Command::new(bin("graze"))
        .args(["demo", "--no-tui"])
        .env("TMPDIR", tmp.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "graze demo --no-tui: {:?}\n{text}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("every job done, every pi correct"), "{text}");
    // pi-b ran traced: its merged trace has both ranks.
    assert!(text.contains("  traced: 2 ranks on "), "{text}");
    let jobs: Vec<&str> = text.lines().filter(|l| l.starts_with("job ")).collect();
    assert_eq!(jobs.len(), 3, "{text}");
    for l in jobs {
        assert!(l.contains(": completed on "), "{l}");
        let pi: f64 = l
            .split("pi = ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|x| x.parse().ok())
            .unwrap_or_else(|| panic!("no pi in {l}"));
        assert!((pi - std::f64::consts::PI).abs() < 0.01, "{l}");
    }
    // One of the jobs had to wait for cores.
    assert!(text.contains("waits for cores: needs 6 cores"), "{text}");
    assert!(demo_processes(tmp.path()).is_empty());
}

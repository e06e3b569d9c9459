//! `graze-agent install` then `uninstall` in a temp root: the real binary, real files.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

fn agent() -> Command {
    Command::new(env!("CARGO_BIN_EXE_graze-agent"))
}

fn tree(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() && !p.is_symlink() {
                stack.push(p.clone());
            }
            out.push(p.strip_prefix(root).unwrap().to_owned());
        }
    }
    out.sort();
    out
}

fn access_file(dir: &Path) -> PathBuf {
    let p = dir.join("agent-access.toml");
    graze_net::Access {
        scheduler: "127.0.0.1:7700".into(),
        fingerprint: graze_net::fingerprint(b"cert"),
        token: graze_net::random_token(),
    }
    .save(&p)
    .unwrap();
    p
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn system_install_round_trip_leaves_nothing() {
    if !is_root() {
        eprintln!("skipped: a system install needs root (this test runs as root in CI)");
        return;
    }
    let src = tempfile::tempdir().unwrap();
    let access = access_file(src.path());
    let root = tempfile::tempdir().unwrap();
    let before = tree(root.path());
    let msg = run(agent()
        .args(["install", "--access"])
        .arg(&access)
        .args(["--cores", "2", "--group", "lab", "--group", "fast"])
        .args(["--nice", "15", "--memory-max", "2G", "--root"])
        .arg(root.path()));
    assert!(msg.contains("systemd is not running"), "{msg}");
    assert!(msg.contains("--config /etc/graze/agent.toml"), "{msg}");
    assert!(msg.contains("created the system user 'graze'"), "{msg}");
    let r = root.path();

    // The unit.
    let unit = std::fs::read_to_string(r.join("etc/systemd/system/graze-agent.service")).unwrap();
    let exe = std::fs::canonicalize(env!("CARGO_BIN_EXE_graze-agent")).unwrap();
    for want in [
        format!(
            "ExecStart={} --config /etc/graze/agent.toml\n",
            exe.display()
        ),
        "Restart=on-failure\n".into(),
        "Nice=15\n".into(),
        "CPUWeight=4\n".into(),
        "MemoryMax=2147483648\n".into(),
        "WantedBy=multi-user.target\n".into(),
    ] {
        assert!(unit.contains(&want), "missing {want:?} in\n{unit}");
    }
    // The config parses as the agent reads it, and names the installed access file.
    let cfg = std::fs::read_to_string(r.join("etc/graze/agent.toml")).unwrap();
    let parsed = graze_agent::config::ConfigFile::parse(Path::new("agent.toml"), &cfg).unwrap();
    assert_eq!(parsed.values.access, Some("/etc/graze/access.toml".into()));
    assert_eq!(parsed.values.cores, Some(2));
    assert_eq!(
        parsed.values.groups,
        Some(vec!["lab".into(), "fast".into()])
    );
    assert_eq!(parsed.values.run_as.as_deref(), Some("graze"));
    assert_eq!(parsed.values.nice, Some(15));
    // The jobs' user: no login shell, no home of value.
    let passwd = std::fs::read_to_string(r.join("etc/passwd")).unwrap();
    let line = passwd.lines().find(|l| l.starts_with("graze:")).unwrap();
    assert!(line.ends_with(":/nonexistent:/usr/sbin/nologin"), "{line}");
    let gid: u32 = line.split(':').nth(3).unwrap().parse().unwrap();
    assert!(gid > 0);
    let shadow = std::fs::read_to_string(r.join("etc/shadow")).unwrap();
    assert!(shadow.contains("graze:!:"), "locked password: {shadow}");
    // The access file: root only; jobs run as graze and must not read the agent's token.
    let m = std::fs::metadata(r.join("etc/graze/access.toml")).unwrap();
    assert_eq!(m.permissions().mode() & 0o777, 0o600);
    assert_eq!((m.uid(), m.gid()), (0, 0));
    assert!(r.join("var/spool/graze-agent").is_dir());

    // Installing twice is refused.
    let out = agent()
        .args(["install", "--access"])
        .arg(&access)
        .arg("--root")
        .arg(r)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already installed"));

    // Something the agent would make at run time goes too.
    std::fs::create_dir_all(r.join("var/spool/graze-agent/pc1/jobs")).unwrap();
    let msg = run(agent().arg("uninstall").arg("--root").arg(r));
    assert!(msg.contains("removed the system user 'graze'"), "{msg}");
    assert_eq!(tree(r), before, "files left behind");
}

#[test]
fn user_install_round_trip_leaves_nothing() {
    let src = tempfile::tempdir().unwrap();
    let access = access_file(src.path());
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    // Files the user already had are left alone.
    let home = graze_agent::jobs::confine::current_user().home;
    let mine = r
        .join(home.strip_prefix("/").unwrap())
        .join(".config/other.toml");
    std::fs::create_dir_all(mine.parent().unwrap()).unwrap();
    std::fs::write(&mine, "x").unwrap();
    let before = tree(r);
    run(agent()
        .args(["install", "--user", "--access"])
        .arg(&access)
        .arg("--root")
        .arg(r));
    let cfg_dir = r.join(home.strip_prefix("/").unwrap()).join(".config");
    let unit = std::fs::read_to_string(cfg_dir.join("systemd/user/graze-agent.service")).unwrap();
    assert!(unit.contains("WantedBy=default.target"), "{unit}");
    assert!(
        unit.contains("Nice=19\n") && unit.contains("CPUWeight=1\n"),
        "{unit}"
    );
    let m = std::fs::metadata(cfg_dir.join("graze/access.toml")).unwrap();
    assert_eq!(m.permissions().mode() & 0o777, 0o600);
    let cfg = std::fs::read_to_string(cfg_dir.join("graze/agent.toml")).unwrap();
    assert!(
        !cfg.contains("run_as"),
        "a user agent runs jobs as itself: {cfg}"
    );
    run(agent().args(["uninstall", "--user", "--root"]).arg(r));
    assert_eq!(tree(r), before, "files left behind");
    assert_eq!(std::fs::read_to_string(&mine).unwrap(), "x");
}

#[test]
fn bad_install_arguments_are_quoted_and_leave_nothing() {
    let src = tempfile::tempdir().unwrap();
    let access = access_file(src.path());
    let root = tempfile::tempdir().unwrap();
    for (args, want) in [
        (vec!["--memory-max", "lots"], "invalid --memory-max 'lots'"),
        (vec!["--nice", "30"], "invalid --nice '30'"),
        (vec!["--idle-source", "x12"], "invalid --idle-source 'x12'"),
    ] {
        let out = agent()
            .args(["install", "--user", "--access"])
            .arg(&access)
            .args(&args)
            .arg("--root")
            .arg(root.path())
            .output()
            .unwrap();
        assert!(!out.status.success());
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(e.contains(want), "{args:?}: {e}");
    }
    assert!(tree(root.path()).is_empty());
    let out = agent()
        .args(["uninstall", "--root"])
        .arg(root.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not installed here"));
}

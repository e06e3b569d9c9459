//! Fixture tests of flags and files, asserting on the error text.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::owner::IdleSourceSpec;
use clap::Parser;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn defaults() -> Defaults {
    Defaults {
        hostname: "pc7".into(),
        cpus: 8,
        is_root: false,
        xdg_runtime_dir: None,
        user: "ann".into(),
        launcher: Some("/opt/graze/graze-launch".into()),
    }
}

fn cli(args: &[&str]) -> Cli {
    let mut v = vec!["graze-agent"];
    v.extend_from_slice(args);
    Cli::try_parse_from(v).unwrap()
}

fn file(text: &str) -> ConfigFile {
    ConfigFile::parse(Path::new("agent.toml"), text).unwrap()
}

fn err(c: &Cli, f: Option<&ConfigFile>) -> String {
    format!("{:#}", resolve(c, f, &defaults()).unwrap_err())
}

#[test]
fn defaults_apply() {
    let c = resolve(
        &cli(&["--access", "/a.toml", "--idle-source", "always-idle"]),
        None,
        &defaults(),
    )
    .unwrap();
    assert_eq!(
        c,
        AgentConfig {
            access: "/a.toml".into(),
            name: "pc7".into(),
            cores: 8,
            bind: None,
            groups: vec![],
            idle_sources: vec![IdleSourceSpec::AlwaysIdle],
            start_after: Duration::from_secs(900),
            owner_cpu_max: 25,
            spool: "/tmp/graze-agent-ann/pc7".into(),
            launcher: "/opt/graze/graze-launch".into(),
            policy: Policy::default(),
            node_timeout: Duration::from_secs(10),
            run_as: None,
            slot_users: None,
            nice: 19,
            memory_max: None,
            checkpoint_rate: None,
            owner_socket: None,
            utmp: None,
        }
    );
}

#[test]
fn spool_defaults() {
    let mut d = defaults();
    assert_eq!(d.spool("n"), PathBuf::from("/tmp/graze-agent-ann/n"));
    d.xdg_runtime_dir = Some("/run/user/1000".into());
    assert_eq!(d.spool("n"), PathBuf::from("/run/user/1000/graze-agent/n"));
    d.is_root = true;
    assert_eq!(d.spool("n"), PathBuf::from("/var/spool/graze-agent/n"));
}

#[test]
fn valid_file_and_flags_override_it() {
    let f = file(
        r#"
        access = "/etc/graze/access.toml"
        name = "lab-3"
        cores = 4
        bind = "10.0.0.3"
        groups = ["lab", "fast"]
        idle_sources = ["file:/tmp/owner", "always-idle"]
        start_after = "90s"
        owner_cpu_max = 100
        spool = "/srv/graze"
        launcher = "/usr/local/bin/graze-launch"
        "#,
    );
    let c = resolve(&cli(&[]), Some(&f), &defaults()).unwrap();
    assert_eq!(c.name, "lab-3");
    assert_eq!(c.cores, 4);
    assert_eq!(c.bind, Some("10.0.0.3".parse().unwrap()));
    assert_eq!(c.groups, vec!["lab", "fast"]);
    assert_eq!(
        c.idle_sources,
        vec![
            IdleSourceSpec::File("/tmp/owner".into()),
            IdleSourceSpec::AlwaysIdle
        ]
    );
    assert_eq!(c.start_after, Duration::from_secs(90));
    assert_eq!(c.owner_cpu_max, 100);
    assert_eq!(c.spool, PathBuf::from("/srv/graze"));
    assert_eq!(c.launcher, PathBuf::from("/usr/local/bin/graze-launch"));

    let c = resolve(
        &cli(&[
            "--cores",
            "2",
            "--group",
            "x",
            "--start-after",
            "0s",
            "--idle-source",
            "always-idle",
            "--access",
            "/other",
        ]),
        Some(&f),
        &defaults(),
    )
    .unwrap();
    assert_eq!(c.cores, 2);
    assert_eq!(c.groups, vec!["x"]);
    assert_eq!(c.start_after, Duration::ZERO);
    assert_eq!(c.idle_sources, vec![IdleSourceSpec::AlwaysIdle]);
    assert_eq!(c.access, PathBuf::from("/other"));
    assert_eq!(c.name, "lab-3");
}

#[test]
fn empty_file_is_valid() {
    let f = file("# nothing set\n");
    assert_eq!(f.values, FileConfig::default());
}

#[test]
fn policy_from_file_and_flags() {
    let f = file(
        "access = \"/a\"\nidle_sources = [\"tty\", \"x11::0\"]\nresume_after = \"2m\"\nwindows = [\"Sat-Sun\"]\n",
    );
    let c = resolve(&cli(&["--vacate-after", "30s"]), Some(&f), &defaults()).unwrap();
    assert_eq!(c.policy.resume_after, Duration::from_secs(120));
    assert_eq!(c.policy.vacate_after, Duration::from_secs(30));
    assert_eq!(c.policy.vacate_grace, Duration::from_secs(10));
    assert_eq!(c.policy.windows.0.len(), 1);
    assert_eq!(c.policy.wire().vacate_after_ms, 30_000);
}

#[test]
fn example_file_parses() {
    let text = include_str!("../../../config/agent.toml");
    let f = file(text);
    resolve(&cli(&["--access", "/a"]), Some(&f), &defaults()).unwrap();
}

#[test]
fn invalid_values_are_quoted() {
    let base = "access = \"/a\"\nidle_sources = [\"always-idle\"]\n";
    let cases = [
        (
            "cores = 0",
            "invalid cores '0' in agent.toml: must be at least 1",
        ),
        (
            "bind = \"10.0.0\"",
            "invalid bind '10.0.0' in agent.toml: must be an IP address",
        ),
        (
            "start_after = \"5 parsecs\"",
            "invalid start_after '5 parsecs' in agent.toml",
        ),
        (
            "owner_cpu_max = 150",
            "invalid owner_cpu_max '150' in agent.toml: must be a percentage from 0 to 100",
        ),
        (
            "name = \"my pc\"",
            "invalid name 'my pc' in agent.toml: may only hold",
        ),
        ("groups = [\"a b\"]", "invalid groups 'a b' in agent.toml"),
        (
            "resume_after = \"soon\"",
            "invalid resume_after 'soon' in agent.toml",
        ),
        (
            "windows = [\"Mon-Fri 19:00-07:00\", \"Sun 9-17\"]",
            "invalid windows 'Sun 9-17' in agent.toml: '9' is not a time of day",
        ),
        (
            "nice = 20",
            "invalid nice '20' in agent.toml: must be from 0 to 19",
        ),
    ];
    for (line, want) in cases {
        let e = err(&cli(&[]), Some(&file(&format!("{base}{line}\n"))));
        assert!(e.contains(want), "for {line:?}: {e}");
    }
    let e = err(
        &cli(&[]),
        Some(&file("access = \"/a\"\nidle_sources = [\"x12\"]\n")),
    );
    assert!(
        e.contains("invalid idle_sources 'x12' in agent.toml: must be 'file:PATH', 'always-idle'"),
        "{e}"
    );
}

#[test]
fn invalid_flags_are_quoted() {
    let e = err(
        &cli(&[
            "--access",
            "/a",
            "--idle-source",
            "always-idle",
            "--cores",
            "0",
        ]),
        None,
    );
    assert!(e.contains("invalid --cores '0': must be at least 1"), "{e}");
    let e = err(
        &cli(&["--access", "/a", "--idle-source", "ttyy"]),
        Some(&file("cores = 2")),
    );
    assert!(e.contains("invalid --idle-source 'ttyy'"), "{e}");
    let e = err(
        &cli(&[
            "--access",
            "/a",
            "--idle-source",
            "always-idle",
            "--start-after",
            "soon",
        ]),
        None,
    );
    assert!(e.contains("invalid --start-after 'soon'"), "{e}");
}

#[test]
fn file_syntax_errors_name_the_file() {
    let e = format!(
        "{:#}",
        ConfigFile::parse(Path::new("agent.toml"), "cores = \"many\"").unwrap_err()
    );
    assert!(e.contains("invalid config file 'agent.toml'"), "{e}");
    assert!(e.contains("invalid type"), "{e}");
    let e = format!(
        "{:#}",
        ConfigFile::parse(Path::new("agent.toml"), "color = \"red\"").unwrap_err()
    );
    assert!(e.contains("unknown field `color`"), "{e}");
    let e = format!(
        "{:#}",
        ConfigFile::load(Path::new("/nonexistent/agent.toml")).unwrap_err()
    );
    assert!(
        e.contains("reading config file '/nonexistent/agent.toml'"),
        "{e}"
    );
}

#[test]
fn missing_pieces_are_explained() {
    let e = err(&cli(&["--access", "/a"]), None);
    assert_eq!(e, NO_IDLE_SOURCE);
    let e = err(&cli(&["--idle-source", "always-idle"]), None);
    assert!(e.contains("no access file"), "{e}");
    let mut d = defaults();
    d.launcher = None;
    let e = format!(
        "{:#}",
        resolve(
            &cli(&["--access", "/a", "--idle-source", "always-idle"]),
            None,
            &d
        )
        .unwrap_err()
    );
    assert!(e.contains("cannot find graze-launch"), "{e}");
}

#[test]
fn slot_users_need_root_and_a_plain_prefix() {
    let base = ["--access", "/a", "--idle-source", "always-idle"];
    let mut root = defaults();
    root.is_root = true;
    let c = resolve(&cli(&base), None, &root).unwrap();
    assert_eq!(c.slot_users, None);
    let with = |p: &str| cli(&[&base[..], &["--slot-users", p]].concat());
    let c = resolve(&with("graze-s"), None, &root).unwrap();
    assert_eq!(c.slot_users.as_deref(), Some("graze-s"));
    let c = resolve(&cli(&base), Some(&file("slot_users = \"lab-s\"\n")), &root).unwrap();
    assert_eq!(c.slot_users.as_deref(), Some("lab-s"));
    let e = format!("{:#}", resolve(&with("a/b"), None, &root).unwrap_err());
    assert!(e.contains("invalid --slot-users 'a/b'"), "{e}");
    let e = err(&with("graze-s"), None);
    assert!(
        e.contains("slot users need an agent started as root"),
        "{e}"
    );
}

#[test]
fn run_as_nice_and_memory() {
    let base = ["--access", "/a", "--idle-source", "always-idle"];
    let mut root = defaults();
    root.is_root = true;
    let c = resolve(&cli(&base), None, &root).unwrap();
    assert_eq!(c.run_as.as_deref(), Some("graze"));
    let mut a = base.to_vec();
    a.extend(["--run-as", "jobs", "--nice", "10", "--memory-max", "2G"]);
    let c = resolve(&cli(&a), None, &root).unwrap();
    assert_eq!(c.run_as.as_deref(), Some("jobs"));
    assert_eq!(c.nice, 10);
    assert_eq!(c.memory_max, Some(2 << 30));
    let e = format!(
        "{:#}",
        resolve(
            &cli(&[&base[..], &["--run-as", "root"]].concat()),
            None,
            &root
        )
        .unwrap_err()
    );
    assert!(
        e.contains("invalid --run-as 'root': job processes never run as root"),
        "{e}"
    );
    // A normal user runs jobs as itself and cannot name another user.
    let c = resolve(&cli(&base), None, &defaults()).unwrap();
    assert_eq!(c.run_as, None);
    let e = err(&cli(&[&base[..], &["--run-as", "bob"]].concat()), None);
    assert!(
        e.contains("invalid --run-as 'bob': only an agent started as root"),
        "{e}"
    );
    let e = err(&cli(&[&base[..], &["--nice=-5"]].concat()), None);
    assert!(e.contains("invalid --nice '-5'"), "{e}");
    let e = err(&cli(&base), Some(&file("memory_max = \"lots\"\n")));
    assert!(e.contains("invalid memory_max 'lots' in agent.toml"), "{e}");
    assert_eq!(parse_size("512M").unwrap(), 512 << 20);
    assert_eq!(parse_size("1048576").unwrap(), 1 << 20);
    assert!(parse_size("10").is_err());
}

#[test]
fn humantime_forms() {
    for (s, secs) in [("90s", 90), ("15m", 900), ("0s", 0), ("1h 30m", 5400)] {
        let c = resolve(
            &cli(&[
                "--access",
                "/a",
                "--idle-source",
                "always-idle",
                "--start-after",
                s,
            ]),
            None,
            &defaults(),
        )
        .unwrap();
        assert_eq!(c.start_after, Duration::from_secs(secs), "{s}");
    }
}

#[test]
fn errors_name_the_file_actually_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lab.toml");
    std::fs::write(
        &path,
        "access = \"/a\"\nidle_sources = [\"always-idle\"]\nnode_timeout = \"1s\"\n",
    )
    .unwrap();
    let e = format!(
        "{:#}",
        load(&cli(&["--config", path.to_str().unwrap()]), &defaults()).unwrap_err()
    );
    assert_eq!(
        e,
        format!(
            "invalid node_timeout '1s' in {}: must be at least 3s",
            path.display()
        )
    );
}

#[test]
fn one_format_for_every_layer() {
    let base = "access = \"/a\"\nidle_sources = [\"always-idle\"]\n";
    let f = file(&format!("{base}windows = [\"Sun 9-17\"]\n"));
    assert_eq!(
        err(&cli(&[]), Some(&f)),
        "invalid windows 'Sun 9-17' in agent.toml: '9' is not a time of day; write HH:MM or HH:MM:SS (00:00 to 24:00)"
    );
    let e = err(
        &cli(&["--window", "Mon-Fri 25:00-07:00"]),
        Some(&file(base)),
    );
    assert!(
        e.starts_with("invalid --window 'Mon-Fri 25:00-07:00': "),
        "{e}"
    );
    // A flag wins over the file, so its own value is the one quoted.
    let f = file(&format!("{base}nice = 5\n"));
    assert_eq!(
        err(&cli(&["--nice", "25"]), Some(&f)),
        "invalid --nice '25': must be from 0 to 19 (19 is the gentlest)"
    );
    // A default that does not pass its check says so.
    let mut d = defaults();
    d.hostname = "my pc".into();
    let e = format!(
        "{:#}",
        resolve(&cli(&[]), Some(&file(base)), &d).unwrap_err()
    );
    assert_eq!(
        e,
        "invalid name 'my pc' (the default): may only hold letters, digits, '-', '_' and '.'"
    );
}

#[test]
fn run_and_install_share_the_job_flags() {
    let run = cli(&["--run-as", "jobs", "--nice", "7", "--memory-max", "1G"]);
    let want = JobArgs {
        run_as: Some("jobs".into()),
        slot_users: None,
        nice: Some(7),
        memory_max: Some("1G".into()),
    };
    assert_eq!(run.job, want);
    let inst = cli(&[
        "install",
        "--access",
        "/a",
        "--run-as",
        "jobs",
        "--nice",
        "7",
        "--memory-max",
        "1G",
    ]);
    match inst.command {
        Some(AgentCommand::Install(a)) => assert_eq!(a.job, want),
        other => panic!("{other:?}"),
    }
}

#[test]
fn checkpoint_rate_is_a_size() {
    let base = "access = \"/a\"\nidle_sources = [\"always-idle\"]\n";
    let c = resolve(
        &cli(&[]),
        Some(&file(&format!("{base}checkpoint_rate = \"1K\"\n"))),
        &defaults(),
    )
    .unwrap();
    assert_eq!(c.checkpoint_rate, Some(1024));
    let c = resolve(
        &cli(&["--checkpoint-rate", "2K"]),
        Some(&file(base)),
        &defaults(),
    )
    .unwrap();
    assert_eq!(c.checkpoint_rate, Some(2048));
    let e = resolve(
        &cli(&["--checkpoint-rate", "fast"]),
        Some(&file(base)),
        &defaults(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("checkpoint-rate"), "{e}");
}

//! `graze engines -n N`: IPython engines on graze in one command. A thin front to the Python
//! package `graze-ipyparallel` (python/graze-ipyparallel): it runs `python -m
//! graze_ipyparallel.engines`, which uses the profile's running graze controller or starts one
//! and submits the engines as one graze job; prints what to paste into a notebook once that
//! answers; and on Ctrl-C passes one SIGINT on, which stops what it started (graze cancels the
//! engines' job; a controller it started stops too).

use anyhow::{bail, Context as _};
use clap::Args;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::Duration;
use tokio::io::AsyncBufReadExt as _;

/// How long the controller and the submit may take.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// Arguments of `graze engines`.
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct EnginesArgs {
    /// Number of engines (one per core), started as one graze job.
    #[arg(short = 'n', value_name = "N", value_parser = crate::cli::parse_nprocs)]
    pub n: u32,
    /// Only nodes in this group; repeat or separate with commas for several.
    #[arg(long = "group", value_name = "G", value_delimiter = ',', value_parser = crate::cli::parse_name)]
    pub groups: Vec<String>,
    /// Only these nodes, e.g. `a1,a2`.
    #[arg(long, value_name = "NODES", value_delimiter = ',', value_parser = crate::cli::parse_name)]
    pub nodes: Vec<String>,
    /// The engines' job priority.
    #[arg(
        long,
        value_name = "P",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    pub priority: i32,
    /// What engines do when a PC's owner returns: `wait` (suspended until the owner leaves)
    /// or `requeue` (the job is requeued elsewhere, tasks fail and may be retried).
    #[arg(long, value_name = "wait|requeue", default_value = "wait", value_parser = ["wait", "requeue"])]
    pub on_owner: String,
    /// The Python that has graze-ipyparallel installed [default: $GRAZE_PYTHON, else python3].
    #[arg(long, value_name = "PYTHON")]
    pub python: Option<PathBuf>,
    /// The IPython profile directory [default: $IPYTHONDIR/profile_graze, IPYTHONDIR
    /// defaulting to ~/.ipython].
    #[arg(long, value_name = "DIR")]
    pub profile_dir: Option<PathBuf>,
}

/// The profile directory: the flag, else `IPYTHONDIR/profile_graze`, else `~/.ipython/...`.
pub fn profile_dir(
    flag: Option<&Path>,
    ipythondir: Option<OsString>,
    home: Option<OsString>,
) -> anyhow::Result<PathBuf> {
    if let Some(p) = flag {
        return Ok(p.to_owned());
    }
    let base = match (ipythondir, home) {
        (Some(d), _) if !d.is_empty() => PathBuf::from(d),
        (_, Some(h)) if !h.is_empty() => PathBuf::from(h).join(".ipython"),
        _ => bail!("no IPython directory: set IPYTHONDIR or HOME, or pass --profile-dir"),
    };
    Ok(base.join("profile_graze"))
}

/// Arguments of `python -m graze_ipyparallel.engines`.
pub fn python_args(a: &EnginesArgs, profile: &Path) -> Vec<String> {
    let mut v = vec![
        "-m".to_string(),
        "graze_ipyparallel.engines".to_string(),
        "-n".to_string(),
        a.n.to_string(),
        "--profile-dir".to_string(),
        profile.display().to_string(),
    ];
    for g in &a.groups {
        v.extend(["--group".to_string(), g.clone()]);
    }
    for n in &a.nodes {
        v.extend(["--nodes".to_string(), n.clone()]);
    }
    if a.priority != 0 {
        v.push(format!("--priority={}", a.priority));
    }
    v.extend(["--on-owner".to_string(), a.on_owner.clone()]);
    v
}

/// What the Python side says once the engines' job is submitted.
#[derive(serde::Deserialize, Debug, PartialEq, Eq)]
pub struct Started {
    /// The controller's client connection file.
    pub client_file: PathBuf,
    /// The engines' graze job.
    pub job_id: String,
    /// True when this run started the controller (and stops it at the end).
    pub own_controller: bool,
}

/// What to paste into a notebook.
pub fn client_lines(client_file: &Path, n: u32) -> String {
    format!(
        "    import ipyparallel as ipp\n    rc = ipp.Client(\"{}\")\n    rc.wait_for_engines({n})\n",
        client_file.display()
    )
}

/// Run `graze engines`.
pub async fn run(args: EnginesArgs, access: Option<&Path>) -> anyhow::Result<ExitCode> {
    let python = args
        .python
        .clone()
        .or_else(|| std::env::var_os("GRAZE_PYTHON").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("python3"));
    let check = tokio::process::Command::new(&python)
        .args(["-c", "import graze_ipyparallel"])
        .output()
        .await
        .with_context(|| format!("running {}", python.display()))?;
    if !check.status.success() {
        bail!(
            "{} cannot import graze_ipyparallel: install it (`pip install python/graze-ipyparallel` \
             from graze's source) or name another Python with --python or GRAZE_PYTHON",
            python.display()
        );
    }
    let profile = profile_dir(
        args.profile_dir.as_deref(),
        std::env::var_os("IPYTHONDIR"),
        std::env::var_os("HOME"),
    )?;
    let log_dir = profile.join("log");
    std::fs::create_dir_all(&log_dir).with_context(|| format!("creating {}", log_dir.display()))?;
    let log_path = log_dir.join(format!("graze-engines-{}.log", std::process::id()));
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let mut cmd = tokio::process::Command::new(&python);
    cmd.args(python_args(&args, &profile))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        // Its own process group: a terminal's Ctrl-C reaches graze only, which passes one
        // SIGINT on.
        .process_group(0);
    if let Some(a) = access {
        cmd.env("GRAZE_ACCESS", a);
    }
    // If graze dies without passing Ctrl-C on, the Python side still stops what it started.
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGINT);
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .context("starting python -m graze_ipyparallel.engines")?;
    eprintln!(
        "graze: starting {} engines (log: {})",
        args.n,
        log_path.display()
    );
    let stdout = child.stdout.take().context("internal: no stdout pipe")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let started = tokio::select! {
        line = tokio::time::timeout(START_TIMEOUT, lines.next_line()) => line,
        _ = tokio::signal::ctrl_c() => {
            stop(&mut child).await;
            return Ok(ExitCode::SUCCESS);
        }
    };
    let started: Started = match started {
        Ok(Ok(Some(line))) => serde_json::from_str(&line).with_context(|| {
            format!("unexpected answer from graze_ipyparallel.engines: {line:?}")
        })?,
        Ok(Ok(None)) | Ok(Err(_)) => {
            let st = child.wait().await?;
            bail!(
                "the engines did not start ({st}); see {}",
                log_path.display()
            );
        }
        Err(_) => {
            stop(&mut child).await;
            bail!(
                "the engines were not submitted after {START_TIMEOUT:?}; see {}",
                log_path.display()
            );
        }
    };
    println!(
        "The engines are graze job {} (`graze show {}`). In Python or a notebook:\n\n{}\nCtrl-C stops the engines{}.",
        started.job_id,
        started.job_id,
        client_lines(&started.client_file, args.n),
        if started.own_controller {
            " and the controller"
        } else {
            " (the controller was running already and stays)"
        }
    );
    tokio::select! {
        st = child.wait() => {
            let st = st?;
            eprintln!("graze: the engines' job ended; see {}", log_path.display());
            return Ok(if st.success() { ExitCode::SUCCESS } else { ExitCode::from(crate::EXIT_ERROR) });
        }
        _ = tokio::signal::ctrl_c() => {}
    }
    eprintln!("graze: stopping the engines (graze cancels their job)...");
    stop(&mut child).await;
    Ok(ExitCode::SUCCESS)
}

/// SIGINT to the Python side, which stops what it started; SIGKILL after 90 s.
async fn stop(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id() {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(pid as i32, libc::SIGINT) };
    }
    if tokio::time::timeout(Duration::from_secs(90), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> EnginesArgs {
        let mut v = vec!["graze", "engines"];
        v.extend_from_slice(extra);
        match <crate::cli::Cli as clap::Parser>::try_parse_from(v)
            .unwrap()
            .command
        {
            crate::cli::Command::Engines(a) => a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn python_args_carry_the_options() {
        let a = args(&[
            "-n",
            "8",
            "--group",
            "lab",
            "--nodes",
            "a1,a2",
            "--priority",
            "-3",
        ]);
        assert_eq!(
            python_args(&a, Path::new("/p")),
            [
                "-m",
                "graze_ipyparallel.engines",
                "-n",
                "8",
                "--profile-dir",
                "/p",
                "--group",
                "lab",
                "--nodes",
                "a1",
                "--nodes",
                "a2",
                "--priority=-3",
                "--on-owner",
                "wait",
            ]
        );
        let v = python_args(
            &args(&["-n", "2", "--on-owner", "requeue"]),
            Path::new("/p"),
        );
        assert_eq!(v[v.len() - 2..], ["--on-owner", "requeue"]);
    }

    #[test]
    fn the_started_line_parses() {
        let s: Started = serde_json::from_str(
            r#"{"client_file": "/p/security/c.json", "job_id": "7", "own_controller": true}"#,
        )
        .unwrap();
        assert_eq!(s.job_id, "7");
        assert!(s.own_controller);
    }

    #[test]
    fn bad_values_are_refused() {
        let parse = |v: &[&str]| <crate::cli::Cli as clap::Parser>::try_parse_from(v).map(|_| ());
        assert!(parse(&["graze", "engines", "-n", "0"]).is_err());
        assert!(parse(&["graze", "engines"]).is_err());
        assert!(parse(&["graze", "engines", "-n", "2", "--on-owner", "later"]).is_err());
    }

    #[test]
    fn profile_and_client_paths() {
        let p = profile_dir(None, Some("/ipy".into()), Some("/home/u".into())).unwrap();
        assert_eq!(p, Path::new("/ipy/profile_graze"));
        let p = profile_dir(None, None, Some("/home/u".into())).unwrap();
        assert_eq!(p, Path::new("/home/u/.ipython/profile_graze"));
        assert!(profile_dir(None, None, None).is_err());
        assert_eq!(
            profile_dir(Some(Path::new("/x")), None, None).unwrap(),
            Path::new("/x")
        );
        let lines = client_lines(Path::new("/x/c.json"), 4);
        assert!(lines.contains("rc = ipp.Client(\"/x/c.json\")"), "{lines}");
        assert!(lines.contains("rc.wait_for_engines(4)"), "{lines}");
    }
}

//! `graze engines -n N`: IPython engines on graze in one command. A thin front to the Python
//! package `graze-ipyparallel` (python/graze-ipyparallel): it runs `ipcluster start -n N
//! --engines=graze --controller=graze` (or `ipcluster engines` when that profile's graze
//! cluster already runs a controller), prints what to paste into a notebook once the
//! controller's client file exists, and on Ctrl-C stops what it started: ipcluster cancels
//! the engines' graze job and stops its controller.

use anyhow::{bail, Context as _};
use clap::Args;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::Duration;

/// The ipyparallel cluster id `graze engines` uses: `ipcontroller-graze-client.json`.
pub const CLUSTER_ID: &str = "graze";

/// How long the controller may take to write its client file.
const CONTROLLER_TIMEOUT: Duration = Duration::from_secs(120);

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

/// The controller's client connection file in `profile`.
pub fn client_file(profile: &Path) -> PathBuf {
    profile
        .join("security")
        .join(format!("ipcontroller-{CLUSTER_ID}-client.json"))
}

/// `ipcluster` arguments (after `python -m ipyparallel.cluster`): `start` with a graze
/// controller, or `engines` when a controller of this profile already runs.
pub fn ipcluster_args(a: &EnginesArgs, profile: &Path, controller_runs: bool) -> Vec<String> {
    let mut v = vec![
        if controller_runs { "engines" } else { "start" }.to_string(),
        format!("--n={}", a.n),
        "--engines=graze".to_string(),
        format!("--profile-dir={}", profile.display()),
        format!("--cluster-id={CLUSTER_ID}"),
    ];
    if !controller_runs {
        v.push("--controller=graze".into());
        if a.on_owner == "requeue" {
            // Requeued engines are killed without unregistering: the controller should drop
            // them soon (ipyparallel's 30 s) so their tasks are retried on the replacements.
            v.push("--GrazeControllerLauncher.heartbeat_tolerance=30".into());
        }
    }
    let list = |xs: &[String]| {
        let quoted: Vec<String> = xs.iter().map(|x| format!("'{x}'")).collect();
        format!("[{}]", quoted.join(","))
    };
    if !a.groups.is_empty() {
        v.push(format!(
            "--GrazeEngineSetLauncher.groups={}",
            list(&a.groups)
        ));
    }
    if !a.nodes.is_empty() {
        v.push(format!("--GrazeEngineSetLauncher.nodes={}", list(&a.nodes)));
    }
    if a.priority != 0 {
        v.push(format!("--GrazeEngineSetLauncher.priority={}", a.priority));
    }
    v.push(format!("--GrazeEngineSetLauncher.on_owner={}", a.on_owner));
    v
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
    let client = client_file(&profile);
    let controller_runs = client.exists() && controller_alive(&python, &profile).await;
    let log_dir = profile.join("log");
    std::fs::create_dir_all(&log_dir).with_context(|| format!("creating {}", log_dir.display()))?;
    let log_path = log_dir.join(format!("graze-engines-{}.log", std::process::id()));
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let mut cmd = tokio::process::Command::new(&python);
    cmd.args(["-m", "ipyparallel.cluster"])
        .args(ipcluster_args(&args, &profile, controller_runs))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own process group: a terminal's Ctrl-C reaches graze only, which passes one
        // SIGINT on (two would make ipcluster exit without stopping the engines).
        .process_group(0);
    if let Some(a) = access {
        cmd.env("GRAZE_ACCESS", a);
    }
    let mut child = cmd.spawn().context("starting ipcluster")?;
    eprintln!(
        "graze: {} {} engines (ipcluster log: {})",
        if controller_runs {
            "adding to the running controller"
        } else {
            "starting a controller and"
        },
        args.n,
        log_path.display()
    );
    let waited = tokio::time::Instant::now();
    loop {
        if !controller_runs && client.exists() {
            break;
        }
        if controller_runs && waited.elapsed() > Duration::from_secs(2) {
            break;
        }
        if let Some(st) = child.try_wait()? {
            bail!(
                "ipcluster exited ({st}) before its controller was up; see {}",
                log_path.display()
            );
        }
        if waited.elapsed() > CONTROLLER_TIMEOUT {
            stop(&mut child).await;
            bail!(
                "no controller client file {} after {CONTROLLER_TIMEOUT:?}; see {}",
                client.display(),
                log_path.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "The engines are one graze job (`graze queue`). In Python or a notebook:\n\n{}\nCtrl-C stops the engines{}.",
        client_lines(&client, args.n),
        if controller_runs { "" } else { " and the controller" }
    );
    tokio::select! {
        st = child.wait() => {
            let st = st?;
            eprintln!("graze: ipcluster exited ({st}); see {}", log_path.display());
            return Ok(if st.success() { ExitCode::SUCCESS } else { ExitCode::from(crate::EXIT_ERROR) });
        }
        _ = tokio::signal::ctrl_c() => {}
    }
    eprintln!("graze: stopping the engines (graze cancels their job)...");
    stop(&mut child).await;
    Ok(ExitCode::SUCCESS)
}

/// SIGINT to ipcluster, which stops its engines (and its controller); SIGKILL after 60 s.
async fn stop(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id() {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(pid as i32, libc::SIGINT) };
    }
    if tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

/// True when ipyparallel says the profile's graze cluster has a running controller.
async fn controller_alive(python: &Path, profile: &Path) -> bool {
    let code = format!(
        "import sys, ipyparallel as ipp\n\
         try:\n    c = ipp.Cluster.from_file(profile_dir={:?}, cluster_id={CLUSTER_ID:?})\n\
         except Exception:\n    sys.exit(1)\n\
         sys.exit(0 if c.controller is not None and c.controller.running else 1)\n",
        profile.display().to_string()
    );
    tokio::process::Command::new(python)
        .args(["-c", &code])
        .output()
        .await
        .is_ok_and(|o| o.status.success())
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
    fn start_args_carry_the_options() {
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
        let v = ipcluster_args(&a, Path::new("/p"), false);
        assert_eq!(
            v,
            [
                "start",
                "--n=8",
                "--engines=graze",
                "--profile-dir=/p",
                "--cluster-id=graze",
                "--controller=graze",
                "--GrazeEngineSetLauncher.groups=['lab']",
                "--GrazeEngineSetLauncher.nodes=['a1','a2']",
                "--GrazeEngineSetLauncher.priority=-3",
                "--GrazeEngineSetLauncher.on_owner=wait",
            ]
        );
        let v = ipcluster_args(
            &args(&["-n", "2", "--on-owner", "requeue"]),
            Path::new("/p"),
            false,
        );
        assert!(v.contains(&"--GrazeControllerLauncher.heartbeat_tolerance=30".to_string()));
        let v = ipcluster_args(
            &args(&["-n", "2", "--on-owner", "requeue"]),
            Path::new("/p"),
            true,
        );
        assert_eq!(v[0], "engines");
        assert!(!v.iter().any(|x| x.starts_with("--controller")));
        assert!(v.contains(&"--GrazeEngineSetLauncher.on_owner=requeue".to_string()));
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
        assert_eq!(
            client_file(Path::new("/x")),
            Path::new("/x/security/ipcontroller-graze-client.json")
        );
        let lines = client_lines(Path::new("/x/c.json"), 4);
        assert!(lines.contains("rc = ipp.Client(\"/x/c.json\")"), "{lines}");
        assert!(lines.contains("rc.wait_for_engines(4)"), "{lines}");
    }
}

//! `graze`, the user's command: submit MPI jobs to a graze cluster, list the queue and the
//! nodes, follow a job's output, cancel it or wait for it.
//!
//! [`cli`] is the syntax, [`client`] talks to the scheduler, [`format`] turns its answers into
//! text. [`run`] ties them together; `main.rs` only calls [`main_entry`].

pub mod batch;
pub mod chart;
pub mod checkpoint;
pub mod cli;
pub mod client;
pub mod clusrun;
pub mod demo;
pub mod engines;
pub mod format;
pub mod report;
pub mod top;
pub mod trace_cmd;
pub mod when;

use anyhow::{bail, Context as _};
use cli::{Cli, Command, SubmitArgs};
use client::{Client, ClientError, LogEvent, Shown};
use graze_net::Access;
use graze_proto::{JobRef, JobSpec, LogAttempt, Stream};
use std::ffi::OsString;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Exit code of `graze` when the scheduler refused a request (`error: ...` printed).
pub const EXIT_REFUSED: u8 = 1;
/// Exit code of `graze` when it could not do its work (bad access file, no connection, ...).
pub const EXIT_ERROR: u8 = 2;

/// How long `graze wait` pauses before asking again if the scheduler answered too early.
const WAIT_RETRY: Duration = Duration::from_secs(1);

/// Parse the command line, set up logging and a runtime, run, and turn errors into exit codes.
pub fn main_entry() -> ExitCode {
    let cli = match <Cli as clap::Parser>::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout with success, usage errors to stderr with 2.
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(EXIT_ERROR));
        }
    };
    // The TUI owns the screen: its logs go to a file.
    let tui = match &cli.command {
        Command::Top => true,
        Command::Demo(d) => !d.no_tui,
        _ => false,
    };
    graze_net::init_tracing(
        "warn",
        if tui {
            graze_net::LogTo::File(tui_log_file())
        } else {
            graze_net::LogTo::Stderr
        },
    );
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// Where `graze top` logs: `$GRAZE_LOG_FILE`, else `graze-top.log` in the temp dir.
fn tui_log_file() -> PathBuf {
    env_os("GRAZE_LOG_FILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("graze-top.log"))
}

/// Run one `graze` command. A request the scheduler refuses prints `error: MESSAGE` and gives
/// exit code 1; other failures come back as errors (exit code 2 in [`main_entry`]).
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::Demo(args) = cli.command {
        return demo::run(args).await;
    }
    if let Command::Engines(args) = cli.command {
        return engines::run(args, cli.access.as_deref()).await;
    }
    // Everything that can be checked without the scheduler is checked first.
    let spec = match &cli.command {
        Command::Submit(args) => Some(build_spec(args)?),
        Command::Clusrun(args) => {
            clusrun::spec_from_args(args)?;
            None
        }
        _ => None,
    };
    let path = access_path(
        cli.access.as_deref(),
        env_os("XDG_CONFIG_HOME"),
        env_os("HOME"),
    )?;
    let access = load_access(&path, cli.access.is_some())?;
    if cli.command == Command::Top {
        top::run_top(access, top::TopOptions::default()).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let client = Client::connect(&access)
        .await
        .with_context(|| format!("using the access file {}", path.display()))?;
    let result = dispatch(&client, cli.command, spec).await;
    client.close().await;
    match result {
        Ok(code) => Ok(code),
        Err(e) => {
            if let Some(ClientError::Scheduler(message)) = find_cause::<ClientError>(&e) {
                eprintln!("error: {message}");
                return Ok(ExitCode::from(EXIT_REFUSED));
            }
            if find_cause::<std::io::Error>(&e)
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            {
                // The reader went away (`graze logs 3 | head`): not an error.
                return Ok(ExitCode::SUCCESS);
            }
            Err(e)
        }
    }
}

fn find_cause<T: std::error::Error + 'static>(e: &anyhow::Error) -> Option<&T> {
    e.chain().find_map(|c| c.downcast_ref::<T>())
}

async fn dispatch(
    client: &Client,
    command: Command,
    spec: Option<JobSpec>,
) -> anyhow::Result<ExitCode> {
    match command {
        Command::Submit(args) => {
            let spec = spec.context("internal: submit without a job spec")?;
            let id = client.submit(spec).await.context("submitting the job")?;
            if args.json {
                print(&format!("{{\"id\": {id}}}\n"))?;
            } else {
                print(&format!("{id}\n"))?;
            }
            if args.wait {
                return wait(client, id.into()).await;
            }
        }
        Command::Queue { all, expand, json } => {
            let jobs = client.queue(all).await.context("listing the queue")?;
            if json {
                print(&json_text(&jobs)?)?;
            } else {
                print(&batch::queue_table(&jobs, expand, format::now_ms()))?;
            }
        }
        Command::Nodes { json } => {
            let nodes = client.nodes().await.context("listing the nodes")?;
            if json {
                print(&json_text(&nodes)?)?;
            } else {
                print(&format::nodes_table(&nodes))?;
            }
        }
        Command::Show { job, json } => {
            let view = client
                .show(job)
                .await
                .with_context(|| format!("showing job {job}"))?;
            match (json, &view) {
                (true, _) => print(&json_text(&view)?)?,
                (false, Shown::Job(v)) => print(&format::job_details(v, format::now_ms()))?,
                (false, Shown::Array(a)) => print(&batch::array_details(a, format::now_ms()))?,
            }
        }
        Command::Logs {
            job,
            rank,
            follow,
            attempt,
        } => logs(client, job, rank, follow, attempt).await?,
        Command::Clusrun(args) => return clusrun::run(client, args).await,
        Command::Trace(args) => trace_cmd::run(client, args).await?,
        Command::Cancel { job } => {
            let view = client
                .cancel(job)
                .await
                .with_context(|| format!("cancelling job {job}"))?;
            let text = match &view {
                Shown::Job(v) => format::cancel_message(v),
                Shown::Array(a) => batch::array_cancel_message(a),
            };
            print(&format!("{text}\n"))?;
        }
        Command::Requeue { job, checkpoint } => {
            let view = client
                .requeue(job, checkpoint)
                .await
                .with_context(|| format!("requeueing job {job}"))?;
            let how = match (checkpoint, view.spec.checkpoint.is_some()) {
                (true, _) => "the next run continues from the checkpoint it takes now",
                (false, true) => "the next run restores its last stored checkpoint, if any",
                (false, false) => "it starts again from the beginning",
            };
            print(&format!(
                "requeued job {} ({}): {how}\n",
                view.id, view.state
            ))?;
        }
        Command::Release { job } => {
            let view = client
                .hold(job, false)
                .await
                .with_context(|| format!("releasing job {job}"))?;
            print(&format!("released job {} ({})\n", view.id, view.state))?;
        }
        Command::Hold { job } => {
            client
                .hold(job, true)
                .await
                .with_context(|| format!("holding job {job}"))?;
            print(&format!(
                "held job {job}: it starts after `graze release {job}`\n"
            ))?;
        }
        Command::Drain { node } => {
            let v = client
                .drain(&node, true)
                .await
                .with_context(|| format!("draining node {node}"))?;
            print(&format!(
                "node {} drained: it takes no new jobs; running jobs ({}) go on\n",
                v.info.name,
                v.jobs.len()
            ))?;
        }
        Command::Undrain { node } => {
            let v = client
                .drain(&node, false)
                .await
                .with_context(|| format!("undraining node {node}"))?;
            print(&format!("node {} takes jobs again\n", v.info.name))?;
        }
        Command::Wait { job } => return wait(client, job).await,
        Command::History {
            user,
            since,
            state,
            json,
        } => {
            let q = graze_proto::HistoryQuery {
                user,
                since_ms: since.map(|s| format::now_ms().saturating_sub(s)),
                state,
            };
            let v = client.history(q).await.context("reading the job history")?;
            if json {
                print(&json_text(&v)?)?;
            } else {
                print(&report::history_table(&v))?;
            }
        }
        Command::Report(args) => {
            let since = format::now_ms().saturating_sub(args.since);
            let d = client
                .harvest(since)
                .await
                .context("reading the harvest figures")?;
            let r = report::build_report(&d, &report::local_offset);
            let (w, h) = args.size;
            if let Some(path) = &args.svg {
                std::fs::write(path, chart::svg(&r, w, h))
                    .with_context(|| format!("writing the chart to {}", path.display()))?;
            }
            if let Some(path) = &args.png {
                std::fs::write(path, chart::png(&r, w, h))
                    .with_context(|| format!("writing the chart to {}", path.display()))?;
            }
            if args.json {
                print(&json_text(&r)?)?;
            } else {
                print(&report::report_table(&r))?;
            }
        }
        Command::Top | Command::Demo(_) | Command::Engines(_) => {
            bail!("internal: {command:?} reached dispatch")
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `graze wait` (and `graze submit --wait`): the summary on stderr, the exit code of the job,
/// or for an array of its first task that did not complete.
async fn wait(client: &Client, job: JobRef) -> anyhow::Result<ExitCode> {
    let view = loop {
        let view = client
            .wait(job)
            .await
            .with_context(|| format!("waiting for job {job}"))?;
        if view.is_final() {
            break view;
        }
        tracing::warn!("the scheduler answered wait before the job ended; asking again");
        tokio::time::sleep(WAIT_RETRY).await;
    };
    let (summary, code) = match &view {
        Shown::Job(v) => (format::wait_summary(v), format::wait_exit_code(v)),
        Shown::Array(a) => (batch::array_wait_summary(a), batch::array_exit_code(a)),
    };
    eprintln!("{summary}");
    Ok(ExitCode::from(code))
}

async fn logs(
    client: &Client,
    job: JobRef,
    rank: Option<u32>,
    follow: bool,
    attempt: LogAttempt,
) -> anyhow::Result<()> {
    let what = || format!("reading the output of job {job}");
    let mut stream = client
        .logs_of(job, rank, follow, attempt)
        .await
        .with_context(what)?;
    let bare = rank.is_some();
    let mut heads = 0;
    while let Some(event) = stream.next_event().await.with_context(what)? {
        let lines = match event {
            LogEvent::Lines(l) => l,
            LogEvent::Attempt {
                attempt: a,
                attempts,
            } => {
                heads += 1;
                if let Some(text) = format::attempt_note(job, a, &attempts, attempt, heads > 1) {
                    match text {
                        format::AttemptNote::Header(h) => {
                            let mut out = std::io::stdout().lock();
                            writeln!(out, "{h}").context("writing to stdout")?;
                        }
                        format::AttemptNote::Note(n) => eprintln!("{n}"),
                    }
                }
                continue;
            }
        };
        let mut out = std::io::stdout().lock();
        let mut err = std::io::stderr().lock();
        for l in &lines {
            let text = format::log_line(l, bare);
            match l.stream {
                Stream::Stdout => writeln!(out, "{text}").context("writing to stdout")?,
                Stream::Stderr => writeln!(err, "{text}").context("writing to stderr")?,
            }
        }
        out.flush().context("writing to stdout")?;
    }
    Ok(())
}

pub(crate) fn print(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .context("writing to stdout")
}

fn json_text<T: serde::Serialize>(value: &T) -> anyhow::Result<String> {
    let mut s = serde_json::to_string_pretty(value).context("encoding JSON")?;
    s.push('\n');
    Ok(s)
}

fn env_os(name: &str) -> Option<OsString> {
    std::env::var_os(name).filter(|v| !v.is_empty())
}

/// The access file to use: the one named by `--access`/`GRAZE_ACCESS`, else
/// `$XDG_CONFIG_HOME/graze/access.toml` (when absolute), else `$HOME/.config/graze/access.toml`.
pub fn access_path(
    given: Option<&Path>,
    xdg_config_home: Option<OsString>,
    home: Option<OsString>,
) -> anyhow::Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p.to_owned());
    }
    if let Some(x) = xdg_config_home
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
    {
        return Ok(x.join("graze").join("access.toml"));
    }
    match home {
        Some(h) => Ok(PathBuf::from(h).join(".config/graze/access.toml")),
        None => bail!(
            "no access file given and neither XDG_CONFIG_HOME nor HOME is set; \
             copy STATE_DIR/access.toml from the scheduler and name it with --access FILE or GRAZE_ACCESS"
        ),
    }
}

/// Load the access file, explaining how to get one when it is missing.
pub fn load_access(path: &Path, explicit: bool) -> anyhow::Result<Access> {
    if !path.exists() {
        let how = if explicit {
            "named by --access or GRAZE_ACCESS"
        } else {
            "the default location"
        };
        bail!(
            "no access file at {} ({how}); copy STATE_DIR/access.toml from the scheduler to there, \
             or name another with --access FILE or GRAZE_ACCESS",
            path.display()
        );
    }
    Ok(Access::load(path)?)
}

/// Turn `graze submit` arguments into a [`JobSpec`], with the current directory and user.
fn build_spec(args: &SubmitArgs) -> anyhow::Result<JobSpec> {
    let cwd = std::env::current_dir().context("reading the current directory")?;
    let mut spec = spec_from_args(args, &cwd, current_user())?;
    when::apply_submit_args(args, &mut spec, format::now_ms(), &when::LocalZone)?;
    spec.checkpoint = checkpoint::checkpoint_spec(args);
    Ok(spec)
}

/// Turn `graze submit` arguments into a [`JobSpec`]; a relative `--cwd` is taken from `cwd`.
pub fn spec_from_args(args: &SubmitArgs, cwd: &Path, user: String) -> anyhow::Result<JobSpec> {
    if args.command.first().is_none_or(|w| w.trim().is_empty()) {
        bail!(
            "invalid command '{}': the first word must not be empty; put the command after --",
            format::shell_words(&args.command)
        );
    }
    let dir = match &args.cwd {
        Some(d) => cwd.join(d),
        None => cwd.to_owned(),
    };
    let dir = dir.into_os_string().into_string().map_err(|d| {
        anyhow::anyhow!(
            "invalid working directory '{}': not UTF-8",
            d.to_string_lossy()
        )
    })?;
    Ok(JobSpec {
        name: args.name.clone().filter(|n| !n.is_empty()),
        nprocs: args.nprocs,
        unit: args.unit.into(),
        priority: args.priority,
        groups: args.groups.clone(),
        nodes: args.nodes.clone(),
        command: args.command.clone(),
        cwd: Some(dir),
        env: args.env.clone(),
        user,
        stdout: args.stdout.clone(),
        stderr: args.stderr.clone(),
        exclusive: args.exclusive,
        trace: args.trace,
        array: args.array.clone(),
        after: args.after.clone(),
        ..Default::default()
    })
}

/// The submitting user's login name: `$USER`, `$LOGNAME`, the password database, or `unknown`.
pub fn current_user() -> String {
    ["USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
        .or_else(passwd_name)
        .unwrap_or_else(|| "unknown".into())
}

fn passwd_name() -> Option<String> {
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    // SAFETY: passwd is plain data; all-zero is a valid (empty) value that getpwuid_r overwrites.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call and buf.len() is the buffer's real size.
    let rc = unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result) };
    if rc != 0 || result.is_null() || pwd.pw_name.is_null() {
        return None;
    }
    // SAFETY: on success pw_name points to a NUL-terminated string inside buf, alive here.
    let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
    Some(name.to_string_lossy().into_owned()).filter(|n| !n.is_empty())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use clap::Parser as _;
    use graze_proto::Unit;

    fn submit_args(args: &[&str]) -> SubmitArgs {
        let mut all = vec!["graze", "submit"];
        all.extend_from_slice(args);
        match Cli::try_parse_from(all).unwrap().command {
            Command::Submit(s) => *s,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn spec_from_submit() {
        let a = submit_args(&[
            "-n", "4", "--unit", "node", "--cwd", "run1", "--env", "A=1", "--", "mpiexec", "x",
        ]);
        let s = spec_from_args(&a, Path::new("/home/alice"), "alice".into()).unwrap();
        assert_eq!(s.nprocs, 4);
        assert_eq!(s.unit, Unit::Node);
        assert_eq!(s.cwd.as_deref(), Some("/home/alice/run1"));
        assert_eq!(s.env, [("A".to_string(), "1".to_string())]);
        assert_eq!(s.command, ["mpiexec", "x"]);
        assert_eq!(s.user, "alice");
        assert_eq!(s.name, None);

        let a = submit_args(&["-n", "1", "--cwd", "/scratch", "--", "true"]);
        let s = spec_from_args(&a, Path::new("/home/alice"), "alice".into()).unwrap();
        assert_eq!(s.cwd.as_deref(), Some("/scratch"));
        let s = spec_from_args(
            &submit_args(&["-n", "1", "--", "true"]),
            Path::new("/w"),
            "u".into(),
        )
        .unwrap();
        assert_eq!(s.cwd.as_deref(), Some("/w"));
    }

    #[test]
    fn empty_command_word_is_refused() {
        let a = submit_args(&["-n", "1", "--", "", "x"]);
        let e = spec_from_args(&a, Path::new("/"), "u".into()).unwrap_err();
        assert!(e.to_string().contains("invalid command ''' x'"), "{e}");
    }

    #[test]
    fn access_path_order() {
        let p = access_path(
            Some(Path::new("/a.toml")),
            Some("/x".into()),
            Some("/h".into()),
        );
        assert_eq!(p.unwrap(), PathBuf::from("/a.toml"));
        let p = access_path(None, Some("/x".into()), Some("/h".into()));
        assert_eq!(p.unwrap(), PathBuf::from("/x/graze/access.toml"));
        let p = access_path(None, Some("relative".into()), Some("/h".into()));
        assert_eq!(p.unwrap(), PathBuf::from("/h/.config/graze/access.toml"));
        let e = access_path(None, None, None).unwrap_err().to_string();
        assert!(
            e.contains("copy STATE_DIR/access.toml from the scheduler"),
            "{e}"
        );
    }

    #[test]
    fn missing_access_file_names_the_path() {
        let e = load_access(Path::new("/nonexistent/graze/access.toml"), false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no access file at /nonexistent/graze/access.toml"),
            "{e}"
        );
        assert!(
            e.contains("copy STATE_DIR/access.toml from the scheduler"),
            "{e}"
        );
        let e = load_access(Path::new("/nonexistent/a.toml"), true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("named by --access or GRAZE_ACCESS"), "{e}");
    }

    #[test]
    fn a_user_is_always_found() {
        assert!(!current_user().is_empty());
        // The password database knows the user running the tests (root in containers).
        assert!(passwd_name().is_some());
    }

    #[test]
    fn scheduler_errors_are_found_through_context() {
        let e =
            anyhow::Error::new(ClientError::Scheduler("no job 9".into())).context("showing job 9");
        assert!(matches!(
            find_cause::<ClientError>(&e),
            Some(ClientError::Scheduler(m)) if m == "no job 9"
        ));
    }
}

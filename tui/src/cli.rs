//! Command-line syntax of `graze` (clap derive) and the value parsers that check single values.

use crate::batch::{parse_array, parse_dependency, parse_job_ref};
use clap::{Args, Parser, Subcommand, ValueEnum};
use graze_proto::{ArraySpec, Dependency, JobId, JobRef, LogAttempt, Unit};
use std::path::PathBuf;

/// `graze`: submit MPI jobs to a graze cluster and watch them.
#[derive(Parser, Debug, Clone, PartialEq, Eq)]
#[command(name = "graze", version, about, max_term_width = 100)]
pub struct Cli {
    /// Access file naming the scheduler, its certificate and the cluster token
    /// [default: $XDG_CONFIG_HOME/graze/access.toml or ~/.config/graze/access.toml]
    #[arg(long, global = true, env = "GRAZE_ACCESS", value_name = "FILE")]
    pub access: Option<PathBuf>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Queue a job; prints its id.
    Submit(Box<SubmitArgs>),
    /// List the jobs not yet finished, and recently finished ones.
    Queue {
        /// Include every finished job.
        #[arg(long)]
        all: bool,
        /// One line per task of an array (`7.3`) instead of one per array.
        #[arg(long, short = 't')]
        expand: bool,
        /// Print the jobs as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the nodes: availability, cores, load, owner idle time.
    Nodes {
        /// Print the nodes as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show everything known about one job.
    Show {
        /// The job id, an array's id, or ARRAY.INDEX for one task.
        #[arg(value_name = "JOB", value_parser = parse_job_ref, allow_negative_numbers = true)]
        job: JobRef,
        /// Print the job as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a job's output, labelled `[rank]`; stderr lines go to stderr.
    Logs {
        /// The job id, an array's id, or ARRAY.INDEX for one task.
        #[arg(value_name = "JOB", value_parser = parse_job_ref, allow_negative_numbers = true)]
        job: JobRef,
        /// Only this rank's output, without labels.
        #[arg(long, value_name = "R")]
        rank: Option<u32>,
        /// Keep printing new output until the job ends.
        #[arg(long, short = 'f')]
        follow: bool,
        /// Which run: a number (1 is the first run) or `all` [default: the latest].
        #[arg(
            long,
            value_name = "N|all",
            value_parser = parse_attempt,
            default_value = "latest",
            hide_default_value = true,
            allow_negative_numbers = true
        )]
        attempt: LogAttempt,
    },
    /// Cancel a job, queued or running.
    Cancel {
        /// The job id, an array's id, or ARRAY.INDEX for one task.
        #[arg(value_name = "JOB", value_parser = parse_job_ref, allow_negative_numbers = true)]
        job: JobRef,
    },
    /// Let a held job (`submit --hold`, `graze hold`) start.
    Release {
        /// The job id, or ARRAY.INDEX for one task.
        #[arg(value_name = "JOB", value_parser = parse_job_ref, allow_negative_numbers = true)]
        job: JobRef,
    },
    /// Hold a queued job: it does not start until `graze release JOB`.
    Hold {
        /// The job id, or ARRAY.INDEX for one task.
        #[arg(value_name = "JOB", value_parser = parse_job_ref, allow_negative_numbers = true)]
        job: JobRef,
    },
    /// Vacate a running or suspended job now and queue it again at the front (owner or
    /// admin); it starts again from the beginning, or from its checkpoint.
    Requeue {
        /// The job id, or ARRAY.INDEX for one task.
        #[arg(value_name = "JOB", value_parser = parse_job_ref, allow_negative_numbers = true)]
        job: JobRef,
        /// Take a checkpoint first (the job needs `submit --checkpoint`): the next run
        /// continues from it. Without it a checkpointing job keeps its last checkpoint.
        #[arg(long)]
        checkpoint: bool,
    },
    /// Stop placing new jobs on a node (admin tokens only); its running jobs go on.
    Drain {
        /// The node name.
        #[arg(value_name = "NODE", value_parser = parse_name)]
        node: String,
    },
    /// Let a drained node take jobs again (admin tokens only).
    Undrain {
        /// The node name.
        #[arg(value_name = "NODE", value_parser = parse_name)]
        node: String,
    },
    /// Run a command once on each chosen node, now, beside the jobs (admin tokens only).
    Clusrun(crate::clusrun::ClusrunArgs),
    /// Write a traced job's MPI timeline (`submit --trace`): Chrome JSON for Perfetto (-o),
    /// OTF2 for Vampir (--otf2), or a per-rank summary (--summary).
    Trace(crate::trace_cmd::TraceArgs),
    /// Wait until a job ends; exit with its exit code (130 when cancelled).
    Wait {
        /// The job id, an array's id, or ARRAY.INDEX for one task.
        #[arg(value_name = "JOB", value_parser = parse_job_ref, allow_negative_numbers = true)]
        job: JobRef,
    },
    /// Ended runs of jobs (one row per attempt: completed, failed, cancelled, timeout, or
    /// requeued and why); a user token sees its own jobs.
    History {
        /// Only this user's jobs.
        #[arg(long, value_name = "USER", value_parser = parse_name)]
        user: Option<String>,
        /// Only attempts that ended this recently, e.g. `24h`, `7d` [default: all kept].
        #[arg(long, value_name = "AGE", value_parser = crate::report::parse_age)]
        since: Option<u64>,
        /// Only attempts in this state: completed, failed, cancelled, timeout,
        /// dependency-failed or requeued.
        #[arg(long, value_name = "STATE", value_parser = crate::report::parse_state)]
        state: Option<String>,
        /// Print the attempts as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Harvest report per PC: core-hours given, owner suspensions and vacates, owner-release
    /// latency (p50, p99), core-hours offered and used; optionally a chart.
    Report(ReportArgs),
    /// Live terminal UI: nodes, queue, a job's ranks and output (`?` lists the keys).
    Top,
    /// IPython engines on N idle cores, as one job: starts an ipyparallel controller here (if
    /// none runs), prints the lines for a notebook; Ctrl-C stops it all. Needs the Python
    /// package graze-ipyparallel.
    Engines(crate::engines::EnginesArgs),
    /// Start a scheduler and 4 agents on this machine (127.0.0.2-5), submit Pi jobs and open
    /// `graze top`; everything started stops when it exits.
    Demo(DemoArgs),
}

/// Arguments of `graze report`.
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct ReportArgs {
    /// The period: this long back from now, e.g. `7d`, `24h`.
    #[arg(long, value_name = "AGE", default_value = "7d", value_parser = crate::report::parse_age)]
    pub since: u64,
    /// Also write the chart (core-hours per PC per night) as SVG to FILE.
    #[arg(long, value_name = "FILE", conflicts_with = "png")]
    pub svg: Option<PathBuf>,
    /// Also write the chart as PNG to FILE.
    #[arg(long, value_name = "FILE")]
    pub png: Option<PathBuf>,
    /// The chart's size in pixels.
    #[arg(long, value_name = "WxH", default_value = "800x500", value_parser = crate::report::parse_size)]
    pub size: (u32, u32),
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `graze demo`.
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct DemoArgs {
    /// Run the jobs to completion without the TUI and print a summary (for CI and headless
    /// machines).
    #[arg(long)]
    pub no_tui: bool,
    /// Pi rounds of each job (more rounds: longer jobs to watch) [default: 600, or 12 with
    /// --no-tui].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(2..=100_000))]
    pub rounds: Option<u64>,
    /// Keep the demo's directory (state, logs) instead of removing it at exit.
    #[arg(long)]
    pub keep: bool,
}

/// Arguments of `graze submit`.
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct SubmitArgs {
    /// Number of ranks: cores, sockets or nodes, see --unit.
    #[arg(short = 'n', value_name = "N", value_parser = parse_nprocs)]
    pub nprocs: u32,
    /// Name for people [default: the command's first word].
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Higher runs first; may be negative.
    #[arg(
        long,
        value_name = "P",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    pub priority: i32,
    /// What one rank reserves.
    #[arg(long, value_enum, default_value_t = UnitArg::Core)]
    pub unit: UnitArg,
    /// Only nodes in this group; repeat or separate with commas for several (all must match).
    #[arg(long = "group", value_name = "G", value_delimiter = ',', value_parser = parse_name)]
    pub groups: Vec<String>,
    /// Only these nodes, e.g. `a1,a2`.
    #[arg(long, value_name = "NODES", value_delimiter = ',', value_parser = parse_name)]
    pub nodes: Vec<String>,
    /// Extra environment variable for the job; repeatable.
    #[arg(long = "env", value_name = "K=V", value_parser = parse_env)]
    pub env: Vec<(String, String)>,
    /// Working directory on the first node [default: the current directory].
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<PathBuf>,
    /// Also write the job's output to this file on its first node, relative to the working
    /// directory: `%j` job, `%r` rank (one file per rank), `%a` array index, `%A` array job,
    /// `%n` attempt, `%%` a literal %.
    #[arg(long, value_name = "PATTERN", value_parser = parse_pattern)]
    pub stdout: Option<String>,
    /// Write stderr to this file instead [default: the --stdout file].
    #[arg(long, value_name = "PATTERN", value_parser = parse_pattern, requires = "stdout")]
    pub stderr: Option<String>,
    /// Whole nodes: all cores of each node the job uses, and no other job beside it.
    #[arg(long)]
    pub exclusive: bool,
    /// Trace the MPI calls of every rank (graze's PMPI tracer, preloaded) with the nodes'
    /// clocks synced; write the timeline afterwards with `graze trace JOB`.
    #[arg(long)]
    pub trace: bool,
    /// Print `{"id": N}` instead of the bare id.
    #[arg(long, conflicts_with = "parsable")]
    pub json: bool,
    /// Limit on the job's running time (suspensions for owners do not count), e.g. 2h, 90s,
    /// 1h30m, 1:30:00; at the limit the job is killed and ends `timeout`.
    #[arg(long = "time", value_name = "DURATION", value_parser = crate::when::parse_time_limit)]
    pub time: Option<u64>,
    /// Send the program (the ranks, not mpiexec) this signal T before the time limit, e.g.
    /// TERM@60s, USR1@5m (T defaults to 60s); needs --time.
    #[arg(long, value_name = "SIG[@T]", value_parser = crate::when::parse_signal)]
    pub signal: Option<graze_proto::TimeSignal>,
    /// Do not start before this local time: 22:00 (the next one), 'tomorrow 19:00',
    /// 2026-12-03T19:00, now+2h.
    #[arg(long, value_name = "TIME", value_parser = crate::when::parse_begin)]
    pub begin: Option<crate::when::Begin>,
    /// Queue the job held: it does not start until `graze release JOB`.
    #[arg(long)]
    pub hold: bool,
    /// Print only the bare id on stdout, nothing else (for scripts: `ID=$(graze submit
    /// --parsable ...)`), also with --wait.
    #[arg(long)]
    pub parsable: bool,
    /// Wait until the job (every task of an array) ends, and exit as `graze wait` does.
    #[arg(long)]
    pub wait: bool,
    /// A job array: one task per index, e.g. `1-100`, `1,5,9`, `1-3,7`, `1-9:2`; `%N` runs at
    /// most N tasks at once (`1-100%10`). Each task sees GRAZE_ARRAY_INDEX,
    /// GRAZE_ARRAY_JOB_ID and GRAZE_ARRAY_COUNT.
    #[arg(long, value_name = "INDICES[%N]", value_parser = parse_array)]
    pub array: Option<ArraySpec>,
    /// Start only after these jobs (or whole arrays): `ok:7` (completed, every task), `notok:7`
    /// (ended otherwise), `any:7` (ended); a bare `7` is `ok:7`. Comma-separated or repeated.
    /// A dependency that can no longer be met ends this job as dependency-failed.
    #[arg(long, value_name = "DEPS", value_delimiter = ',', value_parser = parse_dependency)]
    pub after: Vec<Dependency>,
    /// The job follows graze's checkpoint protocol: its ranks get GRAZE_CHECKPOINT_DIR and
    /// GRAZE_CHECKPOINT_SIGNAL; at a vacate they get the signal and a grace period to save,
    /// and the next run (GRAZE_RESTART_COUNT > 0) finds their files restored. Implied by the
    /// other --checkpoint-* options.
    #[arg(long)]
    pub checkpoint: bool,
    /// The signal that asks for a checkpoint, e.g. USR1, USR2, TERM or a number
    /// [default: USR1]; implies --checkpoint.
    #[arg(long, value_name = "SIG", value_parser = crate::checkpoint::parse_checkpoint_signal)]
    pub checkpoint_signal: Option<i32>,
    /// How long the ranks may run after the signal at a vacate before SIGTERM, e.g. 60s, 5m
    /// [default: 60s, at most 1h]; implies --checkpoint.
    #[arg(long, value_name = "DURATION", value_parser = crate::checkpoint::parse_checkpoint_grace)]
    pub checkpoint_grace: Option<u64>,
    /// Also ask for a checkpoint every this long of running time, e.g. 30m (at least 10s);
    /// the job goes on. Implies --checkpoint.
    #[arg(long, value_name = "DURATION", value_parser = crate::checkpoint::parse_checkpoint_every)]
    pub checkpoint_every: Option<u64>,
    /// The command to run, usually `mpiexec PROGRAM ARGS...`; put it after `--`.
    #[arg(value_name = "CMD", required = true, trailing_var_arg = true, num_args = 1..)]
    pub command: Vec<String>,
}

/// `--unit` values.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitArg {
    /// One rank per core.
    Core,
    /// One rank per CPU socket; its cores are reserved.
    Socket,
    /// One rank per node; the whole node is reserved.
    Node,
}

impl From<UnitArg> for Unit {
    fn from(u: UnitArg) -> Unit {
        match u {
            UnitArg::Core => Unit::Core,
            UnitArg::Socket => Unit::Socket,
            UnitArg::Node => Unit::Node,
        }
    }
}

/// Parse `-n N`: a whole number, at least 1.
pub fn parse_nprocs(s: &str) -> Result<u32, String> {
    let n: u32 = s
        .trim()
        .parse()
        .map_err(|_| "must be a whole number of at least 1".to_string())?;
    if n == 0 {
        return Err("must be at least 1".into());
    }
    Ok(n)
}

/// Check an output file pattern (`--stdout`, `--stderr`) with the scheduler's own parser.
pub fn parse_pattern(s: &str) -> Result<String, String> {
    graze_proto::Pattern::parse(s)
        .map(|_| s.to_string())
        .map_err(|e| e.why)
}

/// Parse `--attempt`: a run number from 1, `all` or `latest`.
pub fn parse_attempt(s: &str) -> Result<LogAttempt, String> {
    match s.trim() {
        "all" => Ok(LogAttempt::All),
        "latest" => Ok(LogAttempt::Latest),
        t => match t.parse::<u64>() {
            Ok(n) if n > 0 => Ok(LogAttempt::Number(n)),
            _ => Err("must be an attempt number from 1, or `all`".into()),
        },
    }
}

/// Parse a job id: a positive integer.
pub fn parse_job_id(s: &str) -> Result<JobId, String> {
    match s.trim().parse::<u64>() {
        Ok(0) | Err(_) => Err("must be a positive integer job id, as `graze queue` shows".into()),
        Ok(n) => Ok(JobId(n)),
    }
}

/// Parse `K=V` for `--env`; K must be a valid environment variable name.
pub fn parse_env(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| "must be KEY=VALUE".to_string())?;
    let mut chars = k.chars();
    let valid = match chars.next() {
        Some(c) if c == '_' || c.is_ascii_alphabetic() => {
            chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
        }
        _ => false,
    };
    if !valid {
        return Err(format!(
            "must be KEY=VALUE where KEY is letters, digits and '_', not starting with a digit; got key '{k}'"
        ));
    }
    Ok((k.to_string(), v.to_string()))
}

/// Parse one node or group name: non-empty, no whitespace.
pub fn parse_name(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("empty name (check for a doubled or trailing comma)".into());
    }
    if s.chars().any(char::is_whitespace) {
        return Err("a name must not contain spaces".into());
    }
    Ok(s.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, String> {
        Cli::try_parse_from(args).map_err(|e| e.to_string())
    }

    fn submit(args: &[&str]) -> SubmitArgs {
        let mut all = vec!["graze", "submit"];
        all.extend_from_slice(args);
        match parse(&all).unwrap().command {
            Command::Submit(s) => *s,
            other => panic!("not a submit: {other:?}"),
        }
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn submit_full() {
        let s = submit(&[
            "-n",
            "8",
            "--name",
            "pi",
            "--priority",
            "-5",
            "--unit",
            "socket",
            "--group",
            "lab,fast",
            "--group",
            "big",
            "--nodes",
            "a1,a2",
            "--env",
            "OMP_NUM_THREADS=1",
            "--env",
            "X=a=b",
            "--cwd",
            "/tmp",
            "--json",
            "--",
            "mpiexec",
            "-n",
            "8",
            "graze-pi",
        ]);
        assert_eq!(s.nprocs, 8);
        assert_eq!(s.name.as_deref(), Some("pi"));
        assert_eq!(s.priority, -5);
        assert_eq!(s.unit, UnitArg::Socket);
        assert_eq!(s.groups, ["lab", "fast", "big"]);
        assert_eq!(s.nodes, ["a1", "a2"]);
        assert_eq!(
            s.env,
            [
                ("OMP_NUM_THREADS".to_string(), "1".to_string()),
                ("X".to_string(), "a=b".to_string())
            ]
        );
        assert_eq!(s.cwd, Some(PathBuf::from("/tmp")));
        assert!(s.json);
        assert_eq!(s.command, ["mpiexec", "-n", "8", "graze-pi"]);
    }

    #[test]
    fn submit_defaults_and_command_without_dashes() {
        let s = submit(&["-n", "2", "mpiexec", "./a.out", "--flag"]);
        assert_eq!(s.nprocs, 2);
        assert_eq!(s.unit, UnitArg::Core);
        assert_eq!(s.priority, 0);
        assert!(s.groups.is_empty() && s.nodes.is_empty() && s.env.is_empty());
        assert_eq!(s.cwd, None);
        assert!(!s.json);
        assert_eq!(s.command, ["mpiexec", "./a.out", "--flag"]);
    }

    #[test]
    fn submit_checkpoint_options_imply_checkpoint() {
        let s = submit(&["-n", "2", "--", "x"]);
        assert_eq!(crate::checkpoint::checkpoint_spec(&s), None);
        let s = submit(&["-n", "2", "--checkpoint", "--", "x"]);
        assert_eq!(
            crate::checkpoint::checkpoint_spec(&s),
            Some(graze_proto::CheckpointSpec::default())
        );
        let s = submit(&[
            "-n",
            "2",
            "--checkpoint-signal",
            "USR2",
            "--checkpoint-grace",
            "2m",
            "--checkpoint-every",
            "30m",
            "--",
            "x",
        ]);
        assert_eq!(
            crate::checkpoint::checkpoint_spec(&s),
            Some(graze_proto::CheckpointSpec {
                signal: 12,
                grace_ms: 120_000,
                every_ms: Some(1_800_000),
            })
        );
        let s = submit(&["-n", "2", "--checkpoint-grace", "10s", "--", "x"]);
        let c = crate::checkpoint::checkpoint_spec(&s).unwrap();
        assert_eq!((c.signal, c.grace_ms, c.every_ms), (10, 10_000, None));
        let e = parse(&[
            "graze",
            "submit",
            "-n",
            "1",
            "--checkpoint-signal",
            "BOGUS",
            "--",
            "x",
        ])
        .unwrap_err();
        assert!(
            e.contains("invalid value 'BOGUS' for '--checkpoint-signal <SIG>': unknown signal"),
            "{e}"
        );
        match parse(&["graze", "requeue", "7.2", "--checkpoint"])
            .unwrap()
            .command
        {
            Command::Requeue { job, checkpoint } => {
                assert_eq!(job.to_string(), "7.2");
                assert!(checkpoint);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn submit_n_zero_is_refused_with_the_value() {
        let e = parse(&["graze", "submit", "-n", "0", "--", "true"]).unwrap_err();
        assert!(
            e.contains("invalid value '0' for '-n <N>': must be at least 1"),
            "{e}"
        );
        let e = parse(&["graze", "submit", "-n", "many", "--", "true"]).unwrap_err();
        assert!(e.contains("invalid value 'many' for '-n <N>'"), "{e}");
    }

    #[test]
    fn submit_needs_n_and_a_command() {
        let e = parse(&["graze", "submit", "--", "true"]).unwrap_err();
        assert!(e.contains("-n <N>"), "{e}");
        let e = parse(&["graze", "submit", "-n", "1"]).unwrap_err();
        assert!(e.contains("<CMD>"), "{e}");
        let e = parse(&["graze", "submit", "-n", "1", "--"]).unwrap_err();
        assert!(e.contains("<CMD>"), "{e}");
    }

    #[test]
    fn submit_bad_env_is_quoted() {
        let e = parse(&["graze", "submit", "-n", "1", "--env", "FOO", "--", "x"]).unwrap_err();
        assert!(
            e.contains("invalid value 'FOO' for '--env <K=V>': must be KEY=VALUE"),
            "{e}"
        );
        let e = parse(&["graze", "submit", "-n", "1", "--env", "1X=2", "--", "x"]).unwrap_err();
        assert!(e.contains("invalid value '1X=2'"), "{e}");
        assert!(e.contains("got key '1X'"), "{e}");
    }

    #[test]
    fn submit_bad_unit_and_empty_group() {
        let e = parse(&["graze", "submit", "-n", "1", "--unit", "gpu", "--", "x"]).unwrap_err();
        assert!(e.contains("invalid value 'gpu' for '--unit <UNIT>'"), "{e}");
        assert!(e.contains("core, socket, node"), "{e}");
        let e = parse(&["graze", "submit", "-n", "1", "--group", "a,,b", "--", "x"]).unwrap_err();
        assert!(e.contains("empty name"), "{e}");
    }

    #[test]
    fn unknown_flag_is_not_taken_as_the_command() {
        let e = parse(&["graze", "submit", "-n", "1", "--nmae", "x", "--", "y"]).unwrap_err();
        assert!(e.contains("--nmae"), "{e}");
    }

    #[test]
    fn job_ids() {
        let c = parse(&["graze", "show", "42", "--json"]).unwrap();
        assert_eq!(
            c.command,
            Command::Show {
                job: JobId(42).into(),
                json: true
            }
        );
        for bad in ["0", "-3", "x1", "4.x"] {
            let e = parse(&["graze", "cancel", bad]).unwrap_err();
            assert!(
                e.contains(&format!("invalid value '{bad}' for '<JOB>'")),
                "{bad}: {e}"
            );
        }
        let e = parse(&["graze", "wait", "abc"]).unwrap_err();
        assert!(e.contains("must be a job id"), "{e}");
        let c = parse(&["graze", "cancel", "7.3"]).unwrap();
        assert_eq!(
            c.command,
            Command::Cancel {
                job: JobRef {
                    job: JobId(7),
                    task: Some(3)
                }
            }
        );
        let e = parse(&["graze", "show", "7.x"]).unwrap_err();
        assert!(e.contains("invalid value '7.x' for '<JOB>'"), "{e}");
    }

    #[test]
    fn logs_flags() {
        let c = parse(&["graze", "logs", "3", "--rank", "0", "--follow"]).unwrap();
        assert_eq!(
            c.command,
            Command::Logs {
                job: JobId(3).into(),
                rank: Some(0),
                follow: true,
                attempt: LogAttempt::Latest,
            }
        );
        for (arg, want) in [
            ("2", LogAttempt::Number(2)),
            ("all", LogAttempt::All),
            ("latest", LogAttempt::Latest),
        ] {
            let c = parse(&["graze", "logs", "3", "--attempt", arg]).unwrap();
            assert!(
                matches!(c.command, Command::Logs { attempt, .. } if attempt == want),
                "{arg}"
            );
        }
        for bad in ["0", "-1", "last", ""] {
            let e = parse(&["graze", "logs", "3", "--attempt", bad]).unwrap_err();
            assert!(e.contains(&format!("'{bad}'")), "{e}");
            assert!(
                e.contains("must be an attempt number from 1, or `all`"),
                "{e}"
            );
        }
        let c = parse(&["graze", "logs", "3", "-f"]).unwrap();
        assert_eq!(
            c.command,
            Command::Logs {
                job: JobId(3).into(),
                rank: None,
                follow: true,
                attempt: LogAttempt::Latest,
            }
        );
    }

    #[test]
    fn queue_nodes_wait_cancel() {
        let c = parse(&["graze", "queue", "--all"]).unwrap();
        assert_eq!(
            c.command,
            Command::Queue {
                all: true,
                expand: false,
                json: false
            }
        );
        let c = parse(&["graze", "nodes", "--json"]).unwrap();
        assert_eq!(c.command, Command::Nodes { json: true });
        let c = parse(&["graze", "wait", "7"]).unwrap();
        assert_eq!(
            c.command,
            Command::Wait {
                job: JobId(7).into()
            }
        );
        let c = parse(&["graze", "cancel", "7"]).unwrap();
        assert_eq!(
            c.command,
            Command::Cancel {
                job: JobId(7).into()
            }
        );
    }

    #[test]
    fn submit_array_after_wait_parsable() {
        let s = submit(&[
            "-n",
            "4",
            "--array",
            "1-100%10",
            "--after",
            "ok:7,any:8",
            "--after",
            "9",
            "--wait",
            "--parsable",
            "--",
            "x",
        ]);
        let a = s.array.unwrap();
        assert_eq!(a.indices, (1..=100).collect::<Vec<u32>>());
        assert_eq!(a.throttle, Some(10));
        let deps: Vec<String> = s.after.iter().map(ToString::to_string).collect();
        assert_eq!(deps, ["ok:7", "any:8", "ok:9"]);
        assert!(s.wait && s.parsable);
        let s = submit(&["-n", "1", "--", "x"]);
        assert!(s.array.is_none() && s.after.is_empty() && !s.wait && !s.parsable);
        let c = parse(&["graze", "queue", "-t"]).unwrap();
        assert_eq!(
            c.command,
            Command::Queue {
                all: false,
                expand: true,
                json: false
            }
        );
    }

    #[test]
    fn bad_array_and_after_are_quoted() {
        for (args, want) in [
            (
                ["--array", "5-1"],
                "invalid value '5-1' for '--array <INDICES[%N]>': the range '5-1' ends before it starts",
            ),
            (["--array", "0-"], "invalid value '0-' for '--array"),
            (
                ["--array", "1-5%0"],
                "invalid value '1-5%0' for '--array <INDICES[%N]>': the throttle '%0' must be at least 1",
            ),
            (["--array", "1-999999"], "too many tasks: at most 10000"),
            (
                ["--after", "ok:x"],
                "invalid value 'ok:x' for '--after <DEPS>'",
            ),
            (["--after", "soon:3"], "unknown kind 'soon'"),
        ] {
            let mut all = vec!["graze", "submit", "-n", "1"];
            all.extend_from_slice(&args);
            all.extend_from_slice(&["--", "x"]);
            let e = parse(&all).unwrap_err();
            assert!(e.contains(want), "{args:?}: {e}");
        }
        let e = parse(&["graze", "submit", "-n", "1", "--json", "--parsable", "x"]).unwrap_err();
        assert!(e.contains("cannot be used with"), "{e}");
    }

    #[test]
    fn access_is_global() {
        let c = parse(&["graze", "queue", "--access", "/etc/a.toml"]).unwrap();
        assert_eq!(c.access, Some(PathBuf::from("/etc/a.toml")));
        let c = parse(&["graze", "--access", "b.toml", "nodes"]).unwrap();
        assert_eq!(c.access, Some(PathBuf::from("b.toml")));
    }

    #[test]
    fn value_parsers() {
        assert_eq!(parse_nprocs("1"), Ok(1));
        assert!(parse_nprocs("-1").is_err());
        assert_eq!(parse_job_id("9"), Ok(JobId(9)));
        assert_eq!(parse_env("A_1="), Ok(("A_1".into(), String::new())));
        assert!(parse_env("=x").is_err());
        assert!(parse_name("a b").is_err());
        assert_eq!(Unit::from(UnitArg::Node), Unit::Node);
    }

    #[test]
    fn time_limit_and_exclusive_flags() {
        let c = Cli::try_parse_from([
            "graze",
            "submit",
            "-n",
            "1",
            "--time",
            "2m",
            "--exclusive",
            "--",
            "x",
        ])
        .unwrap();
        let Command::Submit(a) = c.command else {
            panic!("not a submit");
        };
        assert_eq!(a.time, Some(120_000));
        assert!(a.exclusive);
    }
}

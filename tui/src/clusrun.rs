//! `graze clusrun`: the command line, the request, the live output and the closing table.

use crate::client::{Client, ClientError};
use crate::format;
use anyhow::Context as _;
use clap::{ArgGroup, Args};
use graze_proto::{
    ClientReply, ClientRequest, ClusrunOutcome, ClusrunResult, ClusrunSpec, NodeSelect, Stream,
    CLUSRUN_MAX_TIMEOUT_MS,
};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

/// What `graze clusrun --help` says after the options.
const AFTER_HELP: &str = "\
The command runs directly (no shell; use `sh -c '...'` for shell syntax) once on each chosen
node, now: it is not queued and reserves no cores. It runs as the agents' job user (never root)
in a clean environment (a fixed PATH, HOME, USER, LOGNAME, LANG=C.UTF-8 and GRAZE_NODE, the
node's name), in its own process group and cgroup, from the user's home directory; at the
timeout its whole process set is killed. By default it runs only on nodes whose owner is away
(where jobs may run now); with --even-if-busy it also runs where the owner is present, at nice 19.
Drained nodes run it too. Output is printed live as `[NODE] line` (stderr lines on stderr); at
most 10000 lines or 1 MiB per node are kept, the rest is dropped and counted in the table.

Exit status: 0 when the command ran on at least one node and exited 0 on every node it ran on;
1 when any chosen node failed (non-zero exit, signal, timeout, could not start, node lost),
when it ran on no node at all, or when the scheduler refused the request; 2 when graze could not
do its work. Skipped and offline nodes alone do not make it fail.";

/// Arguments of `graze clusrun`.
#[derive(Args, Debug, Clone, PartialEq, Eq)]
#[command(after_help = AFTER_HELP)]
#[command(group(ArgGroup::new("select").required(true).args(["all", "group", "nodes"])))]
pub struct ClusrunArgs {
    /// Every node the scheduler knows.
    #[arg(long)]
    pub all: bool,
    /// Every node of this group.
    #[arg(long, value_name = "G", value_parser = crate::cli::parse_name)]
    pub group: Option<String>,
    /// These nodes, e.g. `a1,a2`; an unknown name refuses the whole run.
    #[arg(long, value_name = "NODES", value_delimiter = ',', value_parser = crate::cli::parse_name)]
    pub nodes: Vec<String>,
    /// Kill the command (its whole process set) on a node after this long, e.g. `30s`, `5m`.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_timeout)]
    pub timeout: Duration,
    /// Print one JSON document (every node's result and output) instead of lines and a table.
    #[arg(long)]
    pub json: bool,
    /// Run on nodes whose owner is present too, at nice 19 there.
    #[arg(long)]
    pub even_if_busy: bool,
    /// The command; put it after `--`.
    #[arg(value_name = "CMD", required = true, trailing_var_arg = true, num_args = 1..)]
    pub command: Vec<String>,
}

/// Parse `--timeout`: a humantime duration, more than 0 and at most 24h.
pub fn parse_timeout(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("must be a duration like 30s or 5m ({e})"))?;
    if d.is_zero() {
        return Err("must be more than 0".into());
    }
    if d.as_millis() > u128::from(CLUSRUN_MAX_TIMEOUT_MS) {
        return Err("must be at most 24h".into());
    }
    Ok(d)
}

/// The request for `args`.
pub fn spec_from_args(args: &ClusrunArgs) -> anyhow::Result<ClusrunSpec> {
    if args.command.first().is_none_or(|w| w.trim().is_empty()) {
        anyhow::bail!(
            "invalid command '{}': the first word must not be empty; put the command after --",
            format::shell_words(&args.command)
        );
    }
    let select = if args.all {
        NodeSelect::All
    } else if let Some(g) = &args.group {
        NodeSelect::Group(g.clone())
    } else {
        NodeSelect::Nodes(args.nodes.clone())
    };
    Ok(ClusrunSpec {
        select,
        command: args.command.clone(),
        timeout_ms: args.timeout.as_millis().try_into().unwrap_or(u64::MAX),
        even_if_busy: args.even_if_busy,
    })
}

/// `graze clusrun`'s exit code for these results (see [`AFTER_HELP`]).
pub fn exit_code(results: &[ClusrunResult]) -> u8 {
    let failed = results.iter().any(|r| r.outcome.failed());
    let ran = results.iter().any(|r| r.outcome.ran());
    u8::from(failed || !ran)
}

/// The closing table: one row per chosen node, then a summary line.
pub fn result_table(results: &[ClusrunResult]) -> String {
    let width = results
        .iter()
        .map(|r| r.node.chars().count())
        .max()
        .unwrap_or(0)
        .max(4);
    let mut out = format!("{:<width$}  {:<6}  RESULT\n", "NODE", "TIME");
    let (mut ok, mut failed, mut skipped, mut offline) = (0, 0, 0, 0);
    for r in results {
        match &r.outcome {
            o if o.failed() => failed += 1,
            ClusrunOutcome::Skipped { .. } => skipped += 1,
            ClusrunOutcome::Offline => offline += 1,
            _ => ok += 1,
        }
        let time = if r.outcome.ran() {
            elapsed(r.elapsed_ms)
        } else {
            "-".into()
        };
        let mut result = r.outcome.to_string();
        if r.dropped_lines > 0 {
            result.push_str(&format!(" ({} output lines dropped)", r.dropped_lines));
        }
        out.push_str(&format!("{:<width$}  {time:<6}  {result}\n", r.node));
    }
    out.push_str(&format!(
        "{} node{}: {ok} ok, {failed} failed, {skipped} skipped, {offline} offline\n",
        results.len(),
        if results.len() == 1 { "" } else { "s" }
    ));
    out
}

/// A short run time: `0.3s` under a minute, else as [`format::duration`].
fn elapsed(ms: u64) -> String {
    if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        format::duration(ms)
    }
}

/// One output line as printed: `[NODE] line`.
pub fn labelled(node: &str, line: &str) -> String {
    format!("[{node}] {line}")
}

/// The `--json` document.
#[derive(Serialize, Debug)]
struct JsonDoc {
    /// Per node, in name order.
    nodes: Vec<JsonNode>,
    /// The exit status graze gives.
    exit_code: u8,
}

#[derive(Serialize, Debug)]
struct JsonNode {
    #[serde(flatten)]
    result: ClusrunResult,
    output: Vec<JsonLine>,
}

#[derive(Serialize, Debug)]
struct JsonLine {
    stream: Stream,
    line: String,
}

/// Run `graze clusrun`: stream the labelled output, then the table (or the JSON document).
pub async fn run(client: &Client, args: ClusrunArgs) -> anyhow::Result<ExitCode> {
    let spec = spec_from_args(&args)?;
    let what = "running the clusrun";
    let mut replies = client
        .open(&ClientRequest::Clusrun(Box::new(spec)))
        .await
        .context(what)?;
    let mut output: BTreeMap<String, Vec<JsonLine>> = BTreeMap::new();
    let results = loop {
        match replies.next().await.context(what)? {
            Some(ClientReply::ClusrunOutput(l)) => {
                if args.json {
                    output.entry(l.node).or_default().push(JsonLine {
                        stream: l.stream,
                        line: l.line,
                    });
                    continue;
                }
                let text = labelled(&l.node, &l.line);
                match l.stream {
                    Stream::Stdout => {
                        let mut out = std::io::stdout().lock();
                        writeln!(out, "{text}")
                            .and_then(|()| out.flush())
                            .context("writing to stdout")?
                    }
                    Stream::Stderr => eprintln!("{text}"),
                }
            }
            Some(ClientReply::ClusrunEnd { results }) => break results,
            Some(other) => {
                return Err(ClientError::Unexpected {
                    request: "clusrun",
                    reply: crate::client::reply_name(&other),
                })
                .context(what)
            }
            None => return Err(ClientError::NoAnswer { request: "clusrun" }).context(what),
        }
    };
    let code = exit_code(&results);
    let text = if args.json {
        let doc = JsonDoc {
            nodes: results
                .into_iter()
                .map(|r| JsonNode {
                    output: output.remove(&r.node).unwrap_or_default(),
                    result: r,
                })
                .collect(),
            exit_code: code,
        };
        let mut s = serde_json::to_string_pretty(&doc).context("encoding JSON")?;
        s.push('\n');
        s
    } else {
        result_table(&results)
    };
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .context("writing to stdout")?;
    Ok(ExitCode::from(code))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser as _;
    use graze_proto::ExitStatus;

    fn parse(args: &[&str]) -> Result<ClusrunArgs, String> {
        let mut all = vec!["graze", "clusrun"];
        all.extend_from_slice(args);
        match Cli::try_parse_from(all).map_err(|e| e.to_string())?.command {
            Command::Clusrun(a) => Ok(a),
            other => panic!("not a clusrun: {other:?}"),
        }
    }

    #[test]
    fn selectors_and_defaults() {
        let a = parse(&["--all", "--", "hostname"]).unwrap();
        assert!(a.all && !a.json && !a.even_if_busy);
        assert_eq!(a.timeout, Duration::from_secs(30));
        assert_eq!(a.command, ["hostname"]);
        assert_eq!(spec_from_args(&a).unwrap().select, NodeSelect::All);
        assert_eq!(spec_from_args(&a).unwrap().timeout_ms, 30_000);

        let a = parse(&[
            "--group",
            "lab",
            "--timeout",
            "2m",
            "--json",
            "uptime",
            "-p",
        ])
        .unwrap();
        assert_eq!(a.command, ["uptime", "-p"]);
        let s = spec_from_args(&a).unwrap();
        assert_eq!(s.select, NodeSelect::Group("lab".into()));
        assert_eq!(s.timeout_ms, 120_000);

        let a = parse(&[
            "--nodes",
            "a1,a2",
            "--even-if-busy",
            "--",
            "sh",
            "-c",
            "id -u",
        ])
        .unwrap();
        let s = spec_from_args(&a).unwrap();
        assert_eq!(s.select, NodeSelect::Nodes(vec!["a1".into(), "a2".into()]));
        assert!(s.even_if_busy);
        assert_eq!(s.command, ["sh", "-c", "id -u"]);
    }

    #[test]
    fn bad_arguments_are_refused_with_the_value() {
        let e = parse(&["--", "hostname"]).unwrap_err();
        assert!(e.contains("--all"), "{e}");
        let e = parse(&["--all", "--nodes", "a", "--", "x"]).unwrap_err();
        assert!(e.contains("cannot be used with"), "{e}");
        let e = parse(&["--all", "--timeout", "0", "--", "x"]).unwrap_err();
        assert!(
            e.contains("invalid value '0' for '--timeout <DURATION>': must be more than 0"),
            "{e}"
        );
        let e = parse(&["--all", "--timeout", "soon", "--", "x"]).unwrap_err();
        assert!(e.contains("invalid value 'soon'"), "{e}");
        let e = parse(&["--all", "--timeout", "25h", "--", "x"]).unwrap_err();
        assert!(e.contains("at most 24h"), "{e}");
        let e = parse(&["--all"]).unwrap_err();
        assert!(e.contains("<CMD>"), "{e}");
        let e = parse(&["--nodes", "a,,b", "--", "x"]).unwrap_err();
        assert!(e.contains("empty name"), "{e}");
        let a = parse(&["--all", "--", "", "x"]).unwrap();
        let e = spec_from_args(&a).unwrap_err().to_string();
        assert!(e.contains("invalid command ''' x'"), "{e}");
    }

    fn r(node: &str, outcome: ClusrunOutcome, ms: u64) -> ClusrunResult {
        ClusrunResult {
            node: node.into(),
            outcome,
            dropped_lines: 0,
            elapsed_ms: ms,
        }
    }

    fn exited(code: Option<i32>, signal: Option<i32>) -> ClusrunOutcome {
        ClusrunOutcome::Exited {
            exit: ExitStatus { code, signal },
        }
    }

    #[test]
    fn table_and_exit_code() {
        let mut dropped = r("n5", exited(Some(0), None), 61_000);
        dropped.dropped_lines = 12;
        let results = vec![
            r("n1", exited(Some(0), None), 120),
            r("n2", exited(Some(3), None), 80),
            r("n3", exited(None, Some(9)), 1500),
            r("n4", ClusrunOutcome::Timeout, 30_004),
            dropped,
            r(
                "pc-long-name",
                ClusrunOutcome::Skipped {
                    reason: "owner present (input 3s ago)".into(),
                },
                0,
            ),
            r("x", ClusrunOutcome::Offline, 0),
            r(
                "y",
                ClusrunOutcome::Lost {
                    reason: "the node's agent disconnected during the run".into(),
                },
                400,
            ),
            r(
                "z",
                ClusrunOutcome::NotStarted {
                    reason: "cannot run 'nosuch': No such file or directory".into(),
                },
                0,
            ),
        ];
        assert_eq!(
            result_table(&results),
            "\
NODE          TIME    RESULT
n1            0.1s    exit 0
n2            0.1s    exit 3
n3            1.5s    signal 9
n4            30.0s   timeout
n5            1m      exit 0 (12 output lines dropped)
pc-long-name  -       skipped: owner present (input 3s ago)
x             -       offline
y             0.4s    node lost: the node's agent disconnected during the run
z             -       not started: cannot run 'nosuch': No such file or directory
9 nodes: 2 ok, 5 failed, 1 skipped, 1 offline
"
        );
        assert_eq!(exit_code(&results), 1);
        let fine = [
            r("a", exited(Some(0), None), 1),
            r("b", ClusrunOutcome::Offline, 0),
        ];
        assert_eq!(exit_code(&fine), 0);
        assert!(result_table(&fine).ends_with("2 nodes: 1 ok, 0 failed, 0 skipped, 1 offline\n"));
        // Nothing ran anywhere: a failure too.
        let none = [r(
            "a",
            ClusrunOutcome::Skipped {
                reason: "owner present".into(),
            },
            0,
        )];
        assert_eq!(exit_code(&none), 1);
        assert_eq!(exit_code(&[]), 1);
        assert_eq!(labelled("n2", "hi"), "[n2] hi");
    }
}

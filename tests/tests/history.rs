//! Issue 11 items 8 and 9: job history and the harvest report, with real processes. Jobs that
//! complete, fail with exit 3, are cancelled, and are vacated by their owner then run again;
//! the scheduler is SIGKILLed right after and restarted; `graze history --json` then has
//! every attempt, and `graze report` per-PC figures agree with it.
#![allow(clippy::unwrap_used)]

use graze_tests::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(120);

fn attempts(c: &Cluster, args: &[&str]) -> Vec<Value> {
    let mut a = vec!["history", "--json"];
    a.extend_from_slice(args);
    c.graze_json(&a).as_array().unwrap().clone()
}

fn find(all: &[Value], job: u64, attempt: u64) -> &Value {
    all.iter()
        .find(|a| a["job"] == job && a["attempt"] == attempt)
        .unwrap_or_else(|| panic!("no attempt {job}.{attempt} in {all:#?}"))
}

fn hosts(a: &Value) -> Vec<String> {
    a["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["host"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn history_survives_a_crash_and_the_report_agrees() {
    let mut c = Cluster::start(&[]);
    let policy = [
        "--resume-after",
        "3s",
        "--vacate-after",
        "2s",
        "--vacate-grace",
        "1s",
    ];
    c.add_agent("h2", "127.0.0.2", 1, &policy);
    c.add_agent("h3", "127.0.0.3", 1, &policy);
    c.wait_offered(2);

    let ok = c.submit(&["-n", "1", "--nodes", "h2", "--name", "ok", "--", "true"]);
    let out = c.graze(&["wait", &ok.to_string()]);
    assert!(out.status.success(), "{}", c.show(ok));
    let bad = c.submit(&[
        "-n", "1", "--nodes", "h2", "--name", "bad", "--", "sh", "-c", "exit 3",
    ]);
    assert_eq!(c.graze(&["wait", &bad.to_string()]).status.code(), Some(3));
    let gone = c.submit(&[
        "-n", "1", "--nodes", "h2", "--name", "gone", "--", "sleep", "600",
    ]);
    wait_for("the job to run", LONG, || {
        (!c.job_processes(gone).is_empty()).then_some(())
    });
    assert!(c.graze(&["cancel", &gone.to_string()]).status.success());
    wait_for("the job cancelled", LONG, || {
        (c.show(gone)["state"] == "cancelled").then_some(())
    });

    // The owner of h3 comes back and stays until the job is vacated.
    let vac = c.submit(&[
        "-n", "1", "--nodes", "h3", "--name", "vac", "--", "sleep", "3",
    ]);
    wait_for("the job to run", LONG, || {
        (!c.job_processes(vac).is_empty()).then_some(())
    });
    let idle = c.agents[1].idle_file.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let typing = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                touch(&idle);
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    wait_for("the job vacated and requeued", LONG, || {
        (c.show(vac)["requeues"] == 1).then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    typing.join().unwrap();
    // The owner leaves; after resume_after h3 offers again and the job runs there to the end.
    let out = c.graze(&["wait", &vac.to_string()]);
    assert!(out.status.success(), "{}", c.show(vac));

    // A crash right after: everything acknowledged must be there after the restart.
    c.kill_scheduler();
    c.restart_scheduler(&[]);
    let all = attempts(&c, &[]);
    assert_eq!(all.len(), 5, "{all:#?}");

    let a = find(&all, ok, 1);
    assert_eq!(a["state"], "completed");
    assert_eq!(a["exit"]["code"], 0);
    assert_eq!(a["name"], "ok");
    assert_eq!(hosts(a), vec!["h2"]);
    let a = find(&all, bad, 1);
    assert_eq!(a["state"], "failed");
    assert_eq!(a["exit"]["code"], 3);
    let a = find(&all, gone, 1);
    assert_eq!(a["state"], "cancelled");
    let v1 = find(&all, vac, 1);
    assert_eq!(v1["state"], "requeued");
    let why = v1["requeue_reason"].as_str().unwrap();
    assert!(
        why.starts_with("vacated: the owner of node h3 stayed busy for 2s"),
        "{why}"
    );
    assert!(v1["suspended_ms"].as_u64().unwrap() > 0, "{v1}");
    assert_eq!(hosts(v1), vec!["h3"]);
    let v2 = find(&all, vac, 2);
    assert_eq!(v2["state"], "completed");
    assert_eq!(v2["requeues"], 1);
    assert_eq!(v2["requeue_reasons"][0].as_str(), Some(why));
    assert_eq!(hosts(v2), vec!["h3"]);
    for a in &all {
        let (sub, start, end) = (
            a["submitted_ms"].as_u64().unwrap(),
            a["started_ms"].as_u64().unwrap(),
            a["ended_ms"].as_u64().unwrap(),
        );
        assert!(sub <= start && start <= end, "times out of order: {a}");
        let run = a["running_ms"].as_u64().unwrap() + a["suspended_ms"].as_u64().unwrap();
        assert!(
            run <= end - start,
            "running + suspended beyond the span: {a}"
        );
    }
    assert!(
        v1["ended_ms"].as_u64().unwrap() <= v2["started_ms"].as_u64().unwrap(),
        "the rerun starts after the vacate"
    );

    // Filters, and bad values quoted.
    let rq = attempts(&c, &["--state", "requeued"]);
    assert_eq!(rq.len(), 1);
    assert_eq!(rq[0]["job"], vac);
    assert_eq!(attempts(&c, &["--since", "1h"]).len(), 5);
    let out = c.graze(&["history", "--since", "3x"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("'3x'"));
    let out = c.graze(&["history", "--state", "bogus"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("'bogus'"));
    let table = String::from_utf8_lossy(&c.graze(&["history"]).stdout).to_string();
    assert!(table.contains(&format!("{vac}.2")), "{table}");

    // The report's core-hours per PC are the sums of the history's attempts.
    let mut sums: BTreeMap<String, f64> = BTreeMap::new();
    for a in &all {
        for (h, cores) in a["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .zip(a["cores"].as_array().unwrap())
        {
            *sums.entry(h["host"].as_str().unwrap().into()).or_default() +=
                cores.as_f64().unwrap() * a["running_ms"].as_f64().unwrap() / 3.6e6;
        }
    }
    let report = c.graze_json(&["report", "--json"]);
    let pcs = report["pcs"].as_array().unwrap();
    let pc = |n: &str| pcs.iter().find(|p| p["node"] == n).unwrap().clone();
    for (node, sum) in &sums {
        let got = pc(node)["core_hours"].as_f64().unwrap();
        assert!(
            (got - sum).abs() < 1e-9,
            "{node}: report {got}, history {sum}"
        );
    }
    let h3 = pc("h3");
    assert_eq!(h3["suspensions"], 1, "{h3}");
    assert_eq!(h3["vacates"], 1, "{h3}");
    assert!(h3["releases"].as_u64().unwrap() >= 1, "{h3}");
    assert!(h3["release_p50_ms"].as_f64().is_some(), "{h3}");
    assert!(h3["offered_core_hours"].as_f64().unwrap() > 0.0, "{h3}");
    let h2 = pc("h2");
    assert_eq!(
        (h2["suspensions"].as_u64(), h2["vacates"].as_u64()),
        (Some(0), Some(0))
    );

    // The chart: a PNG of exactly the size asked, an SVG of it too.
    let png = c.state_dir().join("h.png");
    let out = c.graze(&[
        "report",
        "--png",
        png.to_str().unwrap(),
        "--size",
        "640x400",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p = std::fs::read(&png).unwrap();
    assert_eq!(&p[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(&p[12..16], b"IHDR");
    assert_eq!(u32::from_be_bytes(p[16..20].try_into().unwrap()), 640);
    assert_eq!(u32::from_be_bytes(p[20..24].try_into().unwrap()), 400);
    let svg = c.state_dir().join("h.svg");
    let out = c.graze(&[
        "report",
        "--svg",
        svg.to_str().unwrap(),
        "--size",
        "900x300",
    ]);
    assert!(out.status.success());
    let s = std::fs::read_to_string(&svg).unwrap();
    assert!(s.contains(r#"width="900" height="300""#), "{s}");
    assert!(s.contains(">h3</text>"), "{s}");
    let out = c.graze(&["report", "--size", "640"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("'640'"));
}

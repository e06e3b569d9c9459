//! `graze-agent doctor`: does this PC see its owner? An admin runs it once per PC after
//! install. It lists each idle source (found or not, why, its reading), then asks the person
//! at the PC to touch the keyboard or mouse and reports which sources saw it and how late,
//! so a source that silently sees nothing (BOINC #1187: a service that never sees the user) is
//! found on day one. Exit status 0 when some source saw the touch (or `--no-touch`), 1 when
//! none did.

use crate::owner::IdleSourceSpec;
use std::time::{Duration, Instant, SystemTime};

/// `graze-agent doctor` arguments.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq, Default)]
pub struct DoctorArgs {
    /// An idle source to check (repeatable) [default: the config file's sources, else x11,
    /// tty, evdev and logind].
    #[arg(long = "idle-source", value_name = "SPEC")]
    pub idle_sources: Vec<String>,
    /// The agent's config file to read the sources from [default: /etc/graze/agent.toml if
    /// it exists].
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    /// How long to wait for the touch.
    #[arg(long, value_name = "DURATION", default_value = "10s")]
    pub wait: String,
    /// Only list the sources; do not ask for a touch.
    #[arg(long)]
    pub no_touch: bool,
}

/// What a source may lack when it has nothing to watch, for people.
fn unavailable_why(spec: &IdleSourceSpec) -> &'static str {
    match spec {
        IdleSourceSpec::X11(_) => "no X display reachable (DISPLAY unset, no server, not allowed to connect, or libXss missing)",
        IdleSourceSpec::Tty => "nobody is logged in on a terminal (utmp)",
        IdleSourceSpec::Evdev => "no readable input device in /dev/input (needs root or the input group)",
        IdleSourceSpec::Logind(_) => "no D-Bus system bus or no systemd-logind on it, or no graphical session",
        IdleSourceSpec::File(_) => "the file does not exist",
        IdleSourceSpec::AlwaysIdle => "never unavailable",
    }
}

fn ms(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// The sources to check: the flags, else the config file's, else the real ones.
fn specs(a: &DoctorArgs) -> anyhow::Result<Vec<IdleSourceSpec>> {
    let parse = |s: &str| {
        s.parse::<IdleSourceSpec>()
            .map_err(|e| anyhow::anyhow!("invalid --idle-source '{s}': {e}"))
    };
    if !a.idle_sources.is_empty() {
        return a.idle_sources.iter().map(|s| parse(s)).collect();
    }
    let file = a.config.clone().or_else(|| {
        // Where `graze-agent install` puts a system agent's config.
        let p = crate::install::Layout::new(true, None).ok()?.config();
        p.exists().then_some(p)
    });
    if let Some(f) = file {
        // The agent's own reader: the same errors as the agent would give.
        let cfg = crate::config::ConfigFile::load(&f)?;
        if let Some(list) = cfg.values.idle_sources {
            return list.iter().map(|s| parse(s)).collect();
        }
    }
    Ok(vec![
        IdleSourceSpec::X11(None),
        IdleSourceSpec::Tty,
        IdleSourceSpec::Evdev,
        IdleSourceSpec::Logind(None),
    ])
}

/// Run the doctor, printing to stdout; `Ok(true)` when the check passed.
pub fn run(a: &DoctorArgs) -> anyhow::Result<bool> {
    let wait = humantime::parse_duration(&a.wait)
        .map_err(|e| anyhow::anyhow!("invalid --wait '{}': {e}", a.wait))?;
    let specs = specs(a)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let started = Instant::now();
        let wake = std::sync::Arc::new(tokio::sync::Notify::new());
        let mut sources: Vec<_> = specs.iter().map(|s| s.build(started, &wake)).collect();
        // Event-driven sources (logind) connect in the background: give them a moment.
        if specs.iter().any(|s| matches!(s, IdleSourceSpec::Logind(_))) {
            tokio::time::sleep(Duration::from_millis(700)).await;
        }
        println!("idle sources:");
        let mut usable = vec![false; sources.len()];
        for (i, (spec, src)) in specs.iter().zip(&mut sources).enumerate() {
            let name = spec.to_string();
            match src.idle(Instant::now(), SystemTime::now()) {
                Ok(Some(d)) => {
                    usable[i] = true;
                    let present = src
                        .presence()
                        .map(|p| format!("; owner present: {p}"))
                        .unwrap_or_default();
                    println!("  {name}: found, owner idle for {}{present}", secs(d));
                }
                Ok(None) => println!("  {name}: not found: {}", unavailable_why(spec)),
                Err(e) => println!("  {name}: broken: {e} (the agent then counts the owner as active)"),
            }
        }
        if a.no_touch {
            return Ok(usable.iter().any(|u| *u));
        }
        println!(
            "now touch the keyboard or move the mouse of this PC (within {})...",
            secs(wait)
        );
        use std::io::Write;
        let _ = std::io::stdout().flush();
        let prompt = Instant::now();
        // Per source: when it first reported input made after the prompt, and how old that
        // input was then (the source's own delay).
        let mut seen: Vec<Option<(Duration, Duration)>> = vec![None; sources.len()];
        while prompt.elapsed() < wait && seen.iter().any(Option::is_none) {
            let now = Instant::now();
            let since = now - prompt;
            for (i, src) in sources.iter_mut().enumerate() {
                if seen[i].is_some() {
                    continue;
                }
                if let Ok(Some(d)) = src.idle(now, SystemTime::now()) {
                    if d < since {
                        seen[i] = Some((since, d));
                    }
                }
            }
            if seen.iter().any(Option::is_some) && prompt.elapsed() > Duration::from_secs(1) {
                // Give the others a second after the first one saw it, then stop.
                let first = seen.iter().flatten().map(|(at, _)| *at).min().unwrap_or_default();
                if since > first + Duration::from_secs(1) {
                    break;
                }
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(5)) => {}
                () = wake.notified() => {}
            }
        }
        let mut any = false;
        for (i, spec) in specs.iter().enumerate() {
            match seen[i] {
                Some((at, age)) => {
                    any = true;
                    println!(
                        "  {spec}: saw the input {} after the prompt, {} after it happened",
                        ms(at),
                        ms(age)
                    );
                }
                None if usable[i] => println!("  {spec}: saw nothing"),
                None => {}
            }
        }
        if any {
            println!("ok: graze notices the owner on this PC");
        } else {
            println!(
                "PROBLEM: no idle source saw the input; graze would not notice the owner here (check the sources above)"
            );
        }
        Ok(any)
    })
}

//! The jobs' system user: created by a system install, removed by uninstall; under a
//! `--root` other than `/`, by editing that root's `etc/passwd`, `etc/group` and `etc/shadow`.

use anyhow::{bail, Context, Result};
use std::path::Path;

fn read_lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .map(|t| t.lines().map(str::to_owned).collect())
        .unwrap_or_default()
}

fn field(line: &str, n: usize) -> Option<&str> {
    line.split(':').nth(n)
}

/// Make sure the system user `name` exists under `root`; returns (created, uid, gid).
/// On the real root this runs `useradd --system`; under another root it edits that root's
/// `etc/passwd`, `etc/group` and `etc/shadow` (creating them when missing).
pub fn ensure_user(root: &Path, name: &str) -> Result<(bool, u32, u32)> {
    ensure_user_in(root, name, None)
}

/// [`ensure_user`], with primary group `group` (a slot user gets the job user's group)
/// instead of a group of its own.
pub fn ensure_user_in(root: &Path, name: &str, group: Option<u32>) -> Result<(bool, u32, u32)> {
    if root == Path::new("/") {
        if let Ok(u) = crate::jobs::confine::user_by_name(name) {
            return Ok((false, u.uid, u.gid));
        }
        let gid = group.map(|g| g.to_string());
        let grouping: Vec<&str> = match &gid {
            Some(g) => vec!["-g", g],
            None => vec!["--user-group"],
        };
        let st = std::process::Command::new("useradd")
            .arg("--system")
            .args(&grouping)
            .args([
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                "--comment",
                "graze agent jobs",
                name,
            ])
            .status()
            .context("running useradd")?;
        // 9: the user exists (created meanwhile by another process).
        if !st.success() && st.code() != Some(9) {
            bail!("useradd {name} failed: {st}");
        }
        let u = crate::jobs::confine::user_by_name(name)?;
        return Ok((st.success(), u.uid, u.gid));
    }
    let etc = root.join("etc");
    let passwd = etc.join("passwd");
    let group_file = etc.join("group");
    let shadow = etc.join("shadow");
    let pw = read_lines(&passwd);
    if let Some(l) = pw.iter().find(|l| field(l, 0) == Some(name)) {
        let uid = field(l, 2).and_then(|s| s.parse().ok()).unwrap_or(0);
        let gid = field(l, 3).and_then(|s| s.parse().ok()).unwrap_or(0);
        if uid == 0 {
            bail!(
                "user '{name}' in {} has uid 0: jobs never run as root",
                passwd.display()
            );
        }
        return Ok((false, uid, gid));
    }
    let gr = read_lines(&group_file);
    let used =
        |lines: &[String], id: u32| lines.iter().any(|l| field(l, 2) == Some(&id.to_string()));
    let id = (100..1000u32)
        .rev()
        .find(|id| !used(&pw, *id) && !used(&gr, *id))
        .context("no free system uid/gid from 100 to 999")?;
    std::fs::create_dir_all(&etc).with_context(|| format!("creating '{}'", etc.display()))?;
    let append = |p: &Path, line: String, mode: u32| -> Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(mode)
            .open(p)
            .with_context(|| format!("opening '{}'", p.display()))?;
        f.write_all(format!("{line}\n").as_bytes())
            .with_context(|| format!("writing '{}'", p.display()))
    };
    let gid = match group {
        Some(g) => g,
        None => {
            append(&group_file, format!("{name}:x:{id}:"), 0o644)?;
            id
        }
    };
    append(
        &passwd,
        format!("{name}:x:{id}:{gid}:graze agent jobs:/nonexistent:/usr/sbin/nologin"),
        0o644,
    )?;
    append(&shadow, format!("{name}:!:::::::"), 0o640)?;
    Ok((true, id, gid))
}

/// Remove the system user `name` install created (see [`ensure_user`]); files left empty
/// are removed too.
pub fn remove_user(root: &Path, name: &str) -> Result<()> {
    if root == Path::new("/") {
        let st = std::process::Command::new("userdel")
            .arg(name)
            .status()
            .context("running userdel")?;
        if !st.success() {
            bail!("userdel {name} failed: {st}");
        }
        return Ok(());
    }
    for f in ["passwd", "group", "shadow"] {
        let p = root.join("etc").join(f);
        let lines = read_lines(&p);
        if lines.is_empty() && !p.exists() {
            continue;
        }
        let kept: Vec<&String> = lines.iter().filter(|l| field(l, 0) != Some(name)).collect();
        if kept.is_empty() {
            std::fs::remove_file(&p).with_context(|| format!("removing '{}'", p.display()))?;
        } else {
            let body: String = kept.iter().map(|l| format!("{l}\n")).collect();
            std::fs::write(&p, body).with_context(|| format!("writing '{}'", p.display()))?;
        }
    }
    let etc = root.join("etc");
    if std::fs::read_dir(&etc).is_ok_and(|mut d| d.next().is_none()) {
        let _ = std::fs::remove_dir(&etc);
    }
    Ok(())
}

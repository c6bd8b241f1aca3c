//! One PostgreSQL cluster managed with `initdb` and `pg_ctl`.

use std::io::Write;
use std::os::unix::fs::{PermissionsExt, chown};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::{Context, bail};
use nix::unistd::{Uid, User};
use secrecy::{ExposeSecret, SecretString};

use super::PgBinaries;

/// A cluster directory and the user its server runs as.
#[derive(Debug, Clone)]
pub struct Cluster {
    bins: PgBinaries,
    dir: PathBuf,
    /// Set when we are root: PostgreSQL refuses to run as root.
    run_as: Option<User>,
}

impl Cluster {
    /// `dir` must be absolute. When the current user is root, the server runs as `run_as`.
    pub fn new(bins: PgBinaries, dir: PathBuf, run_as: &str) -> anyhow::Result<Self> {
        anyhow::ensure!(dir.is_absolute(), "the cluster directory must be absolute");
        let run_as = if Uid::effective().is_root() {
            let user = User::from_name(run_as)
                .with_context(|| format!("looking up user {run_as}"))?
                .with_context(|| {
                    format!(
                        "running as root, so PostgreSQL must run as an unprivileged user, but user \
                         `{run_as}` does not exist: create it (`useradd --system {run_as}`) or name \
                         another with GATEWAY_EMBEDDED__RUN_AS"
                    )
                })?;
            anyhow::ensure!(
                !user.uid.is_root(),
                "GATEWAY_EMBEDDED__RUN_AS must not be root"
            );
            Some(user)
        } else {
            None
        };
        Ok(Self { bins, dir, run_as })
    }

    /// The cluster directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// True once `initdb` has completed here.
    pub fn is_initialized(&self) -> bool {
        self.dir.join("PG_VERSION").is_file()
    }

    /// Checks that the server's user can reach the cluster's parent directory.
    pub fn check_reachable(&self) -> anyhow::Result<()> {
        let Some(user) = &self.run_as else {
            return Ok(());
        };
        let parent = self.dir.parent().unwrap_or(Path::new("/"));
        let ok = self
            .command("test")
            .arg("-x")
            .arg(parent)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            bail!(
                "running as root, PostgreSQL runs as user `{}`, who cannot reach {}: use a data \
                 directory that user can traverse (for example GATEWAY_DATA_DIR=/var/lib/uipath-gateway)",
                user.name,
                parent.display()
            );
        }
        Ok(())
    }

    /// Runs `initdb` with password authentication for `superuser`, then appends `conf`
    /// to `postgresql.conf`. The server listens on 127.0.0.1 only, with no Unix socket.
    pub fn init(
        &self,
        superuser: &str,
        password: &SecretString,
        sync: bool,
        conf: &[(&str, &str)],
    ) -> anyhow::Result<()> {
        if self.dir.exists() {
            // A directory without PG_VERSION is what an interrupted initdb leaves.
            std::fs::remove_dir_all(&self.dir)
                .context("removing an unfinished cluster directory")?;
        }
        std::fs::create_dir_all(&self.dir)?;
        self.give_away(&self.dir, 0o700)?;
        let pwfile = self.dir.with_extension("initpw");
        {
            let mut f = std::fs::File::create(&pwfile)?;
            f.write_all(password.expose_secret().as_bytes())?;
        }
        self.give_away(&pwfile, 0o600)?;
        let mut cmd = self.command(self.bins.program("initdb"));
        cmd.arg("-D").arg(&self.dir).arg("-U").arg(superuser);
        cmd.arg(format!("--pwfile={}", pwfile.display()));
        cmd.args(["-A", "scram-sha-256", "-E", "UTF8", "--no-locale"]);
        if !sync {
            cmd.arg("--no-sync");
        }
        let out = cmd.output().context("running initdb");
        let _ = std::fs::remove_file(&pwfile);
        check("initdb", out?)?;
        let mut lines = String::from("\n# Written by uipath-gateway.\n");
        lines.push_str("listen_addresses = '127.0.0.1'\nunix_socket_directories = ''\n");
        for (k, v) in conf {
            lines.push_str(&format!("{k} = {v}\n"));
        }
        std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.join("postgresql.conf"))?
            .write_all(lines.as_bytes())?;
        Ok(())
    }

    /// The port of a server already running on this cluster, if any.
    pub fn running_port(&self) -> Option<u16> {
        let pid_file = std::fs::read_to_string(self.dir.join("postmaster.pid")).ok()?;
        let mut lines = pid_file.lines();
        let pid: i32 = lines.next()?.trim().parse().ok()?;
        let port: u16 = lines.nth(2)?.trim().parse().ok()?;
        let alive = process_alive(pid);
        // The pid may have been reused by another program after a crash.
        let is_postgres = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|c| String::from_utf8_lossy(&c).contains("postgres"))
            .unwrap_or(!Path::new("/proc/self").exists());
        (alive && is_postgres).then_some(port)
    }

    /// Starts the server on `port` and waits until it accepts connections.
    pub fn start(&self, port: u16) -> anyhow::Result<()> {
        if self.running_port().is_none() {
            // A lock file left by a crash, whose pid is gone or belongs to another program.
            let _ = std::fs::remove_file(self.dir.join("postmaster.pid"));
        }
        let log = self.dir.join("server.log");
        let mut last = None;
        // After a crash, old backends may hold shared memory for a moment: retry.
        for attempt in 0..3 {
            if attempt > 0 {
                std::thread::sleep(Duration::from_secs(1));
            }
            let out = self
                .command(self.bins.program("pg_ctl"))
                .arg("start")
                .arg("-D")
                .arg(&self.dir)
                .arg("-l")
                .arg(&log)
                .args(["-w", "-t", "60", "-s", "-o"])
                .arg(format!("-p {port}"))
                .output()
                .context("running pg_ctl start")?;
            match check("pg_ctl start", out) {
                Ok(()) => return Ok(()),
                Err(e) => last = Some(e),
            }
        }
        let tail = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = tail.lines().rev().take(5).collect();
        Err(last.expect("at least one attempt")).with_context(|| {
            format!(
                "PostgreSQL did not start; end of {}: {}",
                log.display(),
                tail.join(" | ")
            )
        })
    }

    /// Stops the server (fast shutdown) and waits for it. A stopped server is fine.
    pub fn stop(&self) -> anyhow::Result<()> {
        if self.running_port().is_none() {
            return Ok(());
        }
        let out = self
            .command(self.bins.program("pg_ctl"))
            .arg("stop")
            .arg("-D")
            .arg(&self.dir)
            .args(["-m", "fast", "-w", "-t", "60", "-s"])
            .output()
            .context("running pg_ctl stop")?;
        check("pg_ctl stop", out)
    }

    /// A command that runs as the server's user, from `/` (our cwd may be unreachable to it).
    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir("/").env("LC_ALL", "C");
        if let Some(user) = &self.run_as {
            cmd.uid(user.uid.as_raw()).gid(user.gid.as_raw());
            cmd.env("HOME", &user.dir).env("USER", &user.name);
        }
        cmd
    }

    /// Hands a path to the server's user when we are root, with `mode`.
    fn give_away(&self, path: &Path, mode: u32) -> anyhow::Result<()> {
        if let Some(user) = &self.run_as {
            chown(path, Some(user.uid.as_raw()), Some(user.gid.as_raw()))
                .with_context(|| format!("giving {} to {}", path.display(), user.name))?;
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
        Ok(())
    }
}

fn check(what: &str, out: Output) -> anyhow::Result<()> {
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    bail!(
        "{what} failed ({}): {} {}",
        out.status,
        stderr.trim(),
        stdout.trim()
    )
}

/// True if `pid` runs. A zombie (exited, not yet reaped, as happens under a PID 1
/// that does not reap) counts as gone.
pub fn process_alive(pid: i32) -> bool {
    let exists = match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) | Err(nix::errno::Errno::EPERM) => true,
        Err(_) => false,
    };
    let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| rest.starts_with('Z')))
        .unwrap_or(false);
    exists && !zombie
}

/// Picks a free TCP port on 127.0.0.1.
pub fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

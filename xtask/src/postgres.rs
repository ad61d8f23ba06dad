//! A private PostgreSQL instance for tests and benchmarks: `initdb` in a
//! temporary directory owned by an unprivileged user, `pg_ctl start` on a
//! free loopback port (its Unix socket in the same directory), stopped
//! and removed when the [`Instance`] drops, or when the process that
//! started it dies, even by `kill -9`: a small guard shell waits on a pipe
//! from this process and cleans up when the pipe closes.
//!
//! `cargo xtask test` starts one for the whole run (installing Debian's
//! `postgresql` package first when `initdb` is missing) and hands its URL
//! to the tests in [`URL_ENV`]. The test helper of foundation-services
//! includes this file (`#[path]`) to start its own when the variable is
//! absent, so that `cargo test` alone runs the PostgreSQL tests too.
//!
//! Standard library only, so that both can include it.

#![allow(dead_code, unreachable_pub)]

use std::{
    io::Write,
    net::{Ipv4Addr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{SystemTime, UNIX_EPOCH},
};

/// The environment variable that hands a server's URL to the tests.
pub const URL_ENV: &str = "MABEAM_TEST_POSTGRES_URL";

/// The command that installs PostgreSQL, named in errors.
pub const INSTALL: &str = "apt-get install -y postgresql";

/// A running private PostgreSQL server.
#[derive(Debug)]
pub struct Instance {
    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub url: String,
    /// Its loopback port.
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
    /// The unprivileged user it runs as (when this process is root).
    user: Option<String>,
    guard: Option<Child>,
}

/// The directory holding `initdb` and `pg_ctl`: Debian's
/// `/usr/lib/postgresql/<version>/bin` (the newest), or `PATH`.
pub fn find_bindir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            (bin.join("initdb").exists() && bin.join("pg_ctl").exists()).then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .find(|dir| dir.join("initdb").exists() && dir.join("pg_ctl").exists())
    })
}

/// Installs Debian's `postgresql` package (running `apt-get update` first
/// when the install fails), as root; elsewhere fails naming the command.
pub fn install() -> Result<(), String> {
    if !is_root() {
        return Err(format!(
            "PostgreSQL (initdb, pg_ctl) is not installed and this user cannot install it: \
             run `sudo {INSTALL}`"
        ));
    }
    let apt = |args: &[&str]| {
        eprintln!("postgres: apt-get {}", args.join(" "));
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    if apt(&["install", "-y", "postgresql"])
        || (apt(&["update"]) && apt(&["install", "-y", "postgresql"]))
    {
        Ok(())
    } else {
        Err(format!("`{INSTALL}` failed"))
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
        .unwrap_or(false)
}

fn id_of(user: &str, flag: &str) -> Option<u32> {
    let out = Command::new("id").args([flag, user]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|e| format!("finding a free port: {e}"))
}

impl Instance {
    /// Installs PostgreSQL when `initdb` is missing (see [`install`]),
    /// then starts a fresh instance: what `cargo xtask test` and the
    /// benchmark run.
    pub fn start_installing() -> Result<Instance, String> {
        if find_bindir().is_none() {
            eprintln!("postgres: initdb not found: installing PostgreSQL ({INSTALL})");
            install()?;
        }
        Instance::start()
    }

    /// Starts a fresh instance: fails (naming [`INSTALL`]) when PostgreSQL
    /// is not installed.
    pub fn start() -> Result<Instance, String> {
        let bin = find_bindir().ok_or_else(|| {
            format!(
                "PostgreSQL is not installed (no initdb/pg_ctl under /usr/lib/postgresql \
                 or on PATH): run `{INSTALL}`, or run the tests with `cargo xtask test`, \
                 which installs it"
            )
        })?;
        let user = if is_root() {
            Some(
                ["postgres", "nobody"]
                    .into_iter()
                    .find(|user| id_of(user, "-u").is_some())
                    .ok_or("running as root, and neither user postgres nor nobody exists")?
                    .to_owned(),
            )
        } else {
            None
        };
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!(
            "mabeam-pg-{}-{}",
            std::process::id(),
            nanos % 1_000_000_000
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let mut instance = Instance {
            url: String::new(),
            port: 0,
            dir,
            bin,
            user,
            guard: None,
        };
        if let Some(user) = &instance.user {
            let uid = id_of(user, "-u");
            let gid = id_of(user, "-g");
            std::os::unix::fs::chown(&instance.dir, uid, gid)
                .map_err(|e| format!("chown {} to {user}: {e}", instance.dir.display()))?;
        }
        // The guard first: whatever fails next, the directory goes.
        instance.guard = Some(instance.spawn_guard()?);
        instance.run(
            "initdb",
            &[
                "-D",
                &instance.data().to_string_lossy(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )?;
        // A port taken between our probe and the server's bind: try again.
        let mut last = String::new();
        for _ in 0..5 {
            instance.port = free_port()?;
            match instance.pg_ctl_start() {
                Ok(()) => {
                    instance.url =
                        format!("postgres://postgres@127.0.0.1:{}/postgres", instance.port);
                    return Ok(instance);
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The server's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// The temporary directory (data, socket, log).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `command` from the server's bindir, as the unprivileged user.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        match &self.user {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(path);
                command
            }
            None => Command::new(path),
        }
    }

    fn run(&self, program: &str, args: &[&str]) -> Result<(), String> {
        let out = self
            .command(program)
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("running {program}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{program} {} failed ({}): {}{}\n{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                self.log()
            ))
        }
    }

    fn pg_ctl_start(&self) -> Result<(), String> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=400 \
             -c fsync=on -c synchronous_commit=on",
            self.port,
            self.dir.display()
        );
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data().to_string_lossy(),
                "-l",
                &self.dir.join("server.log").to_string_lossy(),
                "-o",
                &options,
                "-w",
                "-t",
                "120",
                "start",
            ],
        )
    }

    /// Stops the server (fast shutdown: sessions are cut), keeping its
    /// data: [`start_again`](Self::start_again) brings it back.
    pub fn stop(&self) -> Result<(), String> {
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data().to_string_lossy(),
                "-m",
                "fast",
                "-w",
                "stop",
            ],
        )
    }

    /// Starts the stopped server again, on the same port.
    pub fn start_again(&self) -> Result<(), String> {
        self.pg_ctl_start()
    }

    /// Restarts the server (fast: every session is cut).
    pub fn restart(&self) -> Result<(), String> {
        self.stop()?;
        self.start_again()
    }

    /// The guard shell: reads its stdin (our pipe) to the end, then stops
    /// the server and removes the directory.
    fn spawn_guard(&self) -> Result<Child, String> {
        let pg_ctl = self.bin.join("pg_ctl");
        let as_user = match &self.user {
            Some(user) => format!("runuser -u {user} -- "),
            None => String::new(),
        };
        let script = format!(
            "cat >/dev/null; {as_user}'{}' -D '{}' -m immediate -w stop >/dev/null 2>&1; rm -rf '{}'",
            pg_ctl.display(),
            self.data().display(),
            self.dir.display()
        );
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting the cleanup guard: {e}"))
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(mut guard) = self.guard.take() {
            // Closing the pipe tells the guard to clean up; wait for it.
            if let Some(mut stdin) = guard.stdin.take() {
                let _ = stdin.flush();
            }
            let _ = guard.wait();
        }
    }
}

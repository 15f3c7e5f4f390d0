//! One server process of a multi-process test topology (a Sentinel
//! topology's data nodes and sentinels, a cluster's nodes): started on a
//! free port in its own directory, ready once it answers `PING`, killed on
//! drop. [`super::RedisServer`] is the single-server counterpart.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use super::{HarnessError, READY_TIMEOUT, START_ATTEMPTS, log_tail, spawn_server};

/// Connect, read and write timeout of every inspection connection.
pub(super) const IO_TIMEOUT: Duration = Duration::from_millis(500);

/// A sync connection with short timeouts, errors as text.
pub(super) fn connect(url: &str) -> Result<redis::Connection, String> {
    let open = || -> redis::RedisResult<redis::Connection> {
        let conn = redis::Client::open(url)?.get_connection_with_timeout(IO_TIMEOUT)?;
        conn.set_read_timeout(Some(IO_TIMEOUT))?;
        conn.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(conn)
    };
    open().map_err(|e| e.to_string())
}

/// One `redis-server` process.
#[derive(Debug)]
pub(super) struct Process {
    bin: String,
    pub(super) port: u16,
    /// Its own directory: working directory, log, any config file.
    dir: PathBuf,
    /// Everything after the binary.
    args: Vec<OsString>,
    /// Where readiness `PING`s go, with the password if any.
    ping_url: String,
    child: Option<Child>,
}

impl Process {
    /// Starts `bin` with `args(port)` in `dir` on a port from `pick_port`,
    /// retrying on a fresh port if it does not come up (a lost race for
    /// the port). `password`: what the readiness `PING` logs in with.
    pub(super) fn start_on_free_port(
        bin: &str,
        dir: &Path,
        password: Option<&str>,
        pick_port: impl Fn() -> std::io::Result<u16>,
        args: impl Fn(u16) -> Result<Vec<OsString>, HarnessError>,
    ) -> Result<Self, HarnessError> {
        std::fs::create_dir_all(dir)?;
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            let port = pick_port()?;
            let mut process = Self {
                bin: bin.to_string(),
                port,
                dir: dir.to_path_buf(),
                args: args(port)?,
                ping_url: match password {
                    Some(password) => {
                        format!("redis://:{}@127.0.0.1:{port}", percent_encode(password))
                    }
                    None => format!("redis://127.0.0.1:{port}"),
                },
                child: None,
            };
            match process.spawn_and_wait() {
                Ok(()) => return Ok(process),
                Err(e @ HarnessError::NotInstalled { .. }) => return Err(e),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| HarnessError::DidNotStart {
            port: 0,
            reason: "no attempt was made".into(),
        }))
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("redis.log")
    }

    /// Errors before the config is loaded (a refused directive) go here.
    fn stderr_path(&self) -> PathBuf {
        self.dir.join("stderr.log")
    }

    /// The end of its log and of its stderr, for failure messages.
    pub(super) fn log_tail(&self) -> String {
        log_tail(&[&self.log_path(), &self.stderr_path()])
    }

    /// Starts the process with its `args` and waits until it answers
    /// `PING`.
    fn spawn_and_wait(&mut self) -> Result<(), HarnessError> {
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.stderr_path())?;
        let mut command = Command::new(&self.bin);
        command
            .args(&self.args)
            .current_dir(&self.dir)
            .stderr(stderr);
        self.child = Some(spawn_server(&mut command, &self.bin)?);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let answer = connect(&self.ping_url).and_then(|mut conn| {
                redis::cmd("PING")
                    .query::<String>(&mut conn)
                    .map_err(|e| e.to_string())
            });
            if answer.is_ok() {
                return Ok(());
            }
            if !self.is_running() {
                self.child = None;
                return Err(self.did_not_start("the process exited"));
            }
            if Instant::now() > deadline {
                self.stop();
                return Err(self.did_not_start(&format!(
                    "it did not answer PING within {READY_TIMEOUT:?} (last: {})",
                    answer.err().unwrap_or_default()
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops it if it runs and starts it again on the same port.
    pub(super) fn restart(&mut self) -> Result<(), HarnessError> {
        self.stop();
        self.spawn_and_wait()
    }

    /// Whether it was started and not stopped (it may have died since).
    pub(super) fn is_started(&self) -> bool {
        self.child.is_some()
    }

    pub(super) fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// SIGKILL, then wait for the process to be gone. Idempotent.
    pub(super) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn did_not_start(&self, what: &str) -> HarnessError {
        HarnessError::DidNotStart {
            port: self.port,
            reason: format!("{what}; log tail: {}", self.log_tail()),
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The arguments every data node starts with: loopback only, persistence
/// off, in the foreground, working and logging in `dir`. Only directives
/// Redis 7.0 and Valkey 8 both accept.
pub(super) fn server_args(port: u16, dir: &Path) -> Vec<OsString> {
    let port = port.to_string();
    #[rustfmt::skip]
    let flags = [
        "--port", &port,
        "--bind", "127.0.0.1",
        "--save", "",
        "--appendonly", "no",
        "--daemonize", "no",
        "--protected-mode", "yes",
        // Start a full sync at once instead of waiting 5 s for more
        // replicas.
        "--repl-diskless-sync-delay", "0",
    ];
    let mut args: Vec<OsString> = flags.into_iter().map(OsString::from).collect();
    args.extend([
        "--dir".into(),
        dir.into(),
        "--logfile".into(),
        dir.join("redis.log").into(),
    ]);
    args
}

/// Percent-encodes everything but RFC 3986's unreserved characters, for a
/// password in a URL's userinfo.
pub(super) fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The ports of the processes in `nodes` that were not stopped.
pub(super) fn live_ports(nodes: &[Process]) -> Vec<u16> {
    nodes
        .iter()
        .filter(|node| node.is_started())
        .map(|node| node.port)
        .collect()
}

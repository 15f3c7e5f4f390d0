//! What the configured server binary is and was built with (its version,
//! TLS support), found out once by running it.

use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;

use std::time::{Duration, Instant};

use super::{
    HarnessError, READY_TIMEOUT, START_ATTEMPTS, answers_ping, free_port, log_tail, server_bin,
};

/// What the configured server binary is and what it was compiled with,
/// found out by running it (see [`ServerBuild::detect`]).
///
/// ```no_run
/// use redis_runtime::testing::server_build;
///
/// let build = server_build();
/// if !build.supports_tls() {
///     println!("NOT APPLICABLE: {} ({}) was built without TLS", build.bin, build.version);
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerBuild {
    /// The binary as the harness runs it (see [`server_bin`]).
    pub bin: String,
    /// Its `--version` up to the version number, e.g. `Redis server v=7.0.15`
    /// or `Valkey server v=8.1.8`.
    pub version: String,
    /// Whether it can serve TLS.
    pub tls: TlsSupport,
}

/// Whether a server build can serve TLS; see [`ServerBuild::detect`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsSupport {
    /// TLS is compiled in: given a TLS port without a certificate, the
    /// server refused for want of the certificate (or started).
    Supported,
    /// TLS is not compiled in: the server refused the TLS port itself.
    NotCompiledIn {
        /// The server's own words, e.g. `Failed finding TLS support.`.
        evidence: String,
    },
}

/// Log lines of a build that has TLS but was given no certificate (Redis
/// 6.0 to 7.x, Valkey 7 and 8).
const TLS_PRESENT: &[&str] = &["Failed to configure TLS", "No tls-cert-file configured"];
/// Log lines of a build without TLS: Redis 7.2+ and Valkey (TLS is a
/// connection type that was not built, or a module that was not loaded)…
const TLS_ABSENT: &[&str] = &["Failed finding TLS support", "not built with TLS support"];
/// …and Redis before 7.2, where `tls-port` is then an unknown directive.
const UNKNOWN_DIRECTIVE: &str = "Bad directive";

impl ServerBuild {
    /// The configured binary's build, probed once per process and cached;
    /// panics with [`HarnessError`]'s message if the probe fails, so a test
    /// that asks never skips on a probe that went wrong.
    pub fn detect() -> &'static ServerBuild {
        static BUILD: OnceLock<Result<ServerBuild, String>> = OnceLock::new();
        match BUILD.get_or_init(|| Self::try_detect().map_err(|e| e.to_string())) {
            Ok(build) => build,
            Err(e) => panic!("{e}"),
        }
    }

    /// Probes the configured binary, uncached.
    ///
    /// It runs `--version`, then starts the binary briefly with a TLS port
    /// and no certificate, on fresh loopback ports with persistence off,
    /// and waits (polling, at most 10 s) for it to exit or answer `PING`:
    ///
    /// - it refuses the TLS port itself (`Failed finding TLS support`, or
    ///   `tls-port` is a `Bad directive`): [`TlsSupport::NotCompiledIn`];
    /// - it refuses for want of a certificate (`Failed to configure TLS`)
    ///   or starts: [`TlsSupport::Supported`];
    /// - anything else (another exit, no answer in time, a spawn error):
    ///   [`HarnessError::ProbeFailed`] with the log tail. A build that
    ///   works is never reported as one without TLS.
    pub fn try_detect() -> Result<ServerBuild, HarnessError> {
        let bin = server_bin();
        let version = server_version(&bin)?;
        let mut unclear = String::new();
        // An exit for another reason (a port taken between our probe and
        // its bind) is retried on fresh ports.
        for _ in 0..START_ATTEMPTS {
            match probe_tls(&bin)? {
                Ok(tls) => return Ok(ServerBuild { bin, version, tls }),
                Err(reason) => unclear = reason,
            }
        }
        Err(HarnessError::ProbeFailed {
            bin,
            reason: unclear,
        })
    }

    /// Whether the build can serve TLS.
    pub fn supports_tls(&self) -> bool {
        self.tls == TlsSupport::Supported
    }
}

/// [`ServerBuild::detect`]: the configured binary's build, probed once.
pub fn server_build() -> &'static ServerBuild {
    ServerBuild::detect()
}

/// Whether the configured binary was built with TLS; see
/// [`ServerBuild::detect`] for how it is decided. Panics if that cannot be
/// told, rather than let a TLS test skip for the wrong reason.
pub fn server_supports_tls() -> bool {
    server_build().supports_tls()
}

/// `bin --version`, cut after the `v=…` word.
fn server_version(bin: &str) -> Result<String, HarnessError> {
    let output = match Command::new(bin)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
    {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(HarnessError::NotInstalled {
                bin: bin.to_string(),
            });
        }
        Err(e) => return Err(e.into()),
    };
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text.lines().next().unwrap_or("").trim();
    if !output.status.success() || line.is_empty() {
        return Err(HarnessError::ProbeFailed {
            bin: bin.to_string(),
            reason: format!(
                "`--version` {}: {:?}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        });
    }
    let mut words = Vec::new();
    for word in line.split_whitespace() {
        words.push(word);
        if word.starts_with("v=") {
            break;
        }
    }
    Ok(words.join(" "))
}

/// One TLS probe: `Ok(Ok(_))` decided, `Ok(Err(reason))` unclear (worth a
/// retry), `Err(_)` a failure of the probe itself.
fn probe_tls(bin: &str) -> Result<Result<TlsSupport, String>, HarnessError> {
    let dir = tempfile::Builder::new()
        .prefix("redis-runtime-probe-")
        .tempdir()?;
    let (port, tls_port) = (free_port()?, free_port()?);
    let log = dir.path().join("server.log");
    // Errors before the config is loaded (an unknown directive) go to stderr.
    let stderr = dir.path().join("stderr.log");
    let spawned = Command::new(bin)
        .arg("--port")
        .arg(port.to_string())
        .arg("--tls-port")
        .arg(tls_port.to_string())
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .args(["--daemonize", "no", "--protected-mode", "yes"])
        .arg("--dir")
        .arg(dir.path())
        .arg("--logfile")
        .arg(&log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr)?)
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(HarnessError::NotInstalled {
                bin: bin.to_string(),
            });
        }
        Err(e) => return Err(e.into()),
    };
    let deadline = Instant::now() + READY_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if answers_ping(port) {
            // It accepted the TLS port: nothing refused it.
            let _ = child.kill();
            let _ = child.wait();
            return Ok(Ok(TlsSupport::Supported));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(HarnessError::ProbeFailed {
                bin: bin.to_string(),
                reason: format!(
                    "started with --tls-port and no certificate, it neither exited nor \
                     answered PING within 10 s; log tail: {}",
                    log_tail(&[&log, &stderr])
                ),
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ok(classify_tls_refusal(status, &[&log, &stderr]))
}

fn classify_tls_refusal(status: ExitStatus, logs: &[&Path]) -> Result<TlsSupport, String> {
    let text: String = logs
        .iter()
        .map(|path| std::fs::read_to_string(path).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    // A sign of TLS wins over a sign of its absence: never call a working
    // build one without TLS.
    if TLS_PRESENT.iter().any(|marker| text.contains(marker)) {
        return Ok(TlsSupport::Supported);
    }
    let said = |line: &str| {
        // `pid:M 26 Nov 2026 00:49:44.568 # Failed finding TLS support.`
        line.rsplit_once(" # ")
            .map_or(line, |(_, message)| message)
            .trim()
            .to_string()
    };
    if let Some(line) = text
        .lines()
        .find(|line| TLS_ABSENT.iter().any(|marker| line.contains(marker)))
    {
        return Ok(TlsSupport::NotCompiledIn {
            evidence: said(line),
        });
    }
    // `>>> 'tls-port "6380"'` then `Bad directive or wrong number of arguments`.
    if text.contains(UNKNOWN_DIRECTIVE)
        && text
            .lines()
            .any(|line| line.starts_with(">>>") && line.contains("tls-port"))
    {
        return Ok(TlsSupport::NotCompiledIn {
            evidence: "`tls-port` is an unknown directive (Bad directive)".to_string(),
        });
    }
    Err(format!(
        "started with --tls-port and no certificate, it exited ({status}) without saying \
         why in terms of TLS; log tail: {}",
        log_tail(logs)
    ))
}

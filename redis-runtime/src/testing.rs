//! A private, throwaway `redis-server` for tests and examples.
//!
//! Each [`RedisServer`] runs its own process on a free loopback port, in its
//! own temporary directory, with persistence off. It is killed when dropped.
//! Fault tests can [`RedisServer::stop`] it and [`RedisServer::restart`] it
//! on the same port, so clients can be seen to reconnect.
//!
//! A missing `redis-server` binary is a loud failure naming the install
//! command: tests never skip silently. `REDIS_SERVER_BIN` overrides the binary
//! (CI also runs the integration tests on Valkey this way).
//!
//! Some builds lack optional parts: [`server_build`] says what the configured
//! binary is and whether it was compiled with TLS, so a TLS test can report
//! itself as not applicable, by name, instead of failing or passing silently.
//!
//! Most tests start with [`RedisServer::start_with_client`]; the helpers
//! below it ([`raw_command`], [`raw_query`], [`eventually`],
//! [`blocked_clients`], …) inspect and wait on the server behind the
//! runtime's back.
//!
//! ```no_run
//! use redis_runtime::testing::{RedisServer, raw_query};
//!
//! # async fn example() {
//! let (_server, client) = RedisServer::start_with_client().await;
//! let keys: Vec<String> = raw_query(&client, &["KEYS", "*"]).await;
//! assert!(keys.is_empty());
//! # }
//! ```

use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::client::Client;
use crate::config::{Config, ConfigBuilder};
use crate::error::Context;

use process::{Process, server_args};

mod build;
mod claim_gate;
mod cluster;
mod process;
mod proxy;
mod sentinel;
mod topology;
mod wait;
pub use build::{ServerBuild, TlsSupport, server_build, server_supports_tls};
pub use claim_gate::ClaimGate;
pub(crate) use claim_gate::{Step as GateStep, pass as pass_gate};
pub use cluster::ClusterTopology;
pub use proxy::{Cut, Proxy};
pub use sentinel::{SentinelOptions, SentinelTopology};
pub use topology::{TestRedis, Topology};

/// Environment variable naming the `redis-server` binary to run.
pub const ENV_SERVER_BIN: &str = "REDIS_SERVER_BIN";

/// How long a fresh server gets to answer `PING`.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Start attempts on fresh ports: another process may take the port between
/// our probe and the server's bind.
const START_ATTEMPTS: usize = 5;

/// Why a server could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HarnessError {
    /// The binary is not installed (or `REDIS_SERVER_BIN` points nowhere).
    #[error(
        "`{bin}` was not found: install Redis (`apt-get install redis-server`) \
         or set {ENV_SERVER_BIN} to the redis-server binary"
    )]
    NotInstalled {
        /// The binary that was looked for.
        bin: String,
    },
    /// The process started but did not become ready.
    #[error("redis-server on port {port} did not start: {reason}")]
    DidNotStart {
        /// The port it was told to use.
        port: u16,
        /// What went wrong, with the tail of its log.
        reason: String,
    },
    /// An OS-level failure (temp dir, free port, spawn).
    #[error("cannot start redis-server: {0}")]
    Io(#[from] std::io::Error),
    /// [`ServerBuild::detect`] could not tell what the binary was built with.
    #[error("cannot tell what `{bin}` was built with: {reason}")]
    ProbeFailed {
        /// The binary that was probed.
        bin: String,
        /// What happened instead of a clear answer, with the tail of its log.
        reason: String,
    },
}

/// A `redis-server` process owned by a test; see the module docs.
///
/// ```no_run
/// use redis_runtime::testing::RedisServer;
///
/// let server = RedisServer::start();
/// let url = server.url(); // redis://127.0.0.1:<free port>
/// # drop(url);
/// ```
#[derive(Debug)]
pub struct RedisServer {
    /// Declared first: killed before its directory is removed.
    process: Process,
    /// Its working directory and log, removed on drop.
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts a server, panicking with an actionable message if it cannot:
    /// what tests want.
    pub fn start() -> Self {
        match Self::try_start() {
            Ok(server) => server,
            Err(e) => panic!("{e}"),
        }
    }

    /// Starts a server and connects a [`Client`] to it with
    /// [`RedisServer::config`]: the usual first line of an integration
    /// test. Keep the server guard alive as long as the client is used.
    pub async fn start_with_client() -> (Self, Client) {
        let server = Self::start();
        let client = server.client().await;
        (server, client)
    }

    /// Starts a server and kills it at once: its [`url`](Self::url) and
    /// [`config`](Self::config) then name a loopback port nothing listens
    /// on, for tests of an unreachable server. [`restart`](Self::restart)
    /// brings it up on that port.
    pub fn start_stopped() -> Self {
        let mut server = Self::start();
        server.stop();
        server
    }

    /// Starts a server with extra `redis-server` arguments (e.g. a TLS
    /// port and certificates), panicking like [`RedisServer::start`]. The
    /// plain-text port stays open: readiness is checked on it.
    pub fn start_with_args(extra_args: &[String]) -> Self {
        match Self::try_start_with_args(extra_args) {
            Ok(server) => server,
            Err(e) => panic!("{e}"),
        }
    }

    /// Starts a server, reporting failure as a [`HarnessError`].
    pub fn try_start() -> Result<Self, HarnessError> {
        Self::try_start_with_args(&[])
    }

    /// Like [`RedisServer::start_with_args`], reporting failure as a [`HarnessError`].
    pub fn try_start_with_args(extra_args: &[String]) -> Result<Self, HarnessError> {
        let dir = tempfile::Builder::new()
            .prefix("redis-runtime-")
            .tempdir()?;
        let process =
            Process::start_on_free_port(&server_bin(), dir.path(), None, free_port, |port| {
                let mut args = server_args(port, dir.path());
                args.extend(extra_args.iter().map(OsString::from));
                Ok(args)
            })?;
        Ok(Self { process, _dir: dir })
    }

    /// The loopback port the server listens on.
    pub fn port(&self) -> u16 {
        self.process.port
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.process.port)
    }

    /// A [`Config`] for this server with test-friendly timeouts: a short
    /// connect timeout and few retries, so fault tests fail fast.
    pub fn config(&self) -> Config {
        Config::builder(self.url())
            .connect_timeout(Duration::from_secs(1))
            .build()
            .unwrap_or_else(|e| panic!("harness URL must be valid: {e}"))
    }

    /// A new [`Client`] for this server with [`RedisServer::config`],
    /// panicking if it cannot be made. The connection is lazy (the
    /// default), so this succeeds even while the server is stopped.
    pub async fn client(&self) -> Client {
        Client::connect(self.config())
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the test server: {e}"))
    }

    /// A new [`Client`] for this server with the config `tweak` makes of
    /// `Config::builder(self.url())` (the library's defaults, not the short
    /// connect timeout of [`RedisServer::config`]), panicking if the config
    /// is invalid or the client cannot be made.
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use redis_runtime::testing::RedisServer;
    /// # async fn example() {
    /// let server = RedisServer::start();
    /// let client = server
    ///     .client_with(|config| config.response_timeout(Duration::from_millis(200)))
    ///     .await;
    /// # drop(client);
    /// # }
    /// ```
    pub async fn client_with(&self, tweak: impl FnOnce(ConfigBuilder) -> ConfigBuilder) -> Client {
        let config = tweak(Config::builder(self.url()))
            .build()
            .unwrap_or_else(|e| panic!("invalid test config: {e}"));
        Client::connect(config)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the test server: {e}"))
    }

    /// Whether the process is running.
    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// Kills the server (SIGKILL: no goodbye to clients, like a crash) and
    /// waits for the process to be gone. Idempotent.
    pub fn stop(&mut self) {
        self.process.stop();
    }

    /// Starts the server again on the same port (stopping it first if it
    /// runs). Its data is gone: persistence is off.
    pub fn restart(&mut self) {
        if let Err(e) = self.process.restart() {
            panic!("{e}");
        }
    }
}

/// The server binary the harness runs: `REDIS_SERVER_BIN`, else
/// `redis-server` from the `PATH`.
pub fn server_bin() -> String {
    std::env::var(ENV_SERVER_BIN).unwrap_or_else(|_| "redis-server".to_string())
}

/// The last lines of the given logs, joined with ` | `.
fn log_tail(logs: &[&Path]) -> String {
    let mut lines = Vec::new();
    for path in logs {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let tail: Vec<String> = text.lines().rev().take(5).map(str::to_string).collect();
        lines.extend(tail.into_iter().rev());
    }
    lines.join(" | ")
}

/// Asks the OS for a free loopback port. The port is released before the
/// server binds it, so a race is possible; `try_start` retries on a new one.
pub fn free_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
    Ok(listener.local_addr()?.port())
}

/// One raw inline `PING`, so readiness needs no client library.
fn answers_ping(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}

/// Starts `command` (a server binary, `bin`) with no input or output
/// beyond what the caller set up: a missing binary is
/// [`HarnessError::NotInstalled`], naming the install command.
pub(crate) fn spawn_server(command: &mut Command, bin: &str) -> Result<Child, HarnessError> {
    match command.stdin(Stdio::null()).stdout(Stdio::null()).spawn() {
        Ok(child) => Ok(child),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(HarnessError::NotInstalled {
            bin: bin.to_string(),
        }),
        Err(e) => Err(e.into()),
    }
}

/// Sends one raw command (`&["HSET", "user:1", "age", "x"]`) on `client`'s
/// shared connection, panicking on failure: for tests that inspect or
/// damage data behind the runtime's back.
pub async fn raw_command(client: &Client, args: &[&str]) -> redis::Value {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let Some((name, rest)) = args.split_first() else {
        panic!("raw_command needs a command name");
    };
    let (name, rest) = (name.clone(), rest.to_vec());
    client
        .run(Context::new("test.raw", ""), |mut conn| async move {
            Ok(redis::cmd(&name).arg(&rest).query_async(&mut conn).await?)
        })
        .await
        .unwrap_or_else(|e| panic!("raw command failed: {e}"))
}

/// How many times `command` ran according to `INFO commandstats` text
/// (its `cmdstat_<command>:calls=` line; 0 when it has not run since the
/// stats were last reset). `command` is lower case, e.g. `"wait"`.
///
/// ```
/// let stats = "# Commandstats\r\ncmdstat_wait:calls=3,usec=12,usec_per_call=4.00\r\n";
/// assert_eq!(redis_runtime::testing::command_calls(stats, "wait"), 3);
/// assert_eq!(redis_runtime::testing::command_calls(stats, "set"), 0);
/// ```
pub fn command_calls(stats: &str, command: &str) -> u64 {
    let prefix = format!("cmdstat_{command}:calls=");
    stats
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next()?.trim().parse().ok())
        .unwrap_or(0)
}

/// [`command_calls`] of the server on loopback port `port`, asked on a
/// connection of its own (so nothing the client under test sends is
/// counted by the asking). Panics naming the port if it does not answer.
pub fn node_command_calls(port: u16, command: &str) -> u64 {
    let stats: String = redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .and_then(|client| client.get_connection())
        .and_then(|mut conn| redis::cmd("INFO").arg("commandstats").query(&mut conn))
        .unwrap_or_else(|e| panic!("INFO commandstats on port {port}: {e}"));
    command_calls(&stats, command)
}

/// Like [`raw_command`], with the reply converted to `T` (`i64`,
/// `Vec<String>`, `BTreeMap<String, String>`, `Option<String>`, …),
/// panicking if it does not convert.
pub async fn raw_query<T: redis::FromRedisValue>(client: &Client, args: &[&str]) -> T {
    let reply = raw_command(client, args).await;
    redis::from_redis_value(reply.clone())
        .unwrap_or_else(|e| panic!("unexpected reply to {args:?}: {reply:?} ({e})"))
}

/// How many clients the server counts as blocked (in `BLPOP`,
/// `XREADGROUP … BLOCK`, …), from `INFO clients`: for tests that wait
/// until a blocking call has reached the server. On a cluster, where
/// `INFO` goes to every node, it is the sum over the nodes
/// ([`TestRedis::blocked_clients_at`] asks the node of one key).
pub async fn blocked_clients(client: &Client) -> u64 {
    match raw_command(client, &["INFO", "clients"]).await {
        redis::Value::Map(per_node) => per_node
            .iter()
            .map(|(node, info)| {
                let info: String = redis::from_redis_value_ref(info)
                    .unwrap_or_else(|e| panic!("INFO clients of {node:?}: {e}"));
                blocked_clients_in(&info)
            })
            .sum(),
        reply => {
            let info: String = redis::from_redis_value(reply.clone())
                .unwrap_or_else(|e| panic!("unexpected reply to INFO clients: {reply:?} ({e})"));
            blocked_clients_in(&info)
        }
    }
}

/// `blocked_clients` of an `INFO clients` reply.
fn blocked_clients_in(info: &str) -> u64 {
    info.lines()
        .find_map(|line| line.trim().strip_prefix("blocked_clients:"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no blocked_clients in INFO clients: {info}"))
}

/// Creates (or resets) the ACL user `user` with `password` and every
/// permission, so tests can connect with real credentials.
pub async fn create_acl_user(client: &Client, user: &str, password: &str) {
    let password = format!(">{password}");
    raw_command(
        client,
        &["ACL", "SETUSER", user, "on", &password, "~*", "&*", "+@all"],
    )
    .await;
}

/// `SET key value` then `GET key`, as one operation named `test.set_get`
/// with the key pattern `test:{k}`: the smallest real round trip, for
/// tests of connections, faults and metrics.
pub async fn set_get(client: &Client, key: &str, value: &str) -> crate::Result<String> {
    let (key, value) = (key.to_string(), value.to_string());
    client
        .run(
            Context::new("test.set_get", "test:{k}"),
            |mut conn| async move {
                redis::cmd("SET")
                    .arg(&key)
                    .arg(&value)
                    .query_async::<()>(&mut conn)
                    .await?;
                Ok(redis::cmd("GET").arg(&key).query_async(&mut conn).await?)
            },
        )
        .await
}

/// Polls `done` every 10 ms until it returns `true`, panicking with
/// `what` if that takes longer than `limit`: the way tests wait for
/// something that happens in the background (an expiry, a reconnect, a
/// worker's progress) without guessing a sleep.
pub async fn eventually(limit: Duration, what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The environment variable that makes [`assert_snapshot`] write the
/// snapshot instead of comparing with it.
pub const ENV_BLESS: &str = "BLESS";

/// Compares `actual` with the checked-in snapshot file at `path`, or, with
/// `BLESS=1` in the environment, writes `actual` there (creating the
/// directory) so the change shows up in review as a diff of that file.
///
/// # Panics
///
/// When the snapshot is missing or differs, with the generated text and
/// the command to re-bless.
///
/// ```no_run
/// let manifest = "# Keyspace\n";
/// redis_runtime::testing::assert_snapshot(
///     std::path::Path::new("tests/snapshots/keyspace.md"),
///     manifest,
/// );
/// ```
pub fn assert_snapshot(path: &Path, actual: &str) {
    if std::env::var_os(ENV_BLESS).is_some() {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        }
        std::fs::write(path, actual).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        return;
    }
    let expected = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}; create it with {ENV_BLESS}=1", path.display()));
    assert!(
        expected == actual,
        "{} differs; if the change is intended, re-run the test with {ENV_BLESS}=1 and \
         review the diff\n--- generated ---\n{actual}",
        path.display()
    );
}

/// Now, in milliseconds since the Unix epoch: the unit of `expires_at`
/// fields and timestamp scores, for tests that set expiries.
///
/// # Panics
///
/// If the clock is before 1970 or past the year 292 million.
pub fn now_ms() -> i64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .expect("the clock is after 1970");
    i64::try_from(since_epoch.as_millis()).expect("milliseconds fit in i64")
}

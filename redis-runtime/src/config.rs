//! Connection settings: from a URL, from the environment, or a builder.
//!
//! Everything is validated up front, so a bad setting fails at start-up with
//! a message naming the setting, not at the first command. The URL (which may
//! carry a password) is parsed once and never kept as text: `Debug` shows the
//! endpoint, database and whether a password is set, nothing more.

use std::time::Duration;

use redis::IntoConnectionInfo;

use crate::error::{Error, Result};

mod env;
mod multi_host;

pub use env::*;
use multi_host::{MultiHost, multi_host_url};

/// The port a Sentinel listens on when a `redis+sentinel://` URL names none.
pub const DEFAULT_SENTINEL_PORT: u16 = 26379;

/// How reconnects back off: exponential from `min_delay`, doubling, capped at
/// `max_delay`, with jitter; after `max_retries` failed attempts the waiting
/// operations fail (and the next operation starts a fresh round).
///
/// The defaults follow the hand-written layers this replaces: first retry
/// after 50 ms, never more than 2 s between attempts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Delay before the first reconnect attempt.
    pub min_delay: Duration,
    /// Longest delay between attempts.
    pub max_delay: Duration,
    /// Attempts per reconnect round.
    pub max_retries: usize,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            min_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(2),
            max_retries: 6,
        }
    }
}

/// Durability on request: after every write the client sends `WAIT
/// replicas timeout` and the write fails with `STORAGE_NOT_REPLICATED`
/// unless at least `replicas` replicas acknowledged it in time.
///
/// What it promises: a write that succeeded had reached that many
/// replicas. What it does not: the write is not undone when too few
/// replicas answered (it is on the primary, and may or may not survive a
/// failover: re-read it). And with fewer than every replica
/// ([`AckReplicas::Count`] below the master's replicas), an acknowledged
/// write can still be lost in a failover: Sentinel may promote a replica
/// that had not acknowledged it, and in a manual failover the old master
/// keeps taking writes that a replica still attached to it acknowledges,
/// until the Sentinels re-point that replica to the new master, which
/// makes it resync in full and drop them (measured: 160 to 250 writes a
/// failover with one of two replicas awaited). [`AckReplicas::All`] closes
/// that window: the old master cannot gather every replica once one was
/// promoted away from it. Redis stays asynchronously replicated; see the
/// README's table for what each setting keeps.
///
/// On a Redis Cluster the `WAIT` goes to every primary and the fewest
/// acknowledgements count: each primary's answer covers the writes this
/// client sent it, so every primary needs `replicas` replicas (a primary
/// this client has not written to answers at once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaAcks {
    /// How many replicas must acknowledge each write.
    pub replicas: AckReplicas,
    /// How long a write waits for them (below the response timeout).
    pub timeout: Duration,
}

/// How many replicas [`ReplicaAcks`] waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AckReplicas {
    /// This many (at least 1): `REDIS_WAIT_REPLICAS=<n>`.
    Count(u32),
    /// Every replica: `REDIS_WAIT_REPLICAS=all`. The replicas attached to
    /// the master and those the Sentinels list for it, each once, less
    /// those they flag down (`s_down`, `o_down`) and one that reports
    /// itself a master (the old master after a failover, until the
    /// Sentinels re-point it), and at least one. Counted when the client
    /// finds the master, when a Sentinel announces a change among its
    /// replicas, at each `health()` and after a write too few acknowledged
    /// (at most once a second), so a replica that is gone for good stops
    /// being awaited once the Sentinels flag it down; and every `WAIT`
    /// reads the attached replicas in the same round trip, so one that
    /// attached since the last count is awaited at once. Sentinel only.
    All,
}

impl std::fmt::Display for AckReplicas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AckReplicas::Count(n) => write!(f, "{n}"),
            AckReplicas::All => f.write_str("all"),
        }
    }
}

/// Where the data lives: one address, whichever node the Sentinels name
/// as the master, or a Redis Cluster.
#[derive(Clone, PartialEq)]
pub(crate) enum Topology {
    /// The URL's host (or socket).
    Standalone,
    /// The master the Sentinels name; `connection_info` then holds only
    /// the data nodes' credentials and database.
    Sentinel(SentinelSettings),
    /// A Redis Cluster, found through these nodes of it (any of its nodes
    /// will do: the client reads the slot map from the first that
    /// answers); `connection_info` holds only the nodes' credentials.
    Cluster(Vec<(String, u16)>),
}

/// A `redis+sentinel://` URL, parsed.
#[derive(Clone, PartialEq)]
pub(crate) struct SentinelSettings {
    /// The name the Sentinels monitor the master under.
    pub(crate) master_name: String,
    /// The Sentinels' addresses, asked in this order.
    pub(crate) sentinels: Vec<(String, u16)>,
    /// Credentials for the Sentinels themselves (`REDIS_SENTINEL_*`).
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
}

/// Validated client configuration. Build one with [`Config::from_url`],
/// [`Config::from_env`] or [`Config::builder`].
///
/// ```
/// use std::time::Duration;
/// use redis_runtime::Config;
///
/// let config = Config::builder("redis://app:s3cret@127.0.0.1:6380/2")
///     .connect_timeout(Duration::from_secs(2))
///     .build()?;
/// assert_eq!(config.endpoint(), "127.0.0.1:6380");
/// assert_eq!(config.database(), 2);
/// assert!(!format!("{config:?}").contains("s3cret"));
/// # Ok::<(), redis_runtime::Error>(())
/// ```
#[derive(Clone)]
pub struct Config {
    pub(crate) connection_info: redis::ConnectionInfo,
    endpoint: String,
    tls: bool,
    /// Each connection attempt gives up after this long.
    pub connect_timeout: Duration,
    /// Each command gives up after this long once sent.
    pub response_timeout: Duration,
    /// Each operation, including any wait for a reconnect, gives up after this long.
    pub operation_timeout: Duration,
    /// Reconnect backoff.
    pub retry: RetryPolicy,
    /// Connect on first use (`true`, the default) or eagerly in `Client::connect`.
    pub lazy_connect: bool,
    /// PEM root certificate(s) to trust for `rediss://` instead of the
    /// system store (a private CA).
    pub(crate) tls_root_cert: Option<Vec<u8>>,
    /// The client certificate and key to present over TLS (mutual TLS).
    pub(crate) tls_client_identity: Option<TlsIdentity>,
    /// Writes wait for replica acknowledgements (`None`: they do not).
    pub replica_acks: Option<ReplicaAcks>,
    /// `Client::connect` fails when the server may evict keys.
    pub refuse_evicting_server: bool,
    pub(crate) topology: Topology,
}

/// Adds to the `Debug` output `$out` the settings that [`Config`] and
/// [`ConfigBuilder`] both hold (same field names), in one order; the
/// certificate only as whether it is set.
macro_rules! debug_settings {
    ($out:ident, $settings:expr) => {
        $out.field("connect_timeout", &$settings.connect_timeout)
            .field("response_timeout", &$settings.response_timeout)
            .field("operation_timeout", &$settings.operation_timeout)
            .field("retry", &$settings.retry)
            .field("lazy_connect", &$settings.lazy_connect)
            .field("replica_acks", &$settings.replica_acks)
            .field("refuse_evicting_server", &$settings.refuse_evicting_server)
            .field(
                "tls_root_cert",
                &$settings.tls_root_cert.as_ref().map(|_| "<set>"),
            )
            .field(
                "tls_client_identity",
                &$settings.tls_client_identity.as_ref().map(|_| "<set>"),
            )
    };
}

/// A client certificate (chain) and its private key, both PEM, for mutual
/// TLS. The key is a secret: no `Debug` of a config shows either.
// Read only with the `tls` feature; without it a TLS URL is refused.
#[cfg_attr(not(feature = "tls"), allow(dead_code))]
#[derive(Clone)]
pub(crate) struct TlsIdentity {
    pub(crate) cert: Vec<u8>,
    pub(crate) key: Vec<u8>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let settings = self.connection_info.redis_settings();
        let mut out = f.debug_struct("Config");
        out.field("endpoint", &self.endpoint)
            .field("tls", &self.tls);
        if let Topology::Sentinel(sentinel) = &self.topology {
            out.field("sentinel_master", &sentinel.master_name)
                .field(
                    "sentinel_username",
                    &sentinel.username.as_ref().map(|_| "<set>"),
                )
                .field(
                    "sentinel_password",
                    &sentinel.password.as_ref().map(|_| "<redacted>"),
                );
        }
        out.field("database", &settings.db())
            .field("username", &settings.username().map(|_| "<set>"))
            .field("password", &settings.password().map(|_| "<redacted>"));
        debug_settings!(out, self).finish()
    }
}

impl Config {
    /// Validates `url` and applies the default timeouts and retry policy.
    pub fn from_url(url: &str) -> Result<Self> {
        Self::builder(url).build()
    }

    /// Starts a builder for `url`; nothing is validated until [`ConfigBuilder::build`].
    pub fn builder(url: impl Into<String>) -> ConfigBuilder {
        ConfigBuilder {
            url: url.into(),
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(3),
            operation_timeout: Duration::from_secs(4),
            retry: RetryPolicy::default(),
            lazy_connect: true,
            tls_root_cert: None,
            tls_client_identity: None,
            sentinel_credentials: None,
            replica_acks: None,
            refuse_evicting_server: false,
        }
    }

    /// `host:port` (or the socket path; for Sentinel, the master's name and
    /// the Sentinels' addresses): safe to log, unlike the URL.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Whether the connection uses TLS (`rediss://`).
    pub fn tls(&self) -> bool {
        self.tls
    }

    /// The logical database number.
    pub fn database(&self) -> i64 {
        self.connection_info.redis_settings().db()
    }

    /// Whether a password is configured (the password itself is never exposed).
    pub fn has_password(&self) -> bool {
        self.connection_info.redis_settings().password().is_some()
    }

    /// The master name of a `redis+sentinel://` configuration (`None` for
    /// a single server).
    pub fn sentinel_master(&self) -> Option<&str> {
        match &self.topology {
            Topology::Sentinel(sentinel) => Some(&sentinel.master_name),
            Topology::Standalone | Topology::Cluster(_) => None,
        }
    }

    /// Whether this is a Redis Cluster configuration (`redis+cluster://`,
    /// or `rediss+cluster://` over TLS).
    pub fn is_cluster(&self) -> bool {
        matches!(self.topology, Topology::Cluster(_))
    }

    /// What answers requests, for classifying their errors.
    pub(crate) fn deployment(&self) -> crate::error::Deployment {
        if self.is_cluster() {
            crate::error::Deployment::Cluster
        } else {
            crate::error::Deployment::Server
        }
    }
}

/// Builder for [`Config`]; see [`Config::builder`].
///
/// Its `Debug` never shows the URL.
#[derive(Clone)]
pub struct ConfigBuilder {
    url: String,
    connect_timeout: Duration,
    response_timeout: Duration,
    operation_timeout: Duration,
    retry: RetryPolicy,
    lazy_connect: bool,
    tls_root_cert: Option<Vec<u8>>,
    tls_client_identity: Option<TlsIdentity>,
    /// (username, password) for the Sentinels.
    sentinel_credentials: Option<(Option<String>, String)>,
    replica_acks: Option<ReplicaAcks>,
    refuse_evicting_server: bool,
}

impl std::fmt::Debug for ConfigBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = f.debug_struct("ConfigBuilder");
        out.field("url", &"<redacted>");
        debug_settings!(out, self).finish()
    }
}

impl ConfigBuilder {
    /// Trusts these PEM root certificate(s) for `rediss://` instead of the
    /// system store: for servers whose certificate a private CA signed.
    pub fn tls_root_cert_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls_root_cert = Some(pem.into());
        self
    }

    /// Presents this PEM client certificate (chain) and private key over
    /// TLS, for servers that authenticate clients by certificate
    /// (`tls-auth-clients yes`, mutual TLS). Needs a `rediss://` URL.
    pub fn tls_client_cert_pem(
        mut self,
        cert: impl Into<Vec<u8>>,
        key: impl Into<Vec<u8>>,
    ) -> Self {
        self.tls_client_identity = Some(TlsIdentity {
            cert: cert.into(),
            key: key.into(),
        });
        self
    }

    /// Each connection attempt gives up after this long (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Each command gives up this long after it was sent (default 3 s).
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Each operation, including any wait for a reconnect, gives up after
    /// this long (default 4 s). This is what bounds a call against a server
    /// that is down: it fails with a typed error well inside 5 s.
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }

    /// Reconnect backoff (default: 50 ms doubling to 2 s, 6 attempts).
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Connect on first use (default) or eagerly.
    pub fn lazy_connect(mut self, lazy: bool) -> Self {
        self.lazy_connect = lazy;
        self
    }

    /// Credentials for the Sentinels of a `redis+sentinel://` URL, when
    /// they require a password (`requirepass` or an ACL user); the URL's
    /// own credentials are for the data nodes.
    pub fn sentinel_credentials(
        mut self,
        username: Option<String>,
        password: impl Into<String>,
    ) -> Self {
        self.sentinel_credentials = Some((username, password.into()));
        self
    }

    /// Makes every write wait until `replicas` replicas acknowledged it, for
    /// at most `timeout` (see [`ReplicaAcks`] for what that does and does
    /// not promise). A write that got fewer acknowledgements fails with
    /// `STORAGE_NOT_REPLICATED`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use redis_runtime::{AckReplicas, Config};
    ///
    /// let config = Config::builder("redis+sentinel://127.0.0.1:26379/mymaster")
    ///     .wait_for_replicas(1, Duration::from_millis(500))
    ///     .build()?;
    /// assert_eq!(config.sentinel_master(), Some("mymaster"));
    /// assert_eq!(
    ///     config.replica_acks.map(|acks| acks.replicas),
    ///     Some(AckReplicas::Count(1))
    /// );
    /// # Ok::<(), redis_runtime::Error>(())
    /// ```
    pub fn wait_for_replicas(mut self, replicas: u32, timeout: Duration) -> Self {
        self.replica_acks = Some(ReplicaAcks {
            replicas: AckReplicas::Count(replicas),
            timeout,
        });
        self
    }

    /// Makes every write wait until every replica the Sentinels know for
    /// the master acknowledged it ([`AckReplicas::All`]), for at most
    /// `timeout`: the setting that keeps every acknowledged write through a
    /// manual failover. Sentinel only (`build` refuses it otherwise).
    ///
    /// ```
    /// use std::time::Duration;
    /// use redis_runtime::{AckReplicas, Config};
    ///
    /// let config = Config::builder("redis+sentinel://127.0.0.1:26379/mymaster")
    ///     .wait_for_all_replicas(Duration::from_millis(500))
    ///     .build()?;
    /// assert_eq!(config.replica_acks.map(|acks| acks.replicas), Some(AckReplicas::All));
    /// assert!(Config::builder("redis://127.0.0.1")
    ///     .wait_for_all_replicas(Duration::from_millis(500))
    ///     .build()
    ///     .is_err());
    /// # Ok::<(), redis_runtime::Error>(())
    /// ```
    pub fn wait_for_all_replicas(mut self, timeout: Duration) -> Self {
        self.replica_acks = Some(ReplicaAcks {
            replicas: AckReplicas::All,
            timeout,
        });
        self
    }

    /// With `true`, `Client::connect` connects at once and fails with
    /// `STORAGE_CONFIG` when the server's `maxmemory-policy` may evict keys
    /// (`allkeys-*`, `volatile-*`): eviction can drop an index key or an
    /// entity hash on its own. Default `false`: `Client::health` reports it
    /// in `warnings` and the client logs it once.
    pub fn refuse_evicting_server(mut self, refuse: bool) -> Self {
        self.refuse_evicting_server = refuse;
        self
    }

    /// Validates everything and produces the [`Config`].
    ///
    /// Errors: [`Error::UrlMissing`] for an empty URL; [`Error::Config`] for
    /// a malformed URL, an unsupported scheme, a bad database number, `rediss://`
    /// without the `tls` feature, a zero timeout, a Sentinel URL without a
    /// master name, or replica acknowledgements that could never complete.
    ///
    /// A Sentinel URL has the form
    /// `redis+sentinel://[[user]:password@]host[:port][,host[:port]…]/master_name[/db]`:
    /// the hosts are the Sentinels (port 26379 unless given), the
    /// credentials and database are the data nodes'.
    ///
    /// ```
    /// use redis_runtime::Config;
    ///
    /// let config = Config::from_url("redis+sentinel://:pw@10.0.0.1,10.0.0.2:26380/orders/2")?;
    /// assert_eq!(config.sentinel_master(), Some("orders"));
    /// assert_eq!(config.endpoint(), "sentinel/orders (10.0.0.1:26379,10.0.0.2:26380)");
    /// assert_eq!(config.database(), 2);
    /// assert!(config.has_password());
    /// # Ok::<(), redis_runtime::Error>(())
    /// ```
    pub fn build(self) -> Result<Config> {
        let url = self.url.trim();
        if url.is_empty() {
            return Err(Error::UrlMissing);
        }
        self.check_settings()?;
        let multi_host = multi_host_url(url)?;
        let awaits_all = self
            .replica_acks
            .is_some_and(|acks| acks.replicas == AckReplicas::All);
        if awaits_all && !matches!(multi_host, Some(MultiHost::Sentinel(_))) {
            return Err(Error::Config(format!(
                "{ENV_WAIT_REPLICAS}=all needs a redis+sentinel:// URL: the Sentinels know how many replicas the master has; on one server or a cluster, give the number of replicas to wait for"
            )));
        }
        match multi_host {
            Some(MultiHost::Sentinel(rest)) => {
                let rest = rest.to_string();
                return self.build_sentinel(&rest);
            }
            Some(MultiHost::Cluster { rest, tls }) => {
                let rest = rest.to_string();
                return self.build_cluster(&rest, tls);
            }
            None => {}
        }
        if self.sentinel_credentials.is_some() {
            return Err(Error::Config(
                "Sentinel credentials were given for a URL without Sentinel: use redis+sentinel://"
                    .into(),
            ));
        }
        let parsed = url::Url::parse(url)
            .map_err(|e| Error::Config(format!("the Redis URL is malformed: {e}")))?;
        let (endpoint, tls) = match parsed.scheme() {
            "redis" | "rediss" | "valkey" | "valkeys" => {
                let host = parsed.host_str().filter(|h| !h.is_empty()).ok_or_else(|| {
                    Error::Config("the Redis URL has no host, e.g. redis://127.0.0.1:6379".into())
                })?;
                let port = parsed.port().unwrap_or(6379);
                let tls = matches!(parsed.scheme(), "rediss" | "valkeys");
                (format!("{host}:{port}"), tls)
            }
            "unix" | "redis+unix" => (parsed.path().to_string(), false),
            other => {
                return Err(Error::Config(format!(
                    "unsupported URL scheme `{other}`: use redis://, rediss:// (TLS), redis+sentinel:// or unix://"
                )));
            }
        };
        self.check_tls(tls, "rediss://")?;
        if matches!(parsed.scheme(), "redis" | "rediss" | "valkey" | "valkeys") {
            let db = parsed.path().trim_matches('/');
            if !db.is_empty() && db.parse::<u32>().is_err() {
                return Err(Error::Config(format!(
                    "the database in the Redis URL must be a number like /0, got /{db}"
                )));
            }
        }
        // redis-rs error text for a URL names the problem, never the URL.
        let connection_info = parsed
            .into_connection_info()
            .map_err(|e| Error::Config(format!("the Redis URL was rejected: {e}")))?;
        Ok(self.into_config(connection_info, endpoint, tls, Topology::Standalone))
    }

    /// The settings every topology shares: timeouts, backoff, acknowledgements.
    fn check_settings(&self) -> Result<()> {
        for (name, value) in [
            ("connect timeout", self.connect_timeout),
            ("response timeout", self.response_timeout),
            ("operation timeout", self.operation_timeout),
        ] {
            if value.is_zero() {
                return Err(Error::Config(format!(
                    "the {name} must be greater than zero"
                )));
            }
        }
        if self.retry.min_delay > self.retry.max_delay {
            return Err(Error::Config(
                "the retry min delay must not exceed the retry max delay".into(),
            ));
        }
        if let Some(acks) = self.replica_acks {
            if acks.replicas == AckReplicas::Count(0) {
                return Err(Error::Config(
                    "waiting for 0 replicas waits for nothing: leave replica acknowledgements off instead".into(),
                ));
            }
            // WAIT 0 would block forever; a wait the response timeout cuts
            // short would report a dropped link instead of the count.
            if acks.timeout.is_zero() || acks.timeout >= self.response_timeout {
                return Err(Error::Config(format!(
                    "the replica acknowledgement timeout must be above zero and below the response timeout ({} ms), got {} ms",
                    self.response_timeout.as_millis(),
                    acks.timeout.as_millis()
                )));
            }
        }
        Ok(())
    }

    /// The TLS settings against the URL: a root certificate needs a TLS URL
    /// (`secure` names its scheme), and TLS needs the `tls` feature.
    fn check_tls(&self, tls: bool, secure: &str) -> Result<()> {
        if self.tls_root_cert.is_some() && !tls {
            return Err(Error::Config(format!(
                "a TLS root certificate was given for a plain-text URL: use {secure}"
            )));
        }
        if self.tls_client_identity.is_some() && !tls {
            return Err(Error::Config(format!(
                "a TLS client certificate was given for a plain-text URL: use {secure}"
            )));
        }
        if tls && !cfg!(feature = "tls") {
            return Err(Error::Config(format!(
                "{secure} (TLS) needs the `tls` feature of redis-runtime"
            )));
        }
        Ok(())
    }

    fn into_config(
        self,
        connection_info: redis::ConnectionInfo,
        endpoint: String,
        tls: bool,
        topology: Topology,
    ) -> Config {
        Config {
            connection_info,
            endpoint,
            tls,
            connect_timeout: self.connect_timeout,
            response_timeout: self.response_timeout,
            operation_timeout: self.operation_timeout,
            retry: self.retry,
            lazy_connect: self.lazy_connect,
            tls_root_cert: self.tls_root_cert,
            tls_client_identity: self.tls_client_identity,
            replica_acks: self.replica_acks,
            refuse_evicting_server: self.refuse_evicting_server,
            topology,
        }
    }
}

/// How long a write waits for replica acknowledgements when
/// `REDIS_WAIT_REPLICAS` is set without `REDIS_WAIT_TIMEOUT`.
pub const DEFAULT_WAIT_TIMEOUT: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from_vars(vars: &[(&str, &str)]) -> Result<Config> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    /// The `CONFIG` error `url` gets, which must say `expected`.
    fn refused(url: &str, expected: &str) -> String {
        let msg = config_error(Config::from_url(url));
        assert!(msg.contains(expected), "{url}: {msg}");
        msg
    }

    fn config_error(result: Result<Config>) -> String {
        match result {
            Err(Error::Config(message)) => message,
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    /// The config error for `url` with one more variable, `name` = `value`.
    fn var_error(url: &str, name: &str, value: &str) -> String {
        config_error(from_vars(&[(ENV_URL, url), (name, value)]))
    }

    #[test]
    fn missing_or_empty_url_has_stable_code() {
        for vars in [&[][..], &[(ENV_URL, "")][..], &[(ENV_URL, "   ")][..]] {
            let err = from_vars(vars).expect_err("no URL must fail");
            assert_eq!(err.code(), "STORAGE_REDIS_URL_MISSING");
        }
    }

    #[test]
    fn env_knobs_are_applied() {
        let config = from_vars(&[
            (ENV_URL, "redis://127.0.0.1:7000/3"),
            (ENV_CONNECT_TIMEOUT, "250ms"),
            (ENV_RESPONSE_TIMEOUT, "2s"),
            (ENV_OPERATION_TIMEOUT, "4s"),
            (ENV_MAX_RETRIES, "20"),
            (ENV_RETRY_MIN_DELAY, "100ms"),
            (ENV_RETRY_MAX_DELAY, "3s"),
            (ENV_LAZY_CONNECT, "false"),
        ])
        .expect("valid env");
        assert_eq!(config.endpoint(), "127.0.0.1:7000");
        assert_eq!(config.database(), 3);
        assert_eq!(config.connect_timeout, Duration::from_millis(250));
        assert_eq!(config.response_timeout, Duration::from_secs(2));
        assert_eq!(config.operation_timeout, Duration::from_secs(4));
        assert_eq!(
            config.retry,
            RetryPolicy {
                min_delay: Duration::from_millis(100),
                max_delay: Duration::from_secs(3),
                max_retries: 20
            }
        );
        assert!(!config.lazy_connect);
    }

    #[test]
    fn defaults_match_the_documented_values() {
        let config = Config::from_url("redis://localhost").expect("valid");
        assert_eq!(config.endpoint(), "localhost:6379");
        assert_eq!(config.connect_timeout, Duration::from_secs(5));
        assert_eq!(config.retry.min_delay, Duration::from_millis(50));
        assert_eq!(config.retry.max_delay, Duration::from_secs(2));
        assert!(config.lazy_connect);
        assert!(!config.has_password());
    }

    #[test]
    fn acl_credentials_and_database_are_parsed() {
        let config = Config::from_url("redis://app:pw@10.0.0.1:6380/5").expect("valid");
        let settings = config.connection_info.redis_settings();
        assert_eq!(settings.username(), Some("app"));
        assert_eq!(settings.password(), Some("pw"));
        assert_eq!(config.database(), 5);
        assert!(config.has_password());
    }

    #[test]
    fn bad_env_values_name_the_variable() {
        let msg = var_error("redis://localhost", ENV_CONNECT_TIMEOUT, "soon");
        assert!(msg.contains(ENV_CONNECT_TIMEOUT), "{msg}");
        let msg = var_error("redis://localhost", ENV_MAX_RETRIES, "-1");
        assert!(msg.contains(ENV_MAX_RETRIES), "{msg}");
        let msg = var_error("redis://localhost", ENV_LAZY_CONNECT, "maybe");
        assert!(msg.contains(ENV_LAZY_CONNECT), "{msg}");
    }

    #[test]
    fn malformed_urls_say_what_is_wrong() {
        let msg = config_error(Config::from_url("not a url"));
        assert!(msg.contains("malformed"), "{msg}");
        let msg = config_error(Config::from_url("http://localhost:6379"));
        assert!(msg.contains("unsupported URL scheme `http`"), "{msg}");
        let msg = config_error(
            Config::builder("redis+cluster://10.0.0.1:7000,10.0.0.2:7000")
                .tls_root_cert_pem("not used")
                .build(),
        );
        assert!(msg.contains("use rediss+cluster://"), "{msg}");
        let msg = config_error(Config::from_url("redis://localhost/abc"));
        assert!(msg.contains("database"), "{msg}");
        let msg = config_error(Config::from_url("redis://:6379"));
        assert!(!msg.is_empty());
        let msg = config_error(
            Config::builder("redis://localhost")
                .operation_timeout(Duration::ZERO)
                .build(),
        );
        assert!(msg.contains("operation timeout"), "{msg}");
    }

    #[cfg(not(feature = "tls"))]
    #[test]
    fn tls_without_feature_is_explained() {
        let msg = config_error(Config::from_url("rediss://localhost:6380"));
        assert!(msg.contains("`tls` feature"), "{msg}");
    }

    #[cfg(feature = "tls")]
    #[test]
    fn tls_urls_are_accepted_with_the_feature() {
        let config = Config::from_url("rediss://user:pw@cache.example:6380/1").expect("valid");
        assert!(config.tls());
        assert_eq!(config.endpoint(), "cache.example:6380");
        let cluster =
            Config::from_url("rediss+cluster://a.example:6380,b.example:6380").expect("valid");
        assert!(cluster.tls() && cluster.is_cluster());
    }

    #[test]
    fn tls_root_certificates_need_rediss_and_a_readable_file() {
        let msg = config_error(
            Config::builder("redis://localhost")
                .tls_root_cert_pem(b"-----BEGIN CERTIFICATE-----".to_vec())
                .build(),
        );
        assert!(msg.contains("rediss://"), "{msg}");
        let msg = var_error("rediss://localhost", ENV_TLS_CA_FILE, "/nonexistent/ca.pem");
        assert!(msg.contains(ENV_TLS_CA_FILE), "{msg}");
    }

    #[test]
    fn client_certificates_come_as_a_pair_over_tls_and_stay_out_of_debug() {
        let msg = config_error(
            Config::builder("redis://localhost")
                .tls_client_cert_pem(b"CERT".to_vec(), b"KEY".to_vec())
                .build(),
        );
        assert!(
            msg.contains("client certificate") && msg.contains("rediss://"),
            "{msg}"
        );
        let msg = config_error(
            Config::builder("redis+sentinel://s1:26379/mymaster")
                .tls_client_cert_pem(b"CERT".to_vec(), b"KEY".to_vec())
                .build(),
        );
        assert!(msg.contains("Sentinel"), "{msg}");
        for (set, missing) in [
            (ENV_TLS_CERT_FILE, ENV_TLS_KEY_FILE),
            (ENV_TLS_KEY_FILE, ENV_TLS_CERT_FILE),
        ] {
            let msg = var_error("rediss://localhost", set, "/etc/hostname");
            assert!(msg.contains(set) && msg.contains(missing), "{msg}");
        }
        let msg = config_error(from_vars(&[
            (ENV_URL, "rediss://localhost"),
            (ENV_TLS_CERT_FILE, "/nonexistent/client.crt"),
            (ENV_TLS_KEY_FILE, "/nonexistent/client.key"),
        ]));
        assert!(msg.contains(ENV_TLS_CERT_FILE), "{msg}");
        let private_key = "-----BEGIN PRIVATE KEY-----secret-----END PRIVATE KEY-----";
        let config = Config::builder("rediss://localhost")
            .tls_client_cert_pem(b"CERT".to_vec(), private_key)
            .build()
            .expect("config");
        let shown = format!("{config:?}");
        assert!(
            shown.contains("tls_client_identity: Some(\"<set>\")"),
            "{shown}"
        );
        assert!(
            !shown.contains("secret") && !shown.contains("CERT"),
            "{shown}"
        );
    }

    #[test]
    fn cluster_urls_list_seed_nodes_and_refuse_what_a_cluster_lacks() {
        let config = Config::from_url("redis+cluster://app:s3cret@10.0.0.1:7000,node-b,[::1]:7002")
            .expect("cluster URL");
        assert!(config.is_cluster());
        assert_eq!(
            config.endpoint(),
            "cluster (10.0.0.1:7000,node-b:6379,::1:7002)"
        );
        assert!(config.has_password());
        assert!(!format!("{config:?}").contains("s3cret"));
        match &config.topology {
            Topology::Cluster(seeds) => assert_eq!(seeds.len(), 3),
            _ => panic!("expected a cluster configuration"),
        }
        for (url, expected) in [
            ("redis+cluster://10.0.0.1:7000/2", "only database 0"),
            ("redis+cluster://10.0.0.1:7000,:7001", "is not host[:port]"),
            ("redis+cluster://10.0.0.1:0", "is not host[:port]"),
            ("redis+cluster://10.0.0.1:7000?x=1", "no query"),
        ] {
            let msg = refused(url, expected);
            assert!(msg.contains("redis+cluster://"), "names the form: {msg}");
        }
    }

    #[test]
    fn secrets_never_reach_debug_or_errors() {
        let url = "redis://user:s3cret@127.0.0.1:6379/0";
        let config = Config::from_url(url).expect("valid");
        assert!(!format!("{config:?}").contains("s3cret"));
        assert!(!format!("{:?}", Config::builder(url)).contains("s3cret"));
        let err = Config::from_url("redis://user:s3cret@127.0.0.1:6379/xyz").expect_err("bad db");
        assert!(!err.to_string().contains("s3cret"));
        assert!(!format!("{err:?}").contains("s3cret"));
    }

    fn sentinel_settings(config: &Config) -> &SentinelSettings {
        match &config.topology {
            Topology::Sentinel(settings) => settings,
            Topology::Standalone | Topology::Cluster(_) => {
                panic!("expected a Sentinel configuration")
            }
        }
    }

    #[test]
    fn sentinel_urls_name_the_sentinels_the_master_and_the_node_credentials() {
        let config = Config::from_url(
            "redis+sentinel://app:p%40ss@10.0.0.1:26380,sentinel-b,[::1]:26381/orders-main/3",
        )
        .expect("valid");
        let settings = sentinel_settings(&config);
        assert_eq!(settings.master_name, "orders-main");
        assert_eq!(
            settings.sentinels,
            vec![
                ("10.0.0.1".to_string(), 26380),
                ("sentinel-b".to_string(), DEFAULT_SENTINEL_PORT),
                ("::1".to_string(), 26381),
            ]
        );
        let node = config.connection_info.redis_settings();
        assert_eq!(node.username(), Some("app"));
        assert_eq!(node.password(), Some("p@ss"), "percent-decoded");
        assert_eq!(config.database(), 3);
        assert_eq!(config.sentinel_master(), Some("orders-main"));
        assert!(!format!("{config:?}").contains("p@ss"));
        assert!(!format!("{config:?}").contains("p%40ss"));
    }

    #[test]
    fn sentinel_credentials_come_from_the_environment_and_stay_secret() {
        let config = from_vars(&[
            (ENV_URL, "redis+sentinel://127.0.0.1/mymaster"),
            (ENV_SENTINEL_USERNAME, "watcher"),
            (ENV_SENTINEL_PASSWORD, "sentinel-s3cret"),
        ])
        .expect("valid");
        let settings = sentinel_settings(&config);
        assert_eq!(settings.username.as_deref(), Some("watcher"));
        assert_eq!(settings.password.as_deref(), Some("sentinel-s3cret"));
        assert!(!format!("{config:?}").contains("sentinel-s3cret"));
        let msg = var_error("redis://localhost", ENV_SENTINEL_PASSWORD, "x");
        assert!(msg.contains("redis+sentinel://"), "{msg}");
        let msg = var_error("redis+sentinel://h/m", ENV_SENTINEL_USERNAME, "watcher");
        assert!(msg.contains(ENV_SENTINEL_PASSWORD), "{msg}");
    }

    #[test]
    fn bad_sentinel_urls_say_what_is_wrong_and_show_the_form() {
        for (url, expected) in [
            ("redis+sentinel://127.0.0.1:26379", "must name the master"),
            ("redis+sentinel://127.0.0.1:26379/", "must name the master"),
            (
                "redis+sentinel://127.0.0.1:26379/my master",
                "must name the master",
            ),
            ("redis+sentinel://127.0.0.1:99999/m", "is not host[:port]"),
            ("redis+sentinel://a,,b/m", "is not host[:port]"),
            ("redis+sentinel://h/m/zero", "must be a number"),
            ("redis+sentinel://h/m/0/extra", "extra path"),
            ("redis+sentinel://h/m?sentinel_password=x", "no query"),
            ("rediss+sentinel://h/m", "TLS through Sentinel"),
        ] {
            let msg = refused(url, expected);
            if !url.starts_with("rediss") {
                assert!(
                    msg.contains("redis+sentinel://[[user]:password@]"),
                    "{url}: {msg}"
                );
            }
        }
    }

    #[test]
    fn replica_acknowledgements_are_validated() {
        let config = from_vars(&[
            (ENV_URL, "redis://localhost"),
            (ENV_WAIT_REPLICAS, "2"),
            (ENV_WAIT_TIMEOUT, "250ms"),
        ])
        .expect("valid");
        assert_eq!(
            config.replica_acks,
            Some(ReplicaAcks {
                replicas: AckReplicas::Count(2),
                timeout: Duration::from_millis(250)
            })
        );
        let all = from_vars(&[
            (ENV_URL, "redis+sentinel://127.0.0.1:26379/mymaster"),
            (ENV_WAIT_REPLICAS, "all"),
        ])
        .expect("valid");
        assert_eq!(
            all.replica_acks.map(|acks| acks.replicas),
            Some(AckReplicas::All)
        );
        let msg = var_error("redis://localhost", ENV_WAIT_REPLICAS, "all");
        assert!(msg.contains("redis+sentinel://"), "{msg}");
        let msg = var_error("redis://localhost", ENV_WAIT_REPLICAS, "every");
        assert!(msg.contains("or `all`"), "{msg}");
        let defaulted =
            from_vars(&[(ENV_URL, "redis://localhost"), (ENV_WAIT_REPLICAS, "1")]).expect("valid");
        assert_eq!(
            defaulted.replica_acks.map(|acks| acks.timeout),
            Some(DEFAULT_WAIT_TIMEOUT)
        );
        let off =
            from_vars(&[(ENV_URL, "redis://localhost"), (ENV_WAIT_REPLICAS, "0")]).expect("valid");
        assert_eq!(off.replica_acks, None);
        let msg = var_error("redis://localhost", ENV_WAIT_REPLICAS, "some");
        assert!(msg.contains(ENV_WAIT_REPLICAS), "{msg}");
        let msg = var_error("redis://localhost", ENV_WAIT_TIMEOUT, "1s");
        assert!(msg.contains(ENV_WAIT_REPLICAS), "{msg}");
        let msg = config_error(
            Config::builder("redis://localhost")
                .wait_for_replicas(1, Duration::from_secs(5))
                .build(),
        );
        assert!(msg.contains("below the response timeout"), "{msg}");
        let msg = config_error(
            Config::builder("redis://localhost")
                .wait_for_replicas(0, Duration::from_millis(100))
                .build(),
        );
        assert!(msg.contains("0 replicas"), "{msg}");
    }

    #[test]
    fn refusing_evicting_servers_is_a_boolean_setting() {
        let config = from_vars(&[(ENV_URL, "redis://localhost"), (ENV_REFUSE_EVICTION, "yes")])
            .expect("valid");
        assert!(config.refuse_evicting_server);
        let msg = var_error("redis://localhost", ENV_REFUSE_EVICTION, "perhaps");
        assert!(msg.contains(ENV_REFUSE_EVICTION), "{msg}");
    }
}

//! Connection settings: from a URL, from the environment, or a builder.
//!
//! Everything is validated up front, so a bad setting fails at start-up with
//! a message naming the setting, not at the first command. The URL (which may
//! carry a password) is parsed once and never kept as text: `Debug` shows the
//! endpoint, database and whether a password is set, nothing more.

use std::time::Duration;

use redis::IntoConnectionInfo;

use crate::error::{Error, Result};

/// Environment variable holding the server URL.
pub const ENV_URL: &str = "REDIS_URL";
/// Environment variable: connect timeout, a duration like `5s` or `500ms`.
pub const ENV_CONNECT_TIMEOUT: &str = "REDIS_CONNECT_TIMEOUT";
/// Environment variable: per-command response timeout, e.g. `3s`.
pub const ENV_RESPONSE_TIMEOUT: &str = "REDIS_RESPONSE_TIMEOUT";
/// Environment variable: overall deadline of one operation including any
/// wait for a reconnect, e.g. `5s`.
pub const ENV_OPERATION_TIMEOUT: &str = "REDIS_OPERATION_TIMEOUT";
/// Environment variable: how many reconnect attempts before an operation fails.
pub const ENV_MAX_RETRIES: &str = "REDIS_MAX_RETRIES";
/// Environment variable: first reconnect delay, e.g. `50ms`.
pub const ENV_RETRY_MIN_DELAY: &str = "REDIS_RETRY_MIN_DELAY";
/// Environment variable: cap on the reconnect delay, e.g. `2s`.
pub const ENV_RETRY_MAX_DELAY: &str = "REDIS_RETRY_MAX_DELAY";
/// Environment variable: path of a PEM file with the root certificate(s) to
/// trust for `rediss://` (a private CA) instead of the system store.
pub const ENV_TLS_CA_FILE: &str = "REDIS_TLS_CA_FILE";
/// Environment variable: `true` to connect on first use, `false` to connect in `Client::connect`.
pub const ENV_LAZY_CONNECT: &str = "REDIS_LAZY_CONNECT";

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
            .field(
                "tls_root_cert",
                &$settings.tls_root_cert.as_ref().map(|_| "<set>"),
            )
    };
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let settings = self.connection_info.redis_settings();
        let mut out = f.debug_struct("Config");
        out.field("endpoint", &self.endpoint)
            .field("tls", &self.tls)
            .field("database", &settings.db())
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

    /// Reads `REDIS_URL` and the optional knobs (`REDIS_CONNECT_TIMEOUT`,
    /// `REDIS_RESPONSE_TIMEOUT`, `REDIS_OPERATION_TIMEOUT`, `REDIS_MAX_RETRIES`,
    /// `REDIS_RETRY_MIN_DELAY`, `REDIS_RETRY_MAX_DELAY`, `REDIS_LAZY_CONNECT`)
    /// from the process environment.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`Config::from_env`], reading variables through `lookup`
    /// (handy for tests and for configuration systems other than the environment).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let url = lookup(ENV_URL).unwrap_or_default();
        let mut builder = Self::builder(url);
        if let Some(v) = lookup(ENV_CONNECT_TIMEOUT) {
            builder = builder.connect_timeout(parse_duration_var(ENV_CONNECT_TIMEOUT, &v)?);
        }
        if let Some(v) = lookup(ENV_RESPONSE_TIMEOUT) {
            builder = builder.response_timeout(parse_duration_var(ENV_RESPONSE_TIMEOUT, &v)?);
        }
        if let Some(v) = lookup(ENV_OPERATION_TIMEOUT) {
            builder = builder.operation_timeout(parse_duration_var(ENV_OPERATION_TIMEOUT, &v)?);
        }
        let mut retry = RetryPolicy::default();
        if let Some(v) = lookup(ENV_MAX_RETRIES) {
            retry.max_retries = v.trim().parse().map_err(|_| {
                Error::Config(format!(
                    "{ENV_MAX_RETRIES} must be a whole number of attempts, got {v:?}"
                ))
            })?;
        }
        if let Some(v) = lookup(ENV_RETRY_MIN_DELAY) {
            retry.min_delay = parse_duration_var(ENV_RETRY_MIN_DELAY, &v)?;
        }
        if let Some(v) = lookup(ENV_RETRY_MAX_DELAY) {
            retry.max_delay = parse_duration_var(ENV_RETRY_MAX_DELAY, &v)?;
        }
        builder = builder.retry(retry);
        if let Some(v) = lookup(ENV_LAZY_CONNECT) {
            let lazy = match v.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => true,
                "0" | "false" | "no" | "off" => false,
                _ => {
                    return Err(Error::Config(format!(
                        "{ENV_LAZY_CONNECT} must be true or false, got {v:?}"
                    )));
                }
            };
            builder = builder.lazy_connect(lazy);
        }
        if let Some(path) = lookup(ENV_TLS_CA_FILE) {
            let pem = std::fs::read(path.trim())
                .map_err(|e| Error::Config(format!("{ENV_TLS_CA_FILE} could not be read: {e}")))?;
            builder = builder.tls_root_cert_pem(pem);
        }
        builder.build()
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
        }
    }

    /// `host:port` (or the socket path): safe to log, unlike the URL.
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

    /// Validates everything and produces the [`Config`].
    ///
    /// Errors: [`Error::UrlMissing`] for an empty URL; [`Error::Config`] for
    /// a malformed URL, an unsupported scheme, a bad database number, `rediss://`
    /// without the `tls` feature, or a zero timeout.
    pub fn build(self) -> Result<Config> {
        let url = self.url.trim();
        if url.is_empty() {
            return Err(Error::UrlMissing);
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
                    "unsupported URL scheme `{other}`: use redis://, rediss:// (TLS) or unix://"
                )));
            }
        };
        if self.tls_root_cert.is_some() && !tls {
            return Err(Error::Config(
                "a TLS root certificate was given for a plain-text URL: use rediss://".into(),
            ));
        }
        if tls && !cfg!(feature = "tls") {
            return Err(Error::Config(
                "rediss:// (TLS) needs the `tls` feature of redis-runtime".into(),
            ));
        }
        if matches!(parsed.scheme(), "redis" | "rediss" | "valkey" | "valkeys") {
            let db = parsed.path().trim_matches('/');
            if !db.is_empty() && db.parse::<u32>().is_err() {
                return Err(Error::Config(format!(
                    "the database in the Redis URL must be a number like /0, got /{db}"
                )));
            }
        }
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
        // redis-rs error text for a URL names the problem, never the URL.
        let connection_info = parsed
            .into_connection_info()
            .map_err(|e| Error::Config(format!("the Redis URL was rejected: {e}")))?;
        Ok(Config {
            connection_info,
            endpoint,
            tls,
            connect_timeout: self.connect_timeout,
            response_timeout: self.response_timeout,
            operation_timeout: self.operation_timeout,
            retry: self.retry,
            lazy_connect: self.lazy_connect,
            tls_root_cert: self.tls_root_cert,
        })
    }
}

fn parse_duration_var(name: &str, value: &str) -> Result<Duration> {
    humantime::parse_duration(value.trim()).map_err(|e| {
        Error::Config(format!(
            "{name} must be a duration like 500ms, 5s or 1m, got {value:?}: {e}"
        ))
    })
}

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
    fn secrets_never_reach_debug_or_errors() {
        let url = "redis://user:s3cret@127.0.0.1:6379/0";
        let config = Config::from_url(url).expect("valid");
        assert!(!format!("{config:?}").contains("s3cret"));
        assert!(!format!("{:?}", Config::builder(url)).contains("s3cret"));
        let err = Config::from_url("redis://user:s3cret@127.0.0.1:6379/xyz").expect_err("bad db");
        assert!(!err.to_string().contains("s3cret"));
        assert!(!format!("{err:?}").contains("s3cret"));
    }
}

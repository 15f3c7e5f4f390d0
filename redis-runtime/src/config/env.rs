//! Settings from environment variables (`Config::from_env`): their names
//! and how their values are read.

use std::time::Duration;

use crate::error::{Error, Result};

use super::{AckReplicas, Config, DEFAULT_WAIT_TIMEOUT, ReplicaAcks, RetryPolicy};

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
/// Environment variable: path of a PEM file with the client certificate
/// (chain) to present over TLS, for servers that authenticate clients by
/// certificate (`tls-auth-clients yes`); needs [`ENV_TLS_KEY_FILE`].
pub const ENV_TLS_CERT_FILE: &str = "REDIS_TLS_CERT_FILE";
/// Environment variable: path of a PEM file with the private key of the
/// client certificate in [`ENV_TLS_CERT_FILE`].
pub const ENV_TLS_KEY_FILE: &str = "REDIS_TLS_KEY_FILE";
/// Environment variable: `true` to connect on first use, `false` to connect in `Client::connect`.
pub const ENV_LAZY_CONNECT: &str = "REDIS_LAZY_CONNECT";
/// Environment variable: user name for the Sentinels of a
/// `redis+sentinel://` URL (the URL's own credentials are the data nodes').
pub const ENV_SENTINEL_USERNAME: &str = "REDIS_SENTINEL_USERNAME";
/// Environment variable: password for the Sentinels of a `redis+sentinel://` URL.
pub const ENV_SENTINEL_PASSWORD: &str = "REDIS_SENTINEL_PASSWORD";
/// Environment variable: every write waits until this many replicas
/// acknowledged it (`WAIT`); see [`ReplicaAcks`].
pub const ENV_WAIT_REPLICAS: &str = "REDIS_WAIT_REPLICAS";
/// Environment variable: how long a write waits for its replica
/// acknowledgements, e.g. `500ms` (default 1 s).
pub const ENV_WAIT_TIMEOUT: &str = "REDIS_WAIT_TIMEOUT";
/// Environment variable: `true` to refuse a server whose `maxmemory-policy`
/// may evict keys (see [`ConfigBuilder::refuse_evicting_server`](crate::ConfigBuilder::refuse_evicting_server)).
pub const ENV_REFUSE_EVICTION: &str = "REDIS_REFUSE_EVICTION";

impl Config {
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
            builder = builder.lazy_connect(parse_bool_var(ENV_LAZY_CONNECT, &v)?);
        }
        if let Some(path) = lookup(ENV_TLS_CA_FILE) {
            let pem = std::fs::read(path.trim())
                .map_err(|e| Error::Config(format!("{ENV_TLS_CA_FILE} could not be read: {e}")))?;
            builder = builder.tls_root_cert_pem(pem);
        }
        match (lookup(ENV_TLS_CERT_FILE), lookup(ENV_TLS_KEY_FILE)) {
            (Some(cert), Some(key)) => {
                let read = |var: &str, path: &str| {
                    std::fs::read(path.trim())
                        .map_err(|e| Error::Config(format!("{var} could not be read: {e}")))
                };
                let cert = read(ENV_TLS_CERT_FILE, &cert)?;
                let key = read(ENV_TLS_KEY_FILE, &key)?;
                builder = builder.tls_client_cert_pem(cert, key);
            }
            (None, None) => {}
            (Some(_), None) => {
                return Err(Error::Config(format!(
                    "{ENV_TLS_CERT_FILE} is set without {ENV_TLS_KEY_FILE}, the certificate's private key"
                )));
            }
            (None, Some(_)) => {
                return Err(Error::Config(format!(
                    "{ENV_TLS_KEY_FILE} is set without {ENV_TLS_CERT_FILE}, the client certificate"
                )));
            }
        }
        if let Some(v) = lookup(ENV_SENTINEL_PASSWORD) {
            builder = builder.sentinel_credentials(lookup(ENV_SENTINEL_USERNAME), v);
        } else if lookup(ENV_SENTINEL_USERNAME).is_some() {
            return Err(Error::Config(format!(
                "{ENV_SENTINEL_USERNAME} is set without {ENV_SENTINEL_PASSWORD}"
            )));
        }
        if let Some(v) = lookup(ENV_WAIT_REPLICAS) {
            let replicas = match v.trim() {
                "all" => AckReplicas::All,
                n => AckReplicas::Count(n.parse().map_err(|_| {
                    Error::Config(format!(
                        "{ENV_WAIT_REPLICAS} must be a whole number of replicas or `all`, got {v:?}"
                    ))
                })?),
            };
            let timeout = match lookup(ENV_WAIT_TIMEOUT) {
                Some(t) => parse_duration_var(ENV_WAIT_TIMEOUT, &t)?,
                None => DEFAULT_WAIT_TIMEOUT,
            };
            if replicas != AckReplicas::Count(0) {
                builder.replica_acks = Some(ReplicaAcks { replicas, timeout });
            }
        } else if lookup(ENV_WAIT_TIMEOUT).is_some() {
            return Err(Error::Config(format!(
                "{ENV_WAIT_TIMEOUT} is set without {ENV_WAIT_REPLICAS}"
            )));
        }
        if let Some(v) = lookup(ENV_REFUSE_EVICTION) {
            builder = builder.refuse_evicting_server(parse_bool_var(ENV_REFUSE_EVICTION, &v)?);
        }
        builder.build()
    }
}

/// A boolean setting: true/false, 1/0, yes/no, on/off.
fn parse_bool_var(name: &str, value: &str) -> Result<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(Error::Config(format!(
            "{name} must be true or false, got {value:?}"
        ))),
    }
}

fn parse_duration_var(name: &str, value: &str) -> Result<Duration> {
    humantime::parse_duration(value.trim()).map_err(|e| {
        Error::Config(format!(
            "{name} must be a duration like 500ms, 5s or 1m, got {value:?}: {e}"
        ))
    })
}

//! Opening redis-rs clients and connections with the configured
//! timeouts, backoff, credentials and TLS.

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::TRACE_TARGET;
use crate::config::{Config, Topology};
use crate::error::{Context, Error, Result};

use super::duration_ms;

/// The configured TLS certificates: a private root to trust, a client
/// certificate to present; `None` when neither is set.
#[cfg(feature = "tls")]
fn tls_certificates(config: &Config) -> Option<redis::TlsCertificates> {
    if config.tls_root_cert.is_none() && config.tls_client_identity.is_none() {
        return None;
    }
    Some(redis::TlsCertificates {
        client_tls: config
            .tls_client_identity
            .as_ref()
            .map(|identity| redis::ClientTlsConfig {
                client_cert: identity.cert.clone(),
                client_key: identity.key.clone(),
            }),
        root_cert: config.tls_root_cert.clone(),
    })
}

/// The redis-rs client for `info`, with the configured TLS certificates if
/// any.
pub(super) fn open_client(info: redis::ConnectionInfo, config: &Config) -> Result<redis::Client> {
    #[cfg(feature = "tls")]
    if let Some(certificates) = tls_certificates(config) {
        return redis::Client::build_with_tls(info, certificates)
            .map_err(|e| Error::Config(format!("the TLS certificates were rejected: {e}")));
    }
    #[cfg(not(feature = "tls"))]
    let _ = config;
    redis::Client::open(info).map_err(|e| Error::Config(e.to_string()))
}

/// How the shared connection reconnects: the configured timeouts and backoff.
///
/// With Sentinel, one attempt: a request waiting inside redis-rs's
/// reconnect loop to a dead master would wait there until its deadline,
/// while the retry loop in [`Client::run_retrying`] would have looked the
/// master up and moved on (measured: writes resumed 4.8 s after a master
/// crash with the full loop, at the deadline, against 2.3 s for the
/// failover itself).
pub(super) fn manager_config(config: &Config) -> ConnectionManagerConfig {
    let retries = match config.topology {
        Topology::Standalone | Topology::Cluster(_) => config.retry.max_retries,
        Topology::Sentinel(_) => 1,
    };
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(config.connect_timeout))
        .set_response_timeout(Some(config.response_timeout))
        .set_min_delay(config.retry.min_delay)
        .set_max_delay(config.retry.max_delay)
        .set_exponent_base(2.0)
        .set_number_of_retries(retries)
}

/// The shared connection to a single server: made now, or on first use
/// with [`Config::lazy_connect`].
pub(super) async fn standalone_manager(
    config: &Config,
    client: redis::Client,
) -> Result<ConnectionManager> {
    let context = Context::new("connect", "");
    if config.lazy_connect && !config.refuse_evicting_server {
        return ConnectionManager::new_lazy_with_config(client, manager_config(config))
            .map_err(|e| Error::from_redis(&e, context));
    }
    let attempt = ConnectionManager::new_with_config(client, manager_config(config));
    match tokio::time::timeout(config.operation_timeout, attempt).await {
        Ok(Ok(manager)) => {
            tracing::info!(target: TRACE_TARGET, endpoint = config.endpoint(), "redis connected");
            Ok(manager)
        }
        Ok(Err(e)) => {
            let err = Error::from_redis(&e, context);
            tracing::error!(target: TRACE_TARGET, endpoint = config.endpoint(), code = err.code(), "redis error: {err}");
            Err(err)
        }
        Err(_) => Err(Error::Timeout {
            context,
            elapsed_ms: duration_ms(config.operation_timeout),
            outcome_unknown: false,
        }),
    }
}

/// The redis-rs client of a Redis Cluster found through `seeds`, with the
/// configured credentials, timeouts and backoff.
pub(super) fn cluster_client(
    config: &Config,
    seeds: &[(String, u16)],
) -> Result<redis::cluster::ClusterClient> {
    cluster_client_with(config, seeds, |builder| builder)
}

/// [`cluster_client`], with `extra` settings on top.
pub(super) fn cluster_client_with(
    config: &Config,
    seeds: &[(String, u16)],
    extra: impl FnOnce(redis::cluster::ClusterClientBuilder) -> redis::cluster::ClusterClientBuilder,
) -> Result<redis::cluster::ClusterClient> {
    let settings = config.connection_info.redis_settings();
    let urls = seeds.iter().map(|(host, port)| {
        if host.contains(':') {
            format!("redis://[{host}]:{port}")
        } else {
            format!("redis://{host}:{port}")
        }
    });
    let mut builder = redis::cluster::ClusterClientBuilder::new(urls)
        .connection_timeout(config.connect_timeout)
        .response_timeout(config.response_timeout)
        // redis-rs would also bound every request, retries included, by the
        // response timeout, and a connection's own settings cannot lift
        // that: a blocking read longer than it would time out at once. The
        // operation timeout bounds every operation instead.
        .overall_response_timeout(None)
        // Its one retry budget would also send a request again after its
        // connection dropped or its reply timed out, which runs a write
        // twice: every failure comes back to us instead, and `Redirecting`
        // follows redirects (see the transport module).
        .retries(0);
    if let Some(username) = settings.username() {
        builder = builder.username(username);
    }
    if let Some(password) = settings.password() {
        builder = builder.password(password);
    }
    #[cfg(feature = "tls")]
    if config.tls() {
        builder = builder.tls(redis::TlsMode::Secure);
        if let Some(certificates) = tls_certificates(config) {
            builder = builder.certs(certificates);
        }
    }
    extra(builder)
        .build()
        .map_err(|e| Error::Config(format!("the Redis Cluster settings were rejected: {e}")))
}

/// The shared connection to a Redis Cluster: made now, or in the
/// background with [`Config::lazy_connect`]. Each command goes to the
/// primary serving its key's slot.
pub(super) async fn cluster_connection(
    config: &Config,
    client: &redis::cluster::ClusterClient,
) -> Result<redis::cluster_async::ClusterConnection> {
    let context = Context::new("connect", "");
    let timeouts = redis::cluster::ClusterConfig::new()
        .set_connection_timeout(config.connect_timeout)
        .set_response_timeout(config.response_timeout);
    if config.lazy_connect && !config.refuse_evicting_server {
        return Ok(client.get_pending_async_connection_with_config(timeouts));
    }
    let attempt = client.get_async_connection_with_config(timeouts);
    match tokio::time::timeout(config.operation_timeout, attempt).await {
        Ok(Ok(cluster)) => {
            tracing::info!(target: TRACE_TARGET, endpoint = config.endpoint(), "redis cluster connected");
            Ok(cluster)
        }
        Ok(Err(e)) => Err(Error::from_redis(&e, context)),
        Err(_) => Err(Error::Timeout {
            context,
            elapsed_ms: duration_ms(config.operation_timeout),
            outcome_unknown: false,
        }),
    }
}

//! Redis Sentinel: which node is the master now, and notice when that
//! changes.
//!
//! The lookup itself is redis-rs's (`SENTINEL MASTERS` on the Sentinels in
//! order, skipping a master they flag as down, then `ROLE` on the node it
//! names, which must answer `master`). What this module adds is what a
//! long-lived client needs around it: one lookup at a time, errors in our
//! kinds, and a watch on the Sentinels' `+switch-master` notices so a
//! failover is acted on when it happens rather than when a write first
//! bounces off the demoted node. Swapping connections is the client's job
//! (`client.rs`).

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use redis::sentinel::{Sentinel, SentinelNodeConnectionInfo};
use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo};
use tokio_util::sync::CancellationToken;

use crate::client::TRACE_TARGET;
use crate::config::{DEFAULT_SENTINEL_PORT, SentinelSettings};
use crate::error::{Context, Error, Result, Unavailability};

/// The Sentinel channel announcing a completed failover.
const SWITCH_MASTER: &str = "+switch-master";

/// How often the switch watch checks that its Sentinel still answers.
const WATCH_PING_INTERVAL: Duration = Duration::from_secs(1);

/// Finds the current master of one monitored name.
pub(crate) struct MasterLookup {
    master_name: String,
    /// redis-rs's lookup keeps a connection per Sentinel; it needs `&mut`,
    /// which also makes lookups one at a time.
    sentinel: tokio::sync::Mutex<Sentinel>,
    /// Credentials and database for the data nodes, as redis-rs's lookup
    /// takes them and as they are.
    node: SentinelNodeConnectionInfo,
    node_settings: RedisConnectionInfo,
    /// The Sentinels' addresses with their credentials, for the watch.
    sentinels: Vec<ConnectionInfo>,
}

impl MasterLookup {
    /// A lookup for `settings`; `node` holds the data nodes' credentials
    /// and database. Nothing is contacted yet.
    pub(crate) fn new(settings: &SentinelSettings, node: &RedisConnectionInfo) -> Result<Self> {
        let mut sentinels = Vec::with_capacity(settings.sentinels.len());
        for (host, port) in &settings.sentinels {
            let mut redis = RedisConnectionInfo::default();
            if let Some(username) = &settings.username {
                redis = redis.set_username(username);
            }
            if let Some(password) = &settings.password {
                redis = redis.set_password(password);
            }
            let info = ConnectionAddr::Tcp(host.clone(), *port)
                .into_connection_info()
                .map_err(|e| Error::Config(format!("the Sentinel address {host}:{port}: {e}")))?
                .set_redis_settings(redis);
            sentinels.push(info);
        }
        let sentinel = Sentinel::build(sentinels.clone())
            .map_err(|e| Error::Config(format!("the Sentinel addresses were rejected: {e}")))?;
        Ok(Self {
            master_name: settings.master_name.clone(),
            sentinel: tokio::sync::Mutex::new(sentinel),
            node: SentinelNodeConnectionInfo::default().set_redis_connection_info(node.clone()),
            node_settings: node.clone(),
            sentinels,
        })
    }

    /// The current master's connection info: named by the first Sentinel
    /// that knows a master not flagged down, and confirmed by the node's
    /// own `ROLE`. Fails with `STORAGE_UNAVAILABLE` while no Sentinel
    /// names a live master (mid-failover), `STORAGE_AUTH` for refused
    /// credentials.
    pub(crate) async fn master(&self) -> Result<ConnectionInfo> {
        let mut sentinel = self.sentinel.lock().await;
        let client = sentinel
            .async_master_for(&self.master_name, Some(&self.node))
            .await
            .map_err(|e| self.lookup_error(&e))?;
        Ok(client.get_connection_info().clone())
    }

    /// The connection info of the node at `host:port` (as a `+switch-master`
    /// notice names it), if its own `ROLE` says it is a master now.
    pub(crate) async fn confirm(
        &self,
        host: &str,
        port: u16,
        connect_timeout: Duration,
    ) -> Result<ConnectionInfo> {
        let context = Context::default();
        let info = ConnectionAddr::Tcp(host.to_string(), port)
            .into_connection_info()
            .map_err(|e| Error::from_redis(&e, context.clone()))?
            .set_redis_settings(self.node_settings.clone());
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(Some(connect_timeout));
        let role = async {
            let client = redis::Client::open(info.clone())?;
            let mut conn = client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            redis::cmd("ROLE")
                .query_async::<redis::Role>(&mut conn)
                .await
        }
        .await
        .map_err(|e| Error::from_redis(&e, context.clone()))?;
        match role {
            redis::Role::Primary { .. } => Ok(info),
            _ => Err(Error::Unavailable {
                context,
                reason: Unavailability::ReadOnly,
                message: format!("{host}:{port} is not a master (yet)"),
                waited_ms: 0,
                outcome_unknown: false,
            }),
        }
    }

    /// A failed lookup in our kinds: a Sentinel that names no live master
    /// is a passing state (a failover in progress), not a bad request.
    fn lookup_error(&self, error: &redis::RedisError) -> Error {
        // Left blank for the operation that needed the master to fill in;
        // the message names the master.
        let context = Context::default();
        match error.kind() {
            redis::ErrorKind::MasterNameNotFoundBySentinel
            | redis::ErrorKind::NoValidReplicasFoundBySentinel => Error::Unavailable {
                context,
                reason: Unavailability::NoMaster,
                message: format!(
                    "no Sentinel names a live master for {:?} ({error})",
                    self.master_name
                ),
                waited_ms: 0,
                outcome_unknown: false,
            },
            // redis-rs checks each address answers ROLE as a Sentinel.
            redis::ErrorKind::InvalidClientConfig => Error::Config(format!(
                "the Sentinel lookup for {:?} failed: {error}; list the Sentinels' addresses (port {DEFAULT_SENTINEL_PORT} unless given), not the data nodes'",
                self.master_name
            )),
            _ => Error::from_redis(error, context),
        }
    }

    /// Watches the Sentinels' `+switch-master` channel and calls
    /// `on_switch` with `owner` whenever the master of this name changes,
    /// until `stop` is cancelled or `owner` is gone. One Sentinel is
    /// watched at a time; when it stops answering, the next one is.
    pub(crate) async fn watch_switches<T>(
        self: Arc<Self>,
        owner: Weak<T>,
        stop: CancellationToken,
        on_switch: impl Fn(Arc<T>, &str) + Send,
    ) {
        let mut next = 0usize;
        let mut failures = 0u32;
        loop {
            let info = self.sentinels[next % self.sentinels.len()].clone();
            next += 1;
            let watched = tokio::select! {
                () = stop.cancelled() => return,
                watched = self.watch_one(info, &owner, &stop, &on_switch) => watched,
            };
            match watched {
                Watch::Stopped => return,
                Watch::Lost => failures = 0,
                Watch::Failed(reason) => {
                    failures += 1;
                    tracing::debug!(target: TRACE_TARGET, master = %self.master_name, "sentinel switch watch could not subscribe: {reason}");
                }
            }
            // Every Sentinel failed in a row: back off before the next round.
            if failures >= self.sentinels.len() as u32 {
                failures = 0;
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(WATCH_PING_INTERVAL) => {}
                }
            }
        }
    }

    /// Subscribes on one Sentinel and forwards its notices for our master.
    async fn watch_one<T>(
        &self,
        info: ConnectionInfo,
        owner: &Weak<T>,
        stop: &CancellationToken,
        on_switch: &(impl Fn(Arc<T>, &str) + Send),
    ) -> Watch {
        let subscribed = async {
            let mut pubsub = redis::Client::open(info)?.get_async_pubsub().await?;
            pubsub.subscribe(SWITCH_MASTER).await?;
            Ok::<_, redis::RedisError>(pubsub.split())
        };
        let (mut sink, mut notices) =
            match tokio::time::timeout(WATCH_PING_INTERVAL * 3, subscribed).await {
                Ok(Ok(pair)) => pair,
                Ok(Err(e)) => return Watch::Failed(e.to_string()),
                Err(_) => return Watch::Failed("timed out".into()),
            };
        let mut ping = tokio::time::interval(WATCH_PING_INTERVAL);
        ping.reset();
        loop {
            tokio::select! {
                () = stop.cancelled() => return Watch::Stopped,
                notice = notices.next() => {
                    let Some(notice) = notice else { return Watch::Lost };
                    let Ok(text) = std::str::from_utf8(notice.get_payload_bytes()) else { continue };
                    // "<name> <old ip> <old port> <new ip> <new port>"
                    if text.split(' ').next() != Some(self.master_name.as_str()) {
                        continue;
                    }
                    let Some(owner) = owner.upgrade() else { return Watch::Stopped };
                    tracing::info!(target: TRACE_TARGET, master = %self.master_name, "sentinel announced a new master: {text}");
                    on_switch(owner, text);
                }
                _ = ping.tick() => {
                    if owner.strong_count() == 0 {
                        return Watch::Stopped;
                    }
                    let alive = tokio::time::timeout(WATCH_PING_INTERVAL, sink.ping::<redis::Value>()).await;
                    if !matches!(alive, Ok(Ok(_))) {
                        return Watch::Lost;
                    }
                }
            }
        }
    }
}

/// How watching one Sentinel ended.
enum Watch {
    /// The client is gone or shutting down.
    Stopped,
    /// The subscription was made, then lost.
    Lost,
    /// The subscription could not be made.
    Failed(String),
}

//! Redis Sentinel: which node is the master now, and notice when that
//! changes.
//!
//! The lookup itself is redis-rs's (`SENTINEL MASTERS` on the Sentinels in
//! order, skipping a master they flag as down, then `ROLE` on the node it
//! names, which must answer `master`). What this module adds is what a
//! long-lived client needs around it: one lookup at a time, errors in our
//! kinds, the count of the master's replicas (`REDIS_WAIT_REPLICAS=all`),
//! and a watch on every Sentinel's notices of a failover so it is acted on
//! when the first Sentinel knows, rather than when a write first bounces
//! off the demoted node. Swapping connections is the client's job
//! (`client.rs`).
//!
//! Which notices, earliest first:
//! `+failover-state-wait-promotion` (the Sentinel leading a failover has
//! sent `REPLICAOF NO ONE` to the replica it chose; the replica is master
//! a few milliseconds later, but the leader only notices when it next
//! polls it, up to a second on), `+promoted-slave` (the leader saw it
//! report itself a master: from then on it names it as the master) and
//! `+switch-master` (the failover is done, from each Sentinel as it learns
//! of it; the leader announces last, once it has re-pointed the other
//! replicas). Each names the new master, which the client checks with
//! `ROLE` before moving to it; for the first it asks until the node says
//! master (see [`Announcement::settled`]). The watch also passes on what
//! changes the master's replicas (`+slave`, `+sdown`, `-sdown`,
//! `+convert-to-slave`, `+slave-reconf-done` about one of them), so that
//! `REDIS_WAIT_REPLICAS=all` counts them again: a count taken just after a
//! failover misses the old master, which rejoins as a replica seconds
//! later.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use redis::sentinel::{Sentinel, SentinelNodeConnectionInfo};
use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo};
use tokio_util::sync::CancellationToken;

use crate::TRACE_TARGET;
use crate::config::{DEFAULT_SENTINEL_PORT, SentinelSettings};
use crate::error::{Context, Error, Result, Unavailability};

/// The Sentinel channel announcing a completed failover.
const SWITCH_MASTER: &str = "+switch-master";

/// The Sentinel channel announcing that the replica chosen in a failover
/// reports itself a master.
const PROMOTED_REPLICA: &str = "+promoted-slave";

/// The Sentinel channel announcing that the replica chosen in a failover
/// was told to become the master.
const PROMOTING_REPLICA: &str = "+failover-state-wait-promotion";

/// Channels on which the Sentinels announce a change among a master's
/// replicas: one found, down, back, or re-pointed to it.
const REPLICA_CHANGES: [&str; 5] = [
    "+slave",
    "+sdown",
    "-sdown",
    "+convert-to-slave",
    "+slave-reconf-done",
];

/// What a Sentinel's notice means for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Notice {
    /// A new master.
    NewMaster(Announcement),
    /// The master's replicas changed (or may have, while the watch was
    /// not subscribed): count them again.
    Replicas,
}

/// A new master a Sentinel announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Announcement {
    pub(crate) host: String,
    pub(crate) port: u16,
    /// `false` when the node was just told to become the master and may
    /// not be one yet (`+failover-state-wait-promotion`): ask it again
    /// until it says so. `true` when a Sentinel saw it as the master.
    pub(crate) settled: bool,
}

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

    /// The replicas the Sentinels list for the master that writes must
    /// wait for (see [`replicas_to_await`]), as the first Sentinel that
    /// answers `SENTINEL REPLICAS` says (each gets `timeout`): `ip:port`
    /// of each.
    pub(crate) async fn listed_replicas(&self, timeout: Duration) -> Result<BTreeSet<String>> {
        let mut last = None;
        for info in &self.sentinels {
            let asked = tokio::time::timeout(timeout, async {
                let client = redis::Client::open(info.clone())?;
                let mut conn = client.get_multiplexed_async_connection().await?;
                redis::cmd("SENTINEL")
                    .arg("REPLICAS")
                    .arg(&self.master_name)
                    .query_async::<Vec<HashMap<String, String>>>(&mut conn)
                    .await
            })
            .await;
            match asked {
                Ok(Ok(replicas)) => return Ok(replicas_to_await(&replicas)),
                Ok(Err(e)) => last = Some(self.lookup_error(&e)),
                Err(_) => {}
            }
        }
        Err(last.unwrap_or_else(|| Error::Unavailable {
            context: Context::default(),
            reason: Unavailability::NoMaster,
            message: format!(
                "no Sentinel answered SENTINEL REPLICAS {:?} in time",
                self.master_name
            ),
            waited_ms: 0,
            outcome_unknown: false,
        }))
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

    /// Watches every Sentinel's notices of a failover and of changes
    /// among the replicas (see the module docs) and calls `on_notice`
    /// with `owner` for each, until `stop` is cancelled or `owner` is
    /// gone: the first Sentinel that knows moves the client. A Sentinel
    /// that stops answering is subscribed to again, after a pause when it
    /// fails twice in a row; each new subscription is a
    /// [`Notice::Replicas`], since changes may have been missed.
    pub(crate) async fn watch_switches<T>(
        self: Arc<Self>,
        owner: Weak<T>,
        stop: CancellationToken,
        on_notice: impl Fn(Arc<T>, Notice) + Send + Sync,
    ) {
        let watches = self.sentinels.iter().map(|info| {
            let watcher = Watcher {
                owner: &owner,
                stop: &stop,
                on_notice: &on_notice,
            };
            self.watch_sentinel(info.clone(), watcher)
        });
        futures_util::future::join_all(watches).await;
    }

    /// Keeps a watch on one Sentinel until the client stops.
    async fn watch_sentinel<T, F: Fn(Arc<T>, Notice) + Send + Sync>(
        &self,
        info: ConnectionInfo,
        watcher: Watcher<'_, T, F>,
    ) {
        let stop = watcher.stop;
        let mut failures = 0u32;
        loop {
            let watched = tokio::select! {
                () = stop.cancelled() => return,
                watched = self.watch_one(info.clone(), watcher) => watched,
            };
            match watched {
                Watch::Stopped => return,
                Watch::Lost => failures = 0,
                Watch::Failed(reason) => {
                    failures += 1;
                    tracing::debug!(target: TRACE_TARGET, master = %self.master_name, "sentinel switch watch could not subscribe: {reason}");
                }
            }
            if failures >= 2 {
                failures = 0;
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(WATCH_PING_INTERVAL) => {}
                }
            }
        }
    }

    /// Subscribes on one Sentinel and forwards its notices for our master.
    async fn watch_one<T, F: Fn(Arc<T>, Notice) + Send + Sync>(
        &self,
        info: ConnectionInfo,
        watcher: Watcher<'_, T, F>,
    ) -> Watch {
        let Watcher {
            owner,
            stop,
            on_notice,
        } = watcher;
        let subscribed = async {
            let mut pubsub = redis::Client::open(info)?.get_async_pubsub().await?;
            pubsub
                .subscribe(&[SWITCH_MASTER, PROMOTED_REPLICA, PROMOTING_REPLICA])
                .await?;
            pubsub.subscribe(&REPLICA_CHANGES).await?;
            Ok::<_, redis::RedisError>(pubsub.split())
        };
        let (mut sink, mut notices) =
            match tokio::time::timeout(WATCH_PING_INTERVAL * 3, subscribed).await {
                Ok(Ok(pair)) => pair,
                Ok(Err(e)) => return Watch::Failed(e.to_string()),
                Err(_) => return Watch::Failed("timed out".into()),
            };
        match owner.upgrade() {
            Some(owner) => on_notice(owner, Notice::Replicas),
            None => return Watch::Stopped,
        }
        let mut ping = tokio::time::interval(WATCH_PING_INTERVAL);
        ping.reset();
        loop {
            tokio::select! {
                () = stop.cancelled() => return Watch::Stopped,
                notice = notices.next() => {
                    let Some(notice) = notice else { return Watch::Lost };
                    let Ok(text) = std::str::from_utf8(notice.get_payload_bytes()) else { continue };
                    let Some(meant) = meaning(notice.get_channel_name(), text, &self.master_name) else {
                        continue;
                    };
                    let Some(owner) = owner.upgrade() else { return Watch::Stopped };
                    if let Notice::NewMaster(_) = meant {
                        tracing::info!(target: TRACE_TARGET, master = %self.master_name, "sentinel announced a new master ({}): {text}", notice.get_channel_name());
                    }
                    on_notice(owner, meant);
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

/// Who a switch watch reports to, and until when: the client (`owner`,
/// not kept alive by the watch), its stop signal, and what it calls.
struct Watcher<'a, T, F> {
    owner: &'a Weak<T>,
    stop: &'a CancellationToken,
    on_notice: &'a F,
}

impl<T, F> Clone for Watcher<'_, T, F> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T, F> Copy for Watcher<'_, T, F> {}

/// How watching one Sentinel ended.
enum Watch {
    /// The client is gone or shutting down.
    Stopped,
    /// The subscription was made, then lost.
    Lost,
    /// The subscription could not be made.
    Failed(String),
}

/// Of the replicas a `SENTINEL REPLICAS` reply lists, those a write must
/// reach before it counts as acknowledged by all: `ip:port` of each.
///
/// Left out: a replica the Sentinel judged down (`s_down`, `o_down`),
/// which it would not promote, and one that reports itself a master (the
/// old master after a failover, until the Sentinels re-point it seconds
/// later), which replicates from nobody and cannot acknowledge. A replica
/// only flagged `disconnected` counts: every Sentinel resets its view of
/// the replicas when it switches masters, and lists them all as
/// disconnected for a moment after.
fn replicas_to_await(replicas: &[HashMap<String, String>]) -> BTreeSet<String> {
    replicas
        .iter()
        .filter(|fields| {
            let down = fields.get("flags").is_some_and(|flags| {
                flags
                    .split(',')
                    .any(|flag| matches!(flag, "s_down" | "o_down"))
            });
            let master = fields
                .get("role-reported")
                .is_some_and(|role| role == "master");
            !down && !master
        })
        .filter_map(|fields| Some(format!("{}:{}", fields.get("ip")?, fields.get("port")?)))
        .collect()
}

/// What a Sentinel notice on `channel` means for a client of
/// `master_name`, if it is about that master:
/// `+switch-master`: `<name> <old ip> <old port> <new ip> <new port>`;
/// the others, about a replica: `slave <ip>:<port> <ip> <port> @ <name>
/// <master ip> <master port>`.
fn meaning(channel: &str, text: &str, master_name: &str) -> Option<Notice> {
    let words: Vec<&str> = text.split(' ').collect();
    // A replica of our master: its host and port.
    let replica = || match (words.first(), words.get(4), words.get(5)) {
        (Some(&"slave"), Some(&"@"), Some(&name)) if name == master_name => {
            Some((*words.get(2)?, *words.get(3)?))
        }
        _ => None,
    };
    let ((host, port), settled) = match channel {
        SWITCH_MASTER if words.first() == Some(&master_name) => {
            ((*words.get(3)?, *words.get(4)?), true)
        }
        PROMOTED_REPLICA => (replica()?, true),
        PROMOTING_REPLICA => (replica()?, false),
        channel if REPLICA_CHANGES.contains(&channel) => {
            replica()?;
            return Some(Notice::Replicas);
        }
        _ => return None,
    };
    Some(Notice::NewMaster(Announcement {
        host: host.to_string(),
        port: port.parse().ok()?,
        settled,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica(port: &str, flags: &str, role: &str) -> HashMap<String, String> {
        [
            ("ip", "127.0.0.1"),
            ("port", port),
            ("flags", flags),
            ("role-reported", role),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    #[test]
    fn writes_await_every_listed_replica_but_the_down_and_the_unconverted_master() {
        let listed = [
            replica("7001", "slave", "slave"),
            // Just after a switch every replica is flagged disconnected.
            replica("7002", "slave,disconnected", "slave"),
            replica("7003", "slave,s_down,disconnected", "slave"),
            replica("7004", "slave,o_down", "slave"),
            // The old master, not yet re-pointed.
            replica("7005", "slave", "master"),
            replica("7006", "slave,promoted", "slave"),
        ];
        assert_eq!(
            replicas_to_await(&listed).into_iter().collect::<Vec<_>>(),
            ["127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7006"]
        );
    }

    #[test]
    fn a_notice_names_the_new_master_of_its_master_only() {
        let at = |port, settled| {
            Some(Notice::NewMaster(Announcement {
                host: "127.0.0.1".into(),
                port,
                settled,
            }))
        };
        let switch = "mymaster 127.0.0.1 6379 127.0.0.1 6380";
        assert_eq!(meaning(SWITCH_MASTER, switch, "mymaster"), at(6380, true));
        assert_eq!(meaning(SWITCH_MASTER, switch, "other"), None);
        let replica = "slave 127.0.0.1:6381 127.0.0.1 6381 @ mymaster 127.0.0.1 6379";
        assert_eq!(
            meaning(PROMOTED_REPLICA, replica, "mymaster"),
            at(6381, true)
        );
        assert_eq!(
            meaning(PROMOTING_REPLICA, replica, "mymaster"),
            at(6381, false)
        );
        assert_eq!(meaning(PROMOTED_REPLICA, replica, "other"), None);
        for garbled in ["", "mymaster", "mymaster 1 2 3 notaport", "slave x y z"] {
            for channel in [SWITCH_MASTER, PROMOTED_REPLICA, PROMOTING_REPLICA] {
                assert_eq!(meaning(channel, garbled, "mymaster"), None, "{garbled}");
            }
        }
        assert_eq!(meaning("+odown", switch, "mymaster"), None);
    }

    #[test]
    fn changes_among_the_replicas_of_its_master_are_passed_on() {
        let replica = "slave 127.0.0.1:6381 127.0.0.1 6381 @ mymaster 127.0.0.1 6379";
        for channel in REPLICA_CHANGES {
            assert_eq!(
                meaning(channel, replica, "mymaster"),
                Some(Notice::Replicas),
                "{channel}"
            );
            assert_eq!(meaning(channel, replica, "other"), None, "{channel}");
        }
        // The master itself going down changes no replica.
        assert_eq!(
            meaning("+sdown", "master mymaster 127.0.0.1 6379", "mymaster"),
            None
        );
        let sentinel = "sentinel 1a2b 127.0.0.1 26380 @ mymaster 127.0.0.1 6379";
        assert_eq!(meaning("+sdown", sentinel, "mymaster"), None);
    }
}

//! Whether the server is fit to use: `PING` and `INFO` (`health`), the
//! server's version and what it supports, and what about its settings
//! can lose data this library keeps consistent.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::TRACE_TARGET;
use crate::config::AckReplicas;
use crate::error::{Context, Error, Result};
use crate::reply::info_field;
use crate::server::{Feature, ServerInfo};
use crate::transport::Effect;

use super::{Client, Source};

/// How long [`Client::health`] waits for `PING`.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(3);

/// Result of [`Client::health`].
#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    /// Whether the server answered `PING` in time.
    pub ok: bool,
    /// Round-trip time of the `PING`, in milliseconds (time until failure when not ok).
    pub latency_ms: f64,
    /// Why it is not ok.
    pub error: Option<String>,
    /// The server's name and version, read with the `PING` (`None` when
    /// not ok).
    pub server: Option<ServerInfo>,
    /// The server's replication role (`master`, or `slave` for a replica,
    /// from `INFO replication`), when it answered. Connected to a replica
    /// through Sentinel, `ok` is false (the master moved and the client is
    /// looking it up again); connected to one directly, `warnings` says so.
    pub role: Option<String>,
    /// The server's `maxmemory-policy` (from `INFO memory`), when it
    /// answered.
    pub eviction_policy: Option<String>,
    /// What about the server's configuration can lose data this library
    /// keeps consistent, e.g. an eviction policy that may drop an index key
    /// or an entity hash on its own. Empty when nothing is wrong.
    pub warnings: Vec<String>,
}

/// The warning for a `maxmemory-policy` under which Redis may evict keys:
/// an index key or an entity hash can then disappear on its own, and the
/// indexes no longer match the entities (`noeviction` makes a full server
/// refuse writes instead: `STORAGE_OOM`, nothing half-written).
fn eviction_warning(policy: &str) -> Option<String> {
    (policy.starts_with("allkeys-") || policy.starts_with("volatile-")).then(|| {
        format!(
            "maxmemory-policy is {policy}: when memory is full Redis may evict an index key or an entity hash on its own, leaving the indexes out of step with the entities; use noeviction (full memory then fails writes with STORAGE_OOM), or keep this data on a server that never evicts"
        )
    })
}

impl Client {
    /// Fails with `STORAGE_CONFIG` when the server's `maxmemory-policy` may
    /// evict keys ([`ConfigBuilder::refuse_evicting_server`]).
    ///
    /// [`ConfigBuilder::refuse_evicting_server`]: crate::ConfigBuilder::refuse_evicting_server
    pub(super) async fn refuse_if_evicting(&self) -> Result<()> {
        let memory = self.info("memory", Context::new("connect", "")).await?;
        // On a cluster, any node that may evict is one too many.
        match memory.iter().find_map(|node| {
            info_field(node, "maxmemory_policy")
                .as_deref()
                .and_then(eviction_warning)
        }) {
            Some(warning) => Err(Error::Config(format!(
                "refusing the server at {}: {warning}",
                self.inner.config.endpoint()
            ))),
            None => Ok(()),
        }
    }

    /// `PING` with a [`HEALTH_TIMEOUT`] deadline. Never hangs, never panics:
    /// a server that is down, slow or gone gives `ok: false` and the reason.
    pub async fn health(&self) -> Health {
        let started = Instant::now();
        // PING and INFO in one round trip: the server may have changed (a
        // restart, a failover) since it was last read.
        let result = self
            .run_with_deadline(
                Context::new("health", ""),
                HEALTH_TIMEOUT,
                Effect::Read,
                |mut conn| async move {
                    let mut pipe = redis::pipe();
                    pipe.cmd("PING")
                        .cmd("INFO")
                        .arg("server")
                        .cmd("INFO")
                        .arg("memory")
                        .cmd("INFO")
                        .arg("replication");
                    let reply: (String, String, String, String) =
                        pipe.query_async(&mut conn).await?;
                    Ok(reply)
                },
            )
            .await;
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        let unhealthy = |error: String| Health {
            ok: false,
            latency_ms,
            error: Some(error),
            server: None,
            role: None,
            eviction_policy: None,
            warnings: Vec::new(),
        };
        match result {
            // `redis_mode` on Redis, `server_mode` on Valkey.
            Ok((_, info, _, _))
                if info_field(&info, "redis_mode")
                    .or_else(|| info_field(&info, "server_mode"))
                    .as_deref()
                    == Some("sentinel") =>
            {
                unhealthy(format!(
                    "{} is a Sentinel, not a data node: use redis+sentinel://{}/<master name>",
                    self.inner.config.endpoint(),
                    self.inner.config.endpoint()
                ))
            }
            Ok((pong, info, memory, replication)) if pong == "PONG" => {
                let server = ServerInfo::from_info(&info);
                self.remember_server(server.clone());
                let role = info_field(&replication, "role");
                let eviction_policy = info_field(&memory, "maxmemory_policy");
                let mut warnings: Vec<String> = eviction_policy
                    .as_deref()
                    .and_then(eviction_warning)
                    .into_iter()
                    .collect();
                for warning in &warnings {
                    // Once per client: health checks run periodically.
                    if !self.inner.eviction_warned.swap(true, Ordering::AcqRel) {
                        tracing::warn!(target: TRACE_TARGET, endpoint = self.inner.config.endpoint(), "{warning}");
                    }
                }
                let replica = role.as_deref().is_some_and(|role| role != "master");
                if replica && matches!(self.inner.source, Source::Sentinel(_)) {
                    // The master moved and nothing told us yet: look again.
                    let client = self.clone();
                    tokio::spawn(async move {
                        let _ = client.refresh_master(Some(Instant::now()), None).await;
                    });
                    return Health {
                        error: Some(
                            "connected to a replica: the master moved; looking it up again".into(),
                        ),
                        server,
                        role,
                        eviction_policy,
                        warnings,
                        ..unhealthy(String::new())
                    };
                }
                if replica {
                    warnings.push(
                        "the server is a replica: reads may be stale and writes fail with READONLY; point REDIS_URL at the primary (or use redis+sentinel://)".into(),
                    );
                }
                let replicas = info_field(&replication, "connected_slaves")
                    .and_then(|n| n.parse::<u32>().ok());
                if let Some(warning) = self
                    .inner
                    .config
                    .replica_acks
                    .zip(replicas)
                    .and_then(|(acks, replicas)| acks_warning(acks.replicas, replicas))
                {
                    warnings.push(warning);
                }
                self.recount_replicas();
                Health {
                    ok: true,
                    latency_ms,
                    error: None,
                    server,
                    role,
                    eviction_policy,
                    warnings,
                }
            }
            Ok((other, ..)) => unhealthy(format!("unexpected PING reply {other:?}")),
            Err(e) => unhealthy(e.to_string()),
        }
    }

    /// The server this client talks to, from `INFO server`: read on first
    /// use and kept ([`Client::health`] reads it again).
    ///
    /// ```no_run
    /// # async fn demo(client: &redis_runtime::Client) -> redis_runtime::Result<()> {
    /// let server = client.server_info().await?;
    /// println!("connected to {server}"); // e.g. "redis 7.0.15"
    /// # Ok(())
    /// # }
    /// ```
    pub async fn server_info(&self) -> Result<ServerInfo> {
        if let Some(info) = self.known_server().clone() {
            return Ok(info);
        }
        let ctx = Context::new("server_info", "");
        let nodes = self.info("server", ctx.clone()).await?;
        // On a cluster, the oldest node decides what every command may use.
        let info = nodes
            .iter()
            .map(|text| ServerInfo::from_info(text))
            .collect::<Option<Vec<_>>>()
            .and_then(|infos| {
                infos
                    .into_iter()
                    .min_by(|a, b| a.redis_version.cmp(&b.redis_version))
            })
            .ok_or_else(|| Error::Command {
                context: ctx,
                message: "INFO server named no redis_version".into(),
            })?;
        self.remember_server(Some(info.clone()));
        Ok(info)
    }

    /// `INFO <section>` as text, one per node: redis-rs sends a cluster's
    /// `INFO` to every primary and answers a map of node to text.
    async fn info(&self, section: &str, ctx: Context) -> Result<Vec<String>> {
        let mut cmd = redis::cmd("INFO");
        cmd.arg(section);
        let reply: redis::Value = self.read(ctx.clone(), &cmd).await?;
        let text = |value: redis::Value| redis::from_redis_value::<String>(value).ok();
        let nodes = match reply {
            redis::Value::Map(nodes) => nodes
                .into_iter()
                .map(|(_, text_of)| text(text_of))
                .collect(),
            one => text(one).map(|t| vec![t]),
        };
        nodes
            .filter(|nodes: &Vec<String>| !nodes.is_empty())
            .ok_or_else(|| Error::Command {
                context: ctx,
                message: format!("INFO {section} was not text"),
            })
    }

    /// Fails with `STORAGE_UNSUPPORTED`, naming the feature and the version
    /// it needs, unless the server has `feature`; reads the server's version
    /// once (see [`Client::server_info`]).
    pub async fn require(&self, feature: Feature, context: &Context) -> Result<()> {
        // Checked without a copy: queues and shard channels call this on
        // every operation.
        if self.known_server().is_none() {
            self.server_info().await?;
        }
        self.require_if_known(feature, context)
    }

    /// The server read so far, if any.
    fn known_server(&self) -> std::sync::RwLockReadGuard<'_, Option<ServerInfo>> {
        self.inner.server.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes the client believe the server reported `info` until the next
    /// [`Client::health`]: for testing version checks against a real server.
    #[cfg(feature = "testing")]
    pub fn assume_server(&self, info: ServerInfo) {
        self.remember_server(Some(info));
    }

    /// [`Client::require`] against the server version read so far, without
    /// a round trip: passes while it is not known yet.
    pub(crate) fn require_if_known(&self, feature: Feature, context: &Context) -> Result<()> {
        let known = self.known_server();
        match known.as_ref().map(|info| info.require(feature)) {
            Some(Err(missing)) => Err(Error::Unsupported {
                context: context.clone(),
                feature: feature.describe(),
                required: missing.required.to_string(),
                server: missing.server,
            }),
            _ => Ok(()),
        }
    }

    fn remember_server(&self, info: Option<ServerInfo>) {
        if info.is_some() {
            *self.inner.server.write().unwrap_or_else(|e| e.into_inner()) = info;
        }
    }
}

/// The warning for waiting for fewer replicas than the master has: a
/// failover can then lose an acknowledged write (see [`AckReplicas`]).
fn acks_warning(awaited: AckReplicas, replicas: u32) -> Option<String> {
    match awaited {
        AckReplicas::Count(n) if n < replicas => Some(format!(
            "REDIS_WAIT_REPLICAS={n} while the master has {replicas} replicas: a failover can lose writes a replica acknowledged (Sentinel may promote a replica that had not, or re-point the one that had to the new master, which makes it resync in full); wait for every replica (REDIS_WAIT_REPLICAS=all with Sentinel) to keep them"
        )),
        _ => None,
    }
}

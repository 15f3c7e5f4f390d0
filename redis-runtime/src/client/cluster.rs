//! What a Redis Cluster asks of the client: work grouped by hash slot,
//! the primaries, and connections of their own for subscriptions.

use std::future::Future;
use std::sync::atomic::Ordering;

use crate::config::Topology;
use crate::error::{Context, Error, Result};

use super::open::{cluster_client_with, cluster_connection, open_client};
use super::{Client, duration_ms};

impl Client {
    /// Runs `read` once per group of `keys` in one hash slot, all at once,
    /// and returns what it gave in the order of `keys` (`read` answers one
    /// value per key of its group, in order). A pipeline or transaction on
    /// a cluster must stay in one slot: redis-rs refuses one that spans
    /// slots. On one server, one group of every key.
    pub(crate) async fn per_slot<'k, T, F, Fut>(
        &self,
        keys: &'k [String],
        read: F,
    ) -> Result<Vec<T>>
    where
        F: Fn(Vec<&'k str>) -> Fut,
        Fut: Future<Output = Result<Vec<T>>>,
    {
        self.per_slot_of(keys, String::as_str, |group| {
            read(group.into_iter().map(String::as_str).collect())
        })
        .await
    }

    /// [`Client::per_slot`] over `items`, each in the slot of its `key`.
    pub(crate) async fn per_slot_of<'k, I, T, F, Fut>(
        &self,
        items: &'k [I],
        key: impl Fn(&'k I) -> &'k str,
        read: F,
    ) -> Result<Vec<T>>
    where
        F: Fn(Vec<&'k I>) -> Fut,
        Fut: Future<Output = Result<Vec<T>>>,
    {
        let groups: Vec<Vec<usize>> = if self.config().is_cluster() {
            let mut by_tag = std::collections::BTreeMap::<&str, Vec<usize>>::new();
            for (i, item) in items.iter().enumerate() {
                by_tag
                    .entry(redis_schema::hashed_text(key(item)))
                    .or_default()
                    .push(i);
            }
            by_tag.into_values().collect()
        } else {
            vec![(0..items.len()).collect()]
        };
        let reads = groups
            .iter()
            .map(|positions| read(positions.iter().map(|&i| &items[i]).collect()));
        let results = futures_util::future::join_all(reads).await;
        let mut out: Vec<Option<T>> = (0..items.len()).map(|_| None).collect();
        for (positions, result) in groups.iter().zip(results) {
            let values = result?;
            if values.len() != positions.len() {
                return Err(Error::Command {
                    context: Context::default(),
                    message: format!("expected {} replies, got {}", positions.len(), values.len()),
                });
            }
            for (&i, value) in positions.iter().zip(values) {
                out[i] = Some(value);
            }
        }
        Ok(out.into_iter().flatten().collect())
    }

    /// The cluster's primaries as `host:port`, in address order (`CLUSTER
    /// SLOTS`, asked of any node).
    pub(crate) async fn cluster_primaries(&self, ctx: &Context) -> Result<Vec<(String, u16)>> {
        let mut cmd = redis::cmd("CLUSTER");
        cmd.arg("SLOTS");
        let ranges: Vec<redis::Value> = self.read(ctx.clone(), &cmd).await?;
        let mut primaries = std::collections::BTreeSet::new();
        for range in ranges {
            // [start, end, [host, port, id, ...] (the primary), replicas...]
            let primary = match range {
                redis::Value::Array(parts) => parts.into_iter().nth(2),
                _ => None,
            };
            let address = primary.and_then(|node| match node {
                redis::Value::Array(fields) => {
                    let mut fields = fields.into_iter();
                    let host = redis::from_redis_value::<String>(fields.next()?).ok()?;
                    let port = redis::from_redis_value::<u16>(fields.next()?).ok()?;
                    Some((host, port))
                }
                _ => None,
            });
            match address {
                Some(address) => primaries.insert(address),
                None => {
                    return Err(Error::Command {
                        context: ctx.clone(),
                        message: "CLUSTER SLOTS named a slot range without its primary".into(),
                    });
                }
            };
        }
        Ok(primaries.into_iter().collect())
    }

    /// The server a subscription connects to. On a cluster, any node: a
    /// message published on one node reaches the subscribers of every node
    /// over the cluster bus. Each call takes the next node the URL lists, so a
    /// subscription that lost its node reconnects to another.
    pub(crate) async fn subscriber_client(&self) -> Result<redis::Client> {
        let Topology::Cluster(seeds) = &self.inner.config.topology else {
            return self.redis_client().await;
        };
        let turn = self.inner.next_seed.fetch_add(1, Ordering::Relaxed);
        let (host, port) = &seeds[turn % seeds.len()];
        let (host, port) = (host.clone(), *port);
        let addr = if self.inner.config.tls() {
            redis::ConnectionAddr::TcpTls {
                host,
                port,
                insecure: false,
                tls_params: None,
            }
        } else {
            redis::ConnectionAddr::Tcp(host, port)
        };
        let info = self.inner.config.connection_info.clone().set_addr(addr);
        open_client(info, &self.inner.config)
    }

    /// On a Redis Cluster, a cluster connection of its own that speaks
    /// RESP3 and hands what the server pushes (sharded pub/sub messages,
    /// subscription changes, lost links) to `pushes`; for one subscriber.
    pub(crate) async fn sharded_subscriber(
        &self,
        pushes: tokio::sync::mpsc::UnboundedSender<redis::PushInfo>,
    ) -> Result<redis::cluster_async::ClusterConnection> {
        let config = &self.inner.config;
        let Topology::Cluster(seeds) = &config.topology else {
            return Err(Error::Config(
                "sharded pub/sub connections are a Redis Cluster's".into(),
            ));
        };
        let client = cluster_client_with(config, seeds, |builder| {
            builder
                .use_protocol(redis::ProtocolVersion::RESP3)
                .push_sender(pushes)
                // Only subscription commands go through it, and
                // subscribing twice to a channel is harmless: redis-rs may
                // send them again and follow their redirects itself.
                .retries(u32::try_from(config.retry.max_retries).unwrap_or(u32::MAX))
                .min_retry_wait(duration_ms(config.retry.min_delay))
                .max_retry_wait(duration_ms(config.retry.max_delay))
        })?;
        cluster_connection(config, &client).await
    }
}

/// On a Redis Cluster, fails unless `companion` (a key a multi-key command
/// or script uses with `main`) is always in `main`'s hash slot, which it
/// is when `main` has a hash tag and `companion` extends it.
pub(crate) fn require_same_slot(
    client: &Client,
    what: &str,
    main: &str,
    companion: &str,
) -> Result<()> {
    if client.config().is_cluster()
        && redis_schema::hashed_text(main) != redis_schema::hashed_text(companion)
    {
        return Err(Error::Config(format!(
            "on Redis Cluster, {what} {companion:?} must be in the hash slot of {main:?}, and \
             they hash differently: give the key a hash tag, e.g. \"{{jobs}}:queue\" (its \
             companion keys then share the tag)"
        )));
    }
    Ok(())
}

/// What a feature that needs one server's connection says on a cluster.
pub(super) fn not_on_cluster(feature: &str) -> Error {
    Error::Config(format!(
        "{feature} are not supported on Redis Cluster yet: entities, indexes and their queries are; run these against one server or Sentinel"
    ))
}

//! With Sentinel, which node the shared link goes to, and moving it when
//! the master moves: on the Sentinels' notices, after failures a
//! failover explains, and counting the master's replicas for
//! `REDIS_WAIT_REPLICAS=all`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;

use crate::TRACE_TARGET;
use crate::config::AckReplicas;
use crate::error::{Context, Error, Result};
use crate::sentinel::{MasterLookup, Notice};
use crate::transport::acks::attached_replicas;
use crate::transport::connection::NodeOrCluster;

use super::open::{manager_config, open_client};
use super::{Client, Endpoint, Link, SharedNode, Slot, Source, duration_ms};

/// How long a node a Sentinel told to become the master is asked whether
/// it is one yet: it takes a few milliseconds, the failover's whole
/// promotion step a second or two.
const PROMOTION_WAIT: Duration = Duration::from_secs(3);

impl Client {
    /// Follows every Sentinel's notices for as long as the client lives:
    /// the first that names a new master moves the shared link there, once
    /// its `ROLE` says master (a node just told to become one is asked
    /// again every 10 ms, for up to [`PROMOTION_WAIT`]); a change among the
    /// master's replicas makes [`AckReplicas::All`] count them again.
    pub(super) fn watch_master_switches(&self, lookup: Arc<MasterLookup>) {
        let owner = Arc::downgrade(&self.inner);
        let stop = self.inner.closed.clone();
        tokio::spawn(lookup.watch_switches(owner, stop, |inner, notice| {
            let client = Client { inner };
            match notice {
                Notice::NewMaster(announced) => {
                    tokio::spawn(async move {
                        if !announced.settled {
                            client
                                .await_promotion(&announced.host, announced.port)
                                .await;
                        }
                        let hint = (announced.host, announced.port);
                        let _ = client
                            .refresh_master(Some(Instant::now()), Some(hint))
                            .await;
                    });
                }
                Notice::Replicas => client.recount_replicas(),
            }
        }));
    }

    /// Asks the node at `host:port`, which a Sentinel has just told to
    /// become the master, until its `ROLE` says so (or
    /// [`PROMOTION_WAIT`] passed): writes keep going to the old master
    /// meanwhile.
    async fn await_promotion(&self, host: &str, port: u16) {
        let Source::Sentinel(lookup) = &self.inner.source else {
            return;
        };
        let started = Instant::now();
        let timeout = self.inner.config.connect_timeout;
        while started.elapsed() < PROMOTION_WAIT && !self.is_shut_down() {
            if lookup.confirm(host, port, timeout).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Looks the master up again (Sentinel only; a no-op otherwise) and
    /// moves the shared link to it if it moved. `failed_at`: when the
    /// failure that prompted this happened; a lookup that finished since
    /// then already answered it. `hint`: the address a Sentinel's notice
    /// named, tried first.
    pub(super) async fn refresh_master(
        &self,
        failed_at: Option<Instant>,
        hint: Option<(String, u16)>,
    ) -> Result<()> {
        let Source::Sentinel(lookup) = &self.inner.source else {
            return Ok(());
        };
        let mut refreshed = self.inner.refreshed.lock().await;
        if let (Some(done), Some(failed)) = (*refreshed, failed_at)
            && done >= failed
        {
            return Ok(());
        }
        // Every Sentinel announces a failover: the first notice moved the
        // link, the others name where it is already.
        if let Some((host, port)) = &hint
            && self.current_master().as_deref() == Some(format!("{host}:{port}").as_str())
        {
            return Ok(());
        }
        let config = &self.inner.config;
        let found = tokio::time::timeout(config.operation_timeout, async {
            if let Some((host, port)) = &hint
                && let Ok(info) = lookup.confirm(host, *port, config.connect_timeout).await
            {
                return Ok(info);
            }
            lookup.master().await
        })
        .await;
        *refreshed = Some(Instant::now());
        let info = match found {
            Ok(found) => found?,
            Err(_) => {
                // The operation that needed the master fills in the context.
                return Err(Error::Timeout {
                    context: Context::default(),
                    elapsed_ms: duration_ms(config.operation_timeout),
                    outcome_unknown: false,
                });
            }
        };
        self.install_master(info)?;
        let link = match &*self.inner.link.read().unwrap_or_else(|e| e.into_inner()) {
            Slot::Ready(link) => Some(Arc::clone(link)),
            Slot::Unresolved | Slot::Closed => None,
        };
        if let Some(link) = link {
            self.count_replicas(&link).await;
        }
        Ok(())
    }

    /// `host:port` of the server the shared link goes to, if it is one
    /// server's.
    fn current_master(&self) -> Option<String> {
        match &*self.inner.link.read().unwrap_or_else(|e| e.into_inner()) {
            Slot::Ready(link) => link
                .endpoint
                .node()
                .map(|node| node.get_connection_info().addr().to_string()),
            Slot::Unresolved | Slot::Closed => None,
        }
    }

    /// Points the shared link at `master` unless it already is.
    fn install_master(&self, master: redis::ConnectionInfo) -> Result<()> {
        let mut slot = self.inner.link.write().unwrap_or_else(|e| e.into_inner());
        let previous = match &*slot {
            Slot::Closed => {
                return Err(Error::Shutdown {
                    context: Context::new("sentinel.master", ""),
                });
            }
            Slot::Ready(link)
                if link
                    .endpoint
                    .node()
                    .is_some_and(|node| node.get_connection_info().addr() == master.addr()) =>
            {
                return Ok(());
            }
            Slot::Ready(link) => link
                .endpoint
                .node()
                .map(|node| node.get_connection_info().addr().to_string()),
            Slot::Unresolved => None,
        };
        let address = master.addr().to_string();
        let client = open_client(master, &self.inner.config)?;
        let manager = ConnectionManager::new_lazy_with_config(
            client.clone(),
            manager_config(&self.inner.config),
        )
        .map_err(|e| Error::from_redis(&e, Context::new("connect", "")))?;
        let shared = NodeOrCluster::Node(SharedNode::Manager(manager));
        *slot = Slot::ready(Endpoint::Node(client), shared);
        self.inner.link_generation.send_modify(|moves| *moves += 1);
        let endpoint = self.inner.config.endpoint();
        match previous {
            Some(previous) => {
                tracing::warn!(target: TRACE_TARGET, endpoint, from = %previous, to = %address, "redis master changed; the shared connection moved to the new master");
            }
            None => {
                tracing::info!(target: TRACE_TARGET, endpoint, master = %address, "redis master found")
            }
        }
        Ok(())
    }

    /// Starts a lookup of the master in the background after `error`
    /// (Sentinel only), when a failover could explain it: for failures
    /// outside the retry loop (a write whose outcome is unknown, a blocking
    /// read, a subscription).
    pub(crate) fn suspect_master(&self, error: &Error, failed_at: Instant) {
        if !matches!(self.inner.source, Source::Sentinel(_)) || !error.is_transient() {
            return;
        }
        if self.is_shut_down() {
            return;
        }
        let client = self.clone();
        tokio::spawn(async move {
            let _ = client.refresh_master(Some(failed_at), None).await;
        });
    }

    /// The Sentinels to count the master's replicas with, when writes
    /// wait for all of them ([`AckReplicas::All`]).
    fn counts_replicas(&self) -> Option<&MasterLookup> {
        let awaits_all = self
            .inner
            .config
            .replica_acks
            .is_some_and(|acks| acks.replicas == AckReplicas::All);
        match &self.inner.source {
            Source::Sentinel(lookup) if awaits_all => Some(lookup),
            _ => None,
        }
    }

    /// With [`AckReplicas::All`], counts the replicas of the current master
    /// again, in the background.
    pub(super) fn recount_replicas(&self) {
        if self.counts_replicas().is_none() {
            return;
        }
        let link = match &*self.inner.link.read().unwrap_or_else(|e| e.into_inner()) {
            Slot::Ready(link) => Arc::clone(link),
            Slot::Unresolved | Slot::Closed => return,
        };
        let client = self.clone();
        tokio::spawn(async move { client.count_replicas(&link).await });
    }

    /// With [`AckReplicas::All`], counts the replicas of the master `link`
    /// goes to and records the count for its acknowledgements: those the
    /// Sentinels list that a write must reach (see
    /// [`MasterLookup::listed_replicas`]) and those attached to the master
    /// now (`INFO replication`: the Sentinels learn of a new one only when
    /// they next poll the master), each once. During a failover the
    /// Sentinels still list the node being promoted as a replica; it is
    /// not its own. A count that fails keeps the last one; each `WAIT`
    /// also raises it when more replicas are attached (see
    /// [`AckBatch`](crate::transport::acks::AckBatch)).
    pub(super) async fn count_replicas(&self, link: &Link) -> Option<u32> {
        let lookup = self.counts_replicas()?;
        let timeout = self.inner.config.connect_timeout;
        let mut replicas = match lookup.listed_replicas(timeout).await {
            Ok(listed) => listed,
            Err(e) => {
                tracing::warn!(target: TRACE_TARGET, endpoint = self.inner.config.endpoint(), "could not count the master's replicas (REDIS_WAIT_REPLICAS=all keeps the last count): {e}");
                return None;
            }
        };
        if let Some(node) = link.endpoint.node() {
            replicas.remove(&node.get_connection_info().addr().to_string());
        }
        let mut cmd = redis::cmd("INFO");
        cmd.arg("replication");
        let mut conn = link.shared.clone();
        let asked = cmd.query_async::<String>(&mut conn);
        if let Ok(Ok(info)) = tokio::time::timeout(timeout, asked).await {
            replicas.extend(attached_replicas(&info));
        }
        let count = u32::try_from(replicas.len()).unwrap_or(u32::MAX);
        link.acks.set_all_replicas(count);
        Some(count)
    }
}

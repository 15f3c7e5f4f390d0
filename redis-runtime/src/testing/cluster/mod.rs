//! A throwaway Redis Cluster: three masters and three replicas, each its
//! own cluster-enabled `redis-server` process on a free loopback port
//! (whose cluster bus port, 10000 higher, is free too), in its own
//! directory of one temporary directory, all killed when the
//! [`ClusterTopology`] is dropped.
//!
//! The harness forms the cluster itself over redis-rs, as `redis-cli
//! --cluster create --cluster-replicas 1` would but without the CLI or its
//! one-second sleeps: distinct config epochs (`CLUSTER SET-CONFIG-EPOCH`),
//! `CLUSTER ADDSLOTSRANGE` on the masters, `CLUSTER MEET`, then `CLUSTER
//! REPLICATE`. Only the server binary is needed ([`server_bin`], so
//! `REDIS_SERVER_BIN` may name a Valkey binary).
//!
//! Tests move a slot by hand ([`ClusterTopology::migrate_slot`]), fail over
//! by hand ([`ClusterTopology::failover`]) and crash a master
//! ([`ClusterTopology::kill_master`]); each returns once the cluster
//! agrees. Every wait polls with a deadline and panics, naming what it
//! waited for, what it last saw and the tail of every node's log, rather
//! than hang or guess a sleep. The nodes are fast on purpose: a node is
//! failing after 1 s without an answer (`cluster-node-timeout 1000`).
//!
//! ```no_run
//! use redis_runtime::testing::ClusterTopology;
//!
//! let mut topology = ClusterTopology::start();
//! let masters = topology.masters();
//! assert_eq!(masters.len(), 3);
//! let slot = 0;
//! let owner = topology.master_of_slot(slot);
//! let other = masters.iter().copied().find(|&port| port != owner).expect("3 masters");
//! topology.migrate_slot(slot, other);
//! let promoted = topology.failover(other);
//! let survivor = topology.kill_master(promoted);
//! assert_eq!(topology.master_of_slot(slot), survivor);
//! ```

mod launch;
mod migrate;
mod nodes;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use launch::{check_slot, start_node};
use nodes::{NodeEntry, expect_replica_entry, expect_serving, info_field, parse_cluster_nodes};

use super::process::{Process, connect, live_ports};
use super::wait::{Awaited, FAILOVER_WAIT};
use super::{HarnessError, server_bin};

/// How many masters share the slots; each has one replica.
const MASTERS: usize = 3;
/// Masters and replicas.
const NODES: usize = 2 * MASTERS;
/// Redis Cluster's hash slots.
const SLOTS: u16 = 16384;
/// A node's cluster bus listens this much above its port.
const BUS_PORT_OFFSET: u16 = 10000;
/// Milliseconds without an answer before a node calls another failing.
const NODE_TIMEOUT_MS: u64 = 1000;
/// Free ports tried for one whose bus port is free as well.
const PORT_ATTEMPTS: usize = 50;
/// How long the live nodes get to agree (on a slot's master, the masters,
/// a moved slot).
const AGREE_WAIT: Duration = Duration::from_secs(10);
/// How long a master's replica gets to be in sync before a failover.
const REPLICA_WAIT: Duration = Duration::from_secs(20);
/// A manual failover the server has not completed after this long has
/// timed out (the server gives it 5 s) and is asked for again.
const MANUAL_FAILOVER_RETRY: Duration = Duration::from_secs(6);
/// Keys moved per `MIGRATE`.
const MIGRATE_BATCH: usize = 10;
/// `MIGRATE`'s own timeout, in milliseconds.
const MIGRATE_TIMEOUT_MS: u64 = 5000;
/// Read timeout of a `MIGRATE`, which waits for the target.
const MIGRATE_IO_TIMEOUT: Duration = Duration::from_millis(MIGRATE_TIMEOUT_MS + 1000);

/// Three masters and three replicas on free loopback ports, cluster-enabled;
/// see the module docs. Every process is killed on drop.
///
/// The six nodes keep their ports for the topology's life, in the order
/// [`seed_ports`](Self::seed_ports) gives them: the first three were the
/// masters at start (serving slots 0-5460, 5461-10922 and 10923-16383),
/// the fourth to sixth their replicas, in the same order. Which nodes are
/// masters now is whatever the cluster says ([`masters`](Self::masters)).
/// Persistence is off.
#[derive(Debug)]
pub struct ClusterTopology {
    /// The nodes, in a fixed order (see the type's docs).
    nodes: Vec<Process>,
    /// Dropped after the processes (fields drop in order), so they never
    /// run in a deleted directory.
    _dir: tempfile::TempDir,
}

impl ClusterTopology {
    /// Starts six nodes and forms the cluster, returning once every node
    /// reports `cluster_state:ok` with all 16384 slots served, every node
    /// sees the three masters with their slots and the three replicas with
    /// their masters, and every replica is in sync (`master_link_status:up`).
    /// Panics with an actionable message if the binary is missing, a node
    /// does not start, or the cluster does not come together within 20 s.
    /// It takes about 2 s: a new master stays `fail` for its first 2 s.
    pub fn start() -> Self {
        Self::start_with_args(|_| Vec::new())
    }

    /// [`start`](Self::start), giving each node the arguments `extra`
    /// returns for its port as well (a TLS port and certificates, say).
    /// The harness itself keeps talking to each node on that port.
    pub fn start_with_args(extra: impl Fn(u16) -> Vec<String>) -> Self {
        match Self::try_start(&extra) {
            Ok(topology) => topology,
            Err(e) => panic!("cannot start a Redis Cluster topology: {e}"),
        }
    }

    fn try_start(extra: &dyn Fn(u16) -> Vec<String>) -> Result<Self, HarnessError> {
        let bin = server_bin();
        let dir = tempfile::Builder::new()
            .prefix("redis-runtime-cluster-")
            .tempdir()?;
        let nodes = (0..NODES)
            .map(|i| start_node(&bin, &dir.path().join(format!("node-{i}")), extra))
            .collect::<Result<Vec<_>, _>>()?;
        let topology = Self { nodes, _dir: dir };
        topology.form();
        Ok(topology)
    }

    /// All six nodes' ports, always in the same order (see the type's
    /// docs), killed nodes included.
    pub fn seed_ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|node| node.port).collect()
    }

    /// `redis+cluster://127.0.0.1:<p1>,127.0.0.1:<p2>,…`: all six nodes, in
    /// [`seed_ports`](Self::seed_ports) order, killed nodes included.
    pub fn url(&self) -> String {
        let addrs: Vec<String> = self
            .seed_ports()
            .iter()
            .map(|port| format!("127.0.0.1:{port}"))
            .collect();
        format!("redis+cluster://{}", addrs.join(","))
    }

    /// `redis://127.0.0.1:<port>`: for talking to one node directly.
    pub fn node_url(&self, port: u16) -> String {
        format!("redis://127.0.0.1:{port}")
    }

    /// The port of the master serving `slot` now: the live master every
    /// live node's `CLUSTER NODES` names for it. Waits up to 10 s for them
    /// to agree (and for a crashed master's slot to be taken over), then
    /// panics. Panics if `slot` is not below 16384.
    pub fn master_of_slot(&self, slot: u16) -> u16 {
        check_slot(slot);
        let what = format!("the live nodes to agree on the master of slot {slot}");
        self.wait_until(AGREE_WAIT, &what, || self.agreed_master_of(slot))
    }

    /// The port of the master serving `key` now: [`master_of_slot`] of
    /// its slot, which a node computes (`CLUSTER KEYSLOT`). Panics as
    /// [`master_of_slot`] does, or if no node answers.
    ///
    /// [`master_of_slot`]: Self::master_of_slot
    pub fn master_of_key(&self, key: &str) -> u16 {
        let port = self.masters()[0];
        let slot = connect(&self.node_url(port))
            .and_then(|mut conn| {
                redis::cmd("CLUSTER")
                    .arg("KEYSLOT")
                    .arg(key)
                    .query(&mut conn)
                    .map_err(|e| e.to_string())
            })
            .unwrap_or_else(|e| self.fail(&format!("CLUSTER KEYSLOT {key} on port {port}: {e}")));
        self.master_of_slot(slot)
    }

    /// The live masters every live node agrees on, ordered by the first
    /// slot they serve (masters without slots last). Waits up to 10 s for
    /// the nodes to agree, then panics.
    pub fn masters(&self) -> Vec<u16> {
        self.wait_until(AGREE_WAIT, "the live nodes to agree on the masters", || {
            self.agreed_masters()
        })
    }

    /// Fails the master on `master_port` over to its replica by hand
    /// (`CLUSTER FAILOVER` on the replica) and waits until it is complete:
    /// the replica's role is master, every live node sees it as a master
    /// serving the old master's slots and the old master as its replica,
    /// and the old master replicates from it with `master_link_status:up`.
    /// Returns the new master's port.
    ///
    /// It first waits (up to 20 s) for a replica in sync with the master;
    /// the request is repeated if the server's own 5 s for a manual
    /// failover run out. Panics if `master_port` is not a master serving
    /// slots, or on timeout (20 s).
    pub fn failover(&self, master_port: u16) -> u16 {
        let (master_id, slots) = self.serving_master(master_port);
        let what = format!("a replica of port {master_port} in sync with it");
        let replica = self.wait_until(REPLICA_WAIT, &what, || self.synced_replica_of(master_port));
        let replica_id = self.node_id(replica);
        let mut requested: Option<Instant> = None;
        let what = format!("the manual failover from port {master_port} to port {replica}");
        self.wait_until(FAILOVER_WAIT, &what, || {
            let due = requested.is_none_or(|at| at.elapsed() > MANUAL_FAILOVER_RETRY);
            if due && self.expect_role(replica, "master").is_err() {
                self.query::<()>(replica, &["CLUSTER", "FAILOVER"])?;
                requested = Some(Instant::now());
            }
            self.expect_role(replica, "master")?;
            for &port in &self.live_ports() {
                let view = self.view(port)?;
                expect_serving(&view, port, &replica_id, replica, &slots)?;
                expect_replica_entry(&view, port, &master_id, master_port, &replica_id)?;
            }
            self.expect_replica_of(master_port, replica)
        });
        replica
    }

    /// Kills the master on `port` (SIGKILL, like a crash), then waits until
    /// one of its replicas serves its slots as a master and every live node
    /// agrees: each reports `cluster_state:ok`, flags the killed node
    /// `fail`, and sees the promoted node serving the killed one's slots.
    /// Returns the promoted node's port. The killed node stays down (its
    /// port stays in [`seed_ports`](Self::seed_ports)).
    ///
    /// Panics if `port` is not a live master serving slots, has no replica,
    /// or no replica takes over within 20 s (failure detection takes the
    /// 1 s node timeout, the election about 1 s more).
    pub fn kill_master(&mut self, port: u16) -> u16 {
        let (id, slots) = self.serving_master(port);
        let candidates = self.replicas_of(port);
        if candidates.is_empty() {
            self.fail(&format!(
                "cannot kill the master on port {port}: no live node replicates from it, so \
                 none would take over"
            ));
        }
        self.node_mut(port).stop();
        let what = format!(
            "a replica of the killed master on port {port} (one of {candidates:?}) to take over"
        );
        self.wait_until(FAILOVER_WAIT, &what, || {
            let (first, _) = slots[0];
            let promoted = self.agreed_master_of(first)?;
            if !candidates.contains(&promoted) {
                return Err(format!("port {promoted} serves slot {first}"));
            }
            self.expect_role(promoted, "master")?;
            let promoted_id = self.node_id_checked(promoted)?;
            for &live in &self.live_ports() {
                let info: String = self.query(live, &["CLUSTER", "INFO"])?;
                let state = info_field(&info, "cluster_state");
                if state != "ok" {
                    return Err(format!("port {live} has cluster_state:{state}"));
                }
                let view = self.view(live)?;
                match view.iter().find(|entry| entry.id == id) {
                    Some(entry) if entry.has_flag("fail") => {}
                    Some(entry) => {
                        return Err(format!(
                            "port {live} sees the killed node with flags {}",
                            entry.flags.join(",")
                        ));
                    }
                    None => return Err(format!("port {live} does not list the killed node")),
                }
                expect_serving(&view, live, &promoted_id, promoted, &slots)?;
            }
            Ok(promoted)
        })
    }

    /// Makes the node on `port` tell the cluster, and so the slot map
    /// clients read, that it listens on `announced` (its cluster bus port
    /// stays where it is): put a [`Proxy`](super::Proxy) there and every
    /// client connection to the node goes through it. Returns once every
    /// live node lists it at `announced`; `announce_port(port, port)`
    /// undoes it. While a node is announced elsewhere, the methods that
    /// name nodes by port (`masters`, `master_of_slot`, …) see the
    /// announced port, which is no node's: call them after undoing it.
    /// Panics if a node refuses the setting or the nodes do not agree
    /// within 10 s.
    pub fn announce_port(&self, port: u16, announced: u16) {
        let id = self.node_id(port);
        let bus = port
            .checked_add(BUS_PORT_OFFSET)
            .unwrap_or_else(|| self.fail(&format!("port {port} has no bus port")))
            .to_string();
        let announced_arg = announced.to_string();
        let port_arg = if announced == port {
            "0"
        } else {
            &announced_arg
        };
        let bus_arg = if announced == port { "0" } else { &bus };
        self.command::<()>(
            port,
            &["CONFIG", "SET", "cluster-announce-bus-port", bus_arg],
        );
        self.command::<()>(port, &["CONFIG", "SET", "cluster-announce-port", port_arg]);
        let what = format!("every node to list port {port}'s node at port {announced}");
        self.wait_until(AGREE_WAIT, &what, || {
            for live in self.live_ports() {
                let view = self.view(live)?;
                match view.iter().find(|entry| entry.id == id) {
                    Some(entry) if entry.port == announced => {}
                    Some(entry) => {
                        return Err(format!("port {live} lists it at port {}", entry.port));
                    }
                    None => return Err(format!("port {live} does not list it")),
                }
            }
            Ok(())
        });
    }

    /// The live masters, if every live node sees the same ones.
    fn agreed_masters(&self) -> Result<Vec<u16>, String> {
        let live = self.live_ports();
        let mut agreed: Option<(u16, Vec<u16>)> = None;
        for &port in &live {
            let view = self.view(port)?;
            let mut masters: Vec<(u16, u16)> = view
                .iter()
                .filter(|entry| {
                    entry.has_flag("master") && !entry.failing() && live.contains(&entry.port)
                })
                .map(|entry| {
                    let first = entry.slots.iter().map(|&(first, _)| first).min();
                    (first.unwrap_or(SLOTS), entry.port)
                })
                .collect();
            masters.sort_unstable();
            let masters: Vec<u16> = masters.into_iter().map(|(_, port)| port).collect();
            match &agreed {
                None => agreed = Some((port, masters)),
                Some((_, seen)) if *seen == masters => {}
                Some((other, seen)) => {
                    return Err(format!(
                        "port {other} sees masters {seen:?}, port {port} sees {masters:?}"
                    ));
                }
            }
        }
        agreed
            .map(|(_, masters)| masters)
            .ok_or_else(|| "no node is live".to_string())
    }

    /// The live master serving `slot`, if every live node names the same.
    fn agreed_master_of(&self, slot: u16) -> Result<u16, String> {
        let live = self.live_ports();
        let mut agreed: Option<(u16, u16)> = None;
        for &port in &live {
            let view = self.view(port)?;
            let Some(owner) = view.iter().find(|entry| entry.serves(slot)) else {
                return Err(format!("port {port} sees nobody serving slot {slot}"));
            };
            if owner.failing() || !live.contains(&owner.port) {
                return Err(format!(
                    "port {port} sees slot {slot} served by port {}, which is down ({})",
                    owner.port,
                    owner.flags.join(",")
                ));
            }
            match agreed {
                None => agreed = Some((port, owner.port)),
                Some((_, seen)) if seen == owner.port => {}
                Some((other, seen)) => {
                    return Err(format!(
                        "port {other} sees slot {slot} served by port {seen}, port {port} by \
                         port {}",
                        owner.port
                    ));
                }
            }
        }
        agreed
            .map(|(_, owner)| owner)
            .ok_or_else(|| "no node is live".to_string())
    }

    /// The node id and slot ranges of the master on `port`, as it sees
    /// itself; panics if it is not a master serving slots.
    fn serving_master(&self, port: u16) -> (String, Vec<(u16, u16)>) {
        if !self.live_ports().contains(&port) {
            self.fail(&format!("port {port} is not a live node of this cluster"));
        }
        let view = self
            .view(port)
            .unwrap_or_else(|e| self.fail(&format!("cannot inspect port {port}: {e}")));
        match view.into_iter().find(|entry| entry.has_flag("myself")) {
            Some(me) if me.has_flag("master") && !me.slots.is_empty() => (me.id, me.slots),
            Some(me) => self.fail(&format!(
                "port {port} is not a master serving slots: flags {}, slots {:?}",
                me.flags.join(","),
                me.slots
            )),
            None => self.fail(&format!("port {port} does not list itself")),
        }
    }

    /// The live nodes that replicate from the node on `master`, by their
    /// own `INFO replication`, whatever the state of their link.
    fn replicas_of(&self, master: u16) -> Vec<u16> {
        self.live_ports()
            .into_iter()
            .filter(|&port| port != master)
            .filter(|&port| {
                self.query::<String>(port, &["INFO", "replication"])
                    .is_ok_and(|info| {
                        matches!(info_field(&info, "role"), "slave" | "replica")
                            && self.is_port_of(master, info_field(&info, "master_port"))
                    })
            })
            .collect()
    }

    /// A live node replicating from the node on `master` with its link up.
    fn synced_replica_of(&self, master: u16) -> Result<u16, String> {
        let mut seen = Vec::new();
        for port in self.live_ports() {
            if port == master {
                continue;
            }
            match self.expect_replica_of(port, master) {
                Ok(()) => return Ok(port),
                Err(e) => seen.push(e),
            }
        }
        Err(seen.join("; "))
    }

    /// Whether `port` (as `INFO replication` names a replica's master) is
    /// one the node on `node` listens on: that port, or its TLS port, which
    /// replicas use when the nodes replicate over TLS.
    fn is_port_of(&self, node: u16, port: &str) -> bool {
        if port == node.to_string() {
            return true;
        }
        self.query::<Vec<String>>(node, &["CONFIG", "GET", "tls-port"])
            .is_ok_and(|reply| reply.get(1).is_some_and(|tls| tls == port && tls != "0"))
    }

    /// The node on `port` replicates from the node on `master`, with its
    /// link up (`INFO replication`).
    fn expect_replica_of(&self, port: u16, master: u16) -> Result<(), String> {
        let info: String = self.query(port, &["INFO", "replication"])?;
        let role = info_field(&info, "role");
        let master_port = info_field(&info, "master_port");
        let link = info_field(&info, "master_link_status");
        if matches!(role, "slave" | "replica")
            && self.is_port_of(master, master_port)
            && link == "up"
        {
            Ok(())
        } else {
            Err(format!(
                "the node on port {port} has role:{role}, master_port:{master_port}, \
                 master_link_status:{link} (waiting for a replica of port {master}, link up)"
            ))
        }
    }

    /// The first word of the node's `ROLE` reply is `expected`.
    fn expect_role(&self, port: u16, expected: &str) -> Result<(), String> {
        let reply: Vec<redis::Value> = self.query(port, &["ROLE"])?;
        let first = reply.into_iter().next().unwrap_or(redis::Value::Nil);
        let role: String =
            redis::from_redis_value(first).map_err(|e| format!("ROLE on port {port}: {e}"))?;
        match role.as_str() {
            role if role == expected => Ok(()),
            // Valkey may say `replica` where Redis says `slave`.
            "replica" if expected == "slave" => Ok(()),
            role => Err(format!("the node on port {port} is a {role}")),
        }
    }

    /// Every node's `CLUSTER NODES`, as the node on `port` sees it.
    fn view(&self, port: u16) -> Result<Vec<NodeEntry>, String> {
        let text: String = self.query(port, &["CLUSTER", "NODES"])?;
        parse_cluster_nodes(&text).map_err(|e| format!("CLUSTER NODES on port {port}: {e}"))
    }

    /// The node's own id (`CLUSTER MYID`), panicking if it does not answer.
    fn node_id(&self, port: u16) -> String {
        self.node_id_checked(port)
            .unwrap_or_else(|e| self.fail(&format!("cannot read a node id: {e}")))
    }

    fn node_id_checked(&self, port: u16) -> Result<String, String> {
        self.query(port, &["CLUSTER", "MYID"])
    }

    /// The ports of the nodes not killed.
    fn live_ports(&self) -> Vec<u16> {
        live_ports(&self.nodes)
    }

    fn node_mut(&mut self, port: u16) -> &mut Process {
        let ports = self.seed_ports();
        match self.nodes.iter_mut().find(|node| node.port == port) {
            Some(node) => node,
            None => panic!("port {port} is not a node of this cluster ({ports:?})"),
        }
    }

    /// One command on the node on `port`, errors as text.
    /// A connection the node closed under it (a test killing clients
    /// with `CLIENT KILL` while the harness works) is opened again, and
    /// the command sent again, up to twice: the harness's commands are
    /// reads, settings, or requests its waits repeat anyway.
    fn query<T: redis::FromRedisValue>(&self, port: u16, args: &[&str]) -> Result<T, String> {
        let (name, rest) = args.split_first().expect("a command has a name");
        let mut attempts = 0;
        loop {
            attempts += 1;
            let mut conn =
                connect(&self.node_url(port)).map_err(|e| format!("port {port}: {e}"))?;
            match redis::cmd(name).arg(rest).query(&mut conn) {
                Ok(reply) => return Ok(reply),
                Err(e) if attempts < 3 && (e.is_connection_dropped() || e.is_io_error()) => {}
                Err(e) => return Err(format!("{} on port {port}: {e}", args.join(" "))),
            }
        }
    }

    /// [`query`](Self::query), panicking with every log tail on failure.
    fn command<T: redis::FromRedisValue>(&self, port: u16, args: &[&str]) -> T {
        self.query(port, args).unwrap_or_else(|e| self.fail(&e))
    }

    /// Panics with `what` and every node's log tail.
    fn fail(&self, what: &str) -> ! {
        panic!(
            "{what} (cluster {:?}); logs: {}",
            self.seed_ports(),
            self.log_tails()
        )
    }
}

impl Awaited for ClusterTopology {
    fn name(&self) -> String {
        format!("cluster {:?}", self.seed_ports())
    }

    fn log_tails(&self) -> String {
        let mut out = String::new();
        for node in &self.nodes {
            let _ = write!(
                out,
                "\n  node on port {}{}: {}",
                node.port,
                if node.is_started() { "" } else { " (killed)" },
                node.log_tail()
            );
        }
        out
    }
}

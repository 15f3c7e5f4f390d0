//! A throwaway Redis Sentinel topology: one master, one replica (or more,
//! [`SentinelOptions::replicas`]) and three sentinels, each its own
//! process on a free loopback port, in one temporary directory, all
//! killed when the [`SentinelTopology`] is dropped.
//!
//! Failover tests drive it: [`SentinelTopology::failover`] asks the
//! sentinels for a manual failover (or one sentinel:
//! [`SentinelTopology::failover_via`]) and waits until it is complete;
//! [`SentinelTopology::kill_master`] crashes the master and
//! [`SentinelTopology::wait_for_new_master`] waits for the automatic
//! failover. A killed node is not brought back: without persistence it
//! would come back empty, and the sentinels may promote it or sync the
//! others from it (Redis's Sentinel documentation warns against restarting
//! such a node automatically).
//!
//! Every wait polls with a deadline and panics, naming what it waited for,
//! what it last saw and the tail of every process's log, rather than hang
//! or guess a sleep. The sentinels are fast on purpose: a master is down
//! after 1 s without an answer, and the quorum is 2 of 3.
//!
//! ```no_run
//! use redis_runtime::testing::SentinelTopology;
//!
//! let mut topology = SentinelTopology::start("mymaster");
//! let first = topology.master_port();
//! let second = topology.failover();
//! assert_ne!(first, second);
//! let killed = topology.kill_master();
//! assert_eq!(topology.wait_for_new_master(killed), first);
//! ```

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use super::process::{Process, connect, live_ports, percent_encode};
use super::wait::{Awaited, CONVERGE_TIMEOUT, FAILOVER_WAIT};
use super::{HarnessError, server_bin};

mod args;

use args::{start_data_node, start_sentinel};

/// How many sentinels watch the master.
const SENTINELS: usize = 3;
/// How many of them must agree that the master is down.
const QUORUM: usize = 2;
/// Milliseconds without a valid answer before a sentinel calls a node down.
const DOWN_AFTER_MS: u64 = 1000;
/// Milliseconds a sentinel gives a failover before trying again.
const FAILOVER_TIMEOUT_MS: u64 = 4000;
/// How long a node gets to become a replica every sentinel knows as one:
/// a sentinel corrects a node's role some 8 s after it sees it wrong, and
/// each looks at a replica only every 10 s.
const REPLICA_WAIT: Duration = Duration::from_secs(30);

/// How [`SentinelTopology::start_with`] builds the topology: what it
/// protects with passwords, how many replicas, what else the data nodes
/// run with. The default protects nothing and has one replica.
///
/// ```no_run
/// use redis_runtime::testing::{SentinelOptions, SentinelTopology};
///
/// let topology = SentinelTopology::start_with(
///     "mymaster",
///     SentinelOptions {
///         node_password: Some("node secret".into()),
///         ..SentinelOptions::default()
///     },
/// );
/// // redis+sentinel://:node%20secret@127.0.0.1:…/mymaster
/// # drop(topology.url());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentinelOptions {
    /// The data nodes' `requirepass` (and `masterauth`, since either node
    /// may become a replica); the sentinels log in with it (`sentinel
    /// auth-pass`). `None`: no password.
    pub node_password: Option<String>,
    /// The sentinels' own `requirepass`; they log in to each other with it
    /// (`sentinel sentinel-pass`). `None`: no password.
    pub sentinel_password: Option<String>,
    /// How many replicas the master has (at least 1).
    pub replicas: usize,
    /// More arguments for every data node, e.g. `["--min-replicas-to-write",
    /// "2"]`.
    pub node_args: Vec<String>,
}

impl Default for SentinelOptions {
    fn default() -> Self {
        Self {
            node_password: None,
            sentinel_password: None,
            replicas: 1,
            node_args: Vec::new(),
        }
    }
}

/// One master, its replicas and three sentinels on free loopback ports;
/// see the module docs. Every process is killed on drop.
///
/// The data nodes keep their ports for the topology's life, in the order
/// [`node_ports`](Self::node_ports) gives them; which one is the master is
/// whatever the sentinels say ([`master_port`](Self::master_port)).
/// Persistence is off, so a killed node stays down.
#[derive(Debug)]
pub struct SentinelTopology {
    master_name: String,
    options: SentinelOptions,
    /// The data nodes, in a fixed order (the first was the first master).
    nodes: Vec<Process>,
    sentinels: Vec<Process>,
    /// Dropped after the processes (fields drop in order), so they never
    /// run in a deleted directory.
    _dir: tempfile::TempDir,
}

impl SentinelTopology {
    /// Starts a topology without passwords, panicking with an actionable
    /// message if it cannot; see [`SentinelTopology::start_with`].
    pub fn start(master_name: &str) -> Self {
        Self::start_with(master_name, SentinelOptions::default())
    }

    /// Starts the master, its replicas and three sentinels monitoring it as
    /// `master_name` (letters, digits, `.`, `_` and `-`), and returns once
    /// every replica is in sync and every sentinel knows the two other
    /// sentinels and the replicas. Panics with an actionable message if the
    /// binary is missing, a process does not start, `options.replicas` is
    /// 0, or the topology does not come together within 20 s.
    pub fn start_with(master_name: &str, options: SentinelOptions) -> Self {
        assert!(
            !master_name.is_empty()
                && master_name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')),
            "the master name {master_name:?} must be made of letters, digits, `.`, `_` and `-`"
        );
        assert!(options.replicas >= 1, "a Sentinel topology needs a replica");
        match Self::try_start_with(master_name, options) {
            Ok(topology) => topology,
            Err(e) => panic!("cannot start a Sentinel topology: {e}"),
        }
    }

    fn try_start_with(master_name: &str, options: SentinelOptions) -> Result<Self, HarnessError> {
        let bin = server_bin();
        let dir = tempfile::Builder::new()
            .prefix("redis-runtime-sentinel-")
            .tempdir()?;
        let master = start_data_node(&bin, &dir.path().join("node-0"), &options, None)?;
        let master_port = master.port;
        let mut nodes = vec![master];
        for i in 1..=options.replicas {
            let dir = dir.path().join(format!("node-{i}"));
            nodes.push(start_data_node(&bin, &dir, &options, Some(master_port))?);
        }
        let sentinels = (0..SENTINELS)
            .map(|i| {
                let dir = dir.path().join(format!("sentinel-{i}"));
                start_sentinel(&bin, &dir, master_name, master_port, &options)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let topology = Self {
            master_name: master_name.to_string(),
            options,
            nodes,
            sentinels,
            _dir: dir,
        };
        topology.wait_until(CONVERGE_TIMEOUT, "the topology to come together", || {
            topology.converged()
        });
        Ok(topology)
    }

    /// The name the sentinels monitor the master as.
    pub fn master_name(&self) -> &str {
        &self.master_name
    }

    /// The sentinels' ports, in the order [`sentinel_addrs`](Self::sentinel_addrs)
    /// and the URL list them.
    pub fn sentinel_ports(&self) -> Vec<u16> {
        self.sentinels
            .iter()
            .map(|sentinel| sentinel.port)
            .collect()
    }

    /// The sentinels' addresses, `127.0.0.1:<port>` each.
    pub fn sentinel_addrs(&self) -> Vec<String> {
        self.sentinels
            .iter()
            .map(|sentinel| format!("127.0.0.1:{}", sentinel.port))
            .collect()
    }

    /// `redis+sentinel://127.0.0.1:<p1>,127.0.0.1:<p2>,127.0.0.1:<p3>/<master name>`,
    /// with `:<node password>@` (percent-encoded) after the `//` when the
    /// nodes have one. The sentinels' own password is not in it.
    pub fn url(&self) -> String {
        format!(
            "redis+sentinel://{}{}/{}",
            self.userinfo(),
            self.sentinel_addrs().join(","),
            self.master_name
        )
    }

    /// The data nodes' ports, always in the same order; the first was the
    /// master at start, the others its replicas.
    pub fn node_ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|node| node.port).collect()
    }

    /// The master's port as the first sentinel that answers reports it
    /// (`SENTINEL GET-MASTER-ADDR-BY-NAME`): the sentinels' view, which
    /// lags a crash by the time they take to fail over. Panics if no
    /// sentinel answers.
    pub fn master_port(&self) -> u16 {
        let mut seen = Vec::new();
        for sentinel in &self.sentinels {
            match self.reported_master(sentinel) {
                Ok(port) => return port,
                Err(e) => seen.push(format!("127.0.0.1:{}: {e}", sentinel.port)),
            }
        }
        panic!(
            "no sentinel reports the master {:?}: {}",
            self.master_name,
            seen.join("; ")
        )
    }

    /// `redis://127.0.0.1:<port>`, with `:<node password>@` (percent-encoded)
    /// when the nodes have one: for inspecting a data node directly.
    pub fn node_url(&self, port: u16) -> String {
        format!("redis://{}127.0.0.1:{port}", self.userinfo())
    }

    /// Fails over by hand (`SENTINEL FAILOVER`, sent to the first sentinel
    /// that accepts it) and waits until it is complete; returns the new
    /// master's port. See [`failover_via`](Self::failover_via).
    pub fn failover(&self) -> u16 {
        self.failover_with(None)
    }

    /// Fails over by hand, sending `SENTINEL FAILOVER` to the sentinel on
    /// `sentinel` (one of [`sentinel_ports`](Self::sentinel_ports)), which
    /// then leads it, and waits until it is complete: every sentinel that
    /// answers reports a new master, its `ROLE` is `master`, and every
    /// other live data node (the old master included) replicates from it
    /// with `master_link_status:up`. Returns the new master's port.
    ///
    /// It first waits (up to 30 s) until every other live node replicates
    /// from the master with its link up and every sentinel that answers has
    /// seen it as such a replica (`SENTINEL REPLICAS`): just after another
    /// failover the sentinels would otherwise promote a node that is not
    /// in sync yet, or one of them would turn the promoted node back into a
    /// replica. Then the request is repeated for up to 20 s while the
    /// sentinels refuse (`NOGOODSLAVE`, `INPROG`), and the failover gets
    /// 20 s. The old master only becomes a replica when the sentinels
    /// reconfigure it, about 10 s after the switch on Redis 7.0 (they wait
    /// 8 s before correcting a node's role), so a failover takes about
    /// 11 s. Panics on timeout, or if `sentinel` is not one of them.
    pub fn failover_via(&self, sentinel: u16) -> u16 {
        assert!(
            self.sentinel_ports().contains(&sentinel),
            "port {sentinel} is not a sentinel of this topology ({:?})",
            self.sentinel_ports()
        );
        self.failover_with(Some(sentinel))
    }

    fn failover_with(&self, via: Option<u16>) -> u16 {
        let old = self.master_port();
        let replicas = self.live_replicas_of(old);
        // The sentinels would promote a node they list as a replica before
        // it is in sync, and one that has not yet seen it replicate would
        // then turn it back into a replica: wait until every replica
        // replicates and every sentinel has seen it do so.
        let what =
            format!("ports {replicas:?} to be replicas of port {old} that every sentinel sees");
        self.wait_until(REPLICA_WAIT, &what, || {
            for &replica in &replicas {
                self.expect_replica_of(replica, old)?;
                self.sentinels_see_replica(replica, old)?;
            }
            Ok(())
        });
        self.wait_until(
            FAILOVER_WAIT,
            "the sentinels to accept SENTINEL FAILOVER",
            || self.request_failover(via),
        );
        let what = format!("the failover from port {old} to one of {replicas:?}");
        self.wait_until(FAILOVER_WAIT, &what, || {
            let new = self.agreed_master()?;
            if !replicas.contains(&new) {
                return Err(format!("the sentinels report port {new}"));
            }
            self.expect_role(new, "master")?;
            for port in self.live_ports().into_iter().filter(|&port| port != new) {
                self.expect_replica_of(port, new)?;
            }
            Ok(new)
        })
    }

    /// Kills the current master's process (SIGKILL, like a crash), as the
    /// sentinels report it, and returns its port. Does not wait for
    /// anything: see [`wait_for_new_master`](Self::wait_for_new_master).
    pub fn kill_master(&mut self) -> u16 {
        let port = self.master_port();
        self.node_mut(port).stop();
        port
    }

    /// Waits until every sentinel that answers reports a master other than
    /// `old_port`, and that node's `ROLE` is `master`; returns its port.
    /// Panics after 20 s.
    pub fn wait_for_new_master(&self, old_port: u16) -> u16 {
        let what = format!("the sentinels to promote a master other than port {old_port}");
        self.wait_until(FAILOVER_WAIT, &what, || {
            let new = self.agreed_master()?;
            if new == old_port {
                return Err(format!("the sentinels still report port {old_port}"));
            }
            if !self.node_ports().contains(&new) {
                return Err(format!("the sentinels report port {new}, not a data node"));
            }
            self.expect_role(new, "master")?;
            Ok(new)
        })
    }

    /// `:<percent-encoded node password>@`, or nothing.
    fn userinfo(&self) -> String {
        match &self.options.node_password {
            Some(password) => format!(":{}@", percent_encode(password)),
            None => String::new(),
        }
    }

    fn node_mut(&mut self, port: u16) -> &mut Process {
        let ports = self.node_ports();
        match self.nodes.iter_mut().find(|node| node.port == port) {
            Some(node) => node,
            None => panic!("port {port} is not a data node of this topology ({ports:?})"),
        }
    }

    /// The live data nodes other than `master`.
    fn live_replicas_of(&self, master: u16) -> Vec<u16> {
        let ports = self.node_ports();
        assert!(
            ports.contains(&master),
            "the sentinels report port {master}, not a data node ({ports:?})"
        );
        self.live_ports()
            .into_iter()
            .filter(|&port| port != master)
            .collect()
    }

    /// The data nodes not killed.
    fn live_ports(&self) -> Vec<u16> {
        live_ports(&self.nodes)
    }

    /// Start's condition: every replica is in sync, and every sentinel
    /// sees the master up, the two other sentinels and the replicas.
    fn converged(&self) -> Result<(), String> {
        for replica in &self.nodes[1..] {
            self.expect_replica_of(replica.port, self.nodes[0].port)?;
        }
        let expected_replicas = (self.nodes.len() - 1).to_string();
        for sentinel in &self.sentinels {
            let fields: HashMap<String, String> = self
                .sentinel_query(sentinel, &["SENTINEL", "MASTER", &self.master_name])
                .map_err(|e| format!("sentinel on port {}: {e}", sentinel.port))?;
            let field = |name: &str| fields.get(name).map_or("?", String::as_str);
            let replicas = fields
                .get("num-slaves")
                .or_else(|| fields.get("num-replicas"))
                .map_or("?", String::as_str);
            let others = field("num-other-sentinels");
            let expected_others = (SENTINELS - 1).to_string();
            if field("flags") != "master"
                || others != expected_others
                || replicas != expected_replicas
            {
                return Err(format!(
                    "sentinel on port {} sees flags={}, num-other-sentinels={others}, \
                     replicas={replicas}",
                    sentinel.port,
                    field("flags"),
                ));
            }
        }
        Ok(())
    }

    /// Asks the sentinel on `via` to fail over, or the first one that
    /// answers.
    fn request_failover(&self, via: Option<u16>) -> Result<(), String> {
        let mut seen = Vec::new();
        let asked = self
            .sentinels
            .iter()
            .filter(|sentinel| via.is_none_or(|port| sentinel.port == port));
        for sentinel in asked {
            let reply: Result<redis::Value, Unanswered> =
                self.sentinel_query(sentinel, &["SENTINEL", "FAILOVER", &self.master_name]);
            match reply {
                Ok(_) => return Ok(()),
                Err(e) => seen.push(format!("sentinel on port {}: {e}", sentinel.port)),
            }
        }
        Err(seen.join("; "))
    }

    /// The master every sentinel that answers reports, if they agree (and
    /// at least one answers).
    fn agreed_master(&self) -> Result<u16, String> {
        let mut agreed = None;
        let mut unreachable = Vec::new();
        for sentinel in &self.sentinels {
            let port = match self.reported_master(sentinel) {
                Ok(port) => port,
                Err(Unanswered::Unreachable(e)) => {
                    unreachable.push(format!("port {}: {e}", sentinel.port));
                    continue;
                }
                Err(Unanswered::Refused(e)) => {
                    return Err(format!("sentinel on port {}: {e}", sentinel.port));
                }
            };
            match agreed {
                None => agreed = Some(port),
                Some(other) if other == port => {}
                Some(other) => {
                    return Err(format!(
                        "the sentinels disagree: port {other}, and port {port} for the sentinel \
                         on port {}",
                        sentinel.port
                    ));
                }
            }
        }
        agreed.ok_or_else(|| format!("no sentinel answers: {}", unreachable.join("; ")))
    }

    /// Every sentinel that answers (at least one) lists the node on `port`
    /// as a healthy replica of the node on `master`, and last saw it say so
    /// itself (`role-reported`): none will still "correct" its role.
    fn sentinels_see_replica(&self, port: u16, master: u16) -> Result<(), String> {
        let mut answered = false;
        for sentinel in &self.sentinels {
            let args = ["SENTINEL", "REPLICAS", &self.master_name];
            let replicas: Vec<HashMap<String, String>> = match self.sentinel_query(sentinel, &args)
            {
                Ok(replicas) => replicas,
                Err(Unanswered::Unreachable(_)) => continue,
                Err(e) => return Err(format!("sentinel on port {}: {e}", sentinel.port)),
            };
            answered = true;
            let port_text = port.to_string();
            let Some(fields) = replicas
                .iter()
                .find(|fields| fields.get("port") == Some(&port_text))
            else {
                return Err(format!(
                    "the sentinel on port {} does not list port {port} as a replica",
                    sentinel.port
                ));
            };
            let field = |name: &str| fields.get(name).map_or("?", String::as_str);
            let flags = field("flags");
            let healthy = !flags
                .split(',')
                .any(|flag| matches!(flag, "s_down" | "o_down" | "disconnected"));
            if !healthy
                || !matches!(field("role-reported"), "slave" | "replica")
                || field("master-port") != master.to_string()
                || field("master-link-status") != "ok"
            {
                return Err(format!(
                    "the sentinel on port {} sees port {port} with flags={flags}, \
                     role-reported={}, master-port={}, master-link-status={}",
                    sentinel.port,
                    field("role-reported"),
                    field("master-port"),
                    field("master-link-status"),
                ));
            }
        }
        if answered {
            Ok(())
        } else {
            Err("no sentinel answers".to_string())
        }
    }

    /// What `sentinel` reports as the master's port.
    fn reported_master(&self, sentinel: &Process) -> Result<u16, Unanswered> {
        let reply: Option<Vec<String>> = self.sentinel_query(
            sentinel,
            &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", &self.master_name],
        )?;
        match reply.as_deref() {
            Some([_host, port]) => port
                .parse()
                .map_err(|_| Unanswered::Refused(format!("not a port: {port:?}"))),
            other => Err(Unanswered::Refused(format!(
                "unexpected reply to GET-MASTER-ADDR-BY-NAME: {other:?}"
            ))),
        }
    }

    fn sentinel_query<T: redis::FromRedisValue>(
        &self,
        sentinel: &Process,
        args: &[&str],
    ) -> Result<T, Unanswered> {
        let mut conn = connect(&self.sentinel_url(sentinel)).map_err(Unanswered::Unreachable)?;
        let (name, rest) = args.split_first().expect("a command has a name");
        redis::cmd(name)
            .arg(rest)
            .query(&mut conn)
            .map_err(|e| Unanswered::Refused(e.to_string()))
    }

    fn sentinel_url(&self, sentinel: &Process) -> String {
        match &self.options.sentinel_password {
            Some(password) => format!(
                "redis://:{}@127.0.0.1:{}",
                percent_encode(password),
                sentinel.port
            ),
            None => format!("redis://127.0.0.1:{}", sentinel.port),
        }
    }

    /// The first word of the data node's `ROLE` reply.
    fn role(&self, port: u16) -> Result<String, String> {
        let mut conn =
            connect(&self.node_url(port)).map_err(|e| format!("node on port {port}: {e}"))?;
        let reply: Vec<redis::Value> = redis::cmd("ROLE")
            .query(&mut conn)
            .map_err(|e| format!("ROLE on port {port}: {e}"))?;
        let first = reply.into_iter().next().unwrap_or(redis::Value::Nil);
        redis::from_redis_value(first).map_err(|e| format!("ROLE on port {port}: {e}"))
    }

    fn expect_role(&self, port: u16, expected: &str) -> Result<(), String> {
        match self.role(port)?.as_str() {
            role if role == expected => Ok(()),
            // Valkey may say `replica` where Redis says `slave`.
            "replica" if expected == "slave" => Ok(()),
            role => Err(format!("the node on port {port} is a {role}")),
        }
    }

    /// The node on `port` replicates from the node on `master`, with its
    /// link up (`INFO replication`).
    fn expect_replica_of(&self, port: u16, master: u16) -> Result<(), String> {
        let mut conn =
            connect(&self.node_url(port)).map_err(|e| format!("node on port {port}: {e}"))?;
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query(&mut conn)
            .map_err(|e| format!("INFO replication on port {port}: {e}"))?;
        let field = |name: &str| {
            info.lines()
                .find_map(|line| line.trim().strip_prefix(name)?.strip_prefix(':'))
                .unwrap_or("?")
        };
        let role = field("role");
        let master_port = field("master_port");
        let link = field("master_link_status");
        if matches!(role, "slave" | "replica") && master_port == master.to_string() && link == "up"
        {
            Ok(())
        } else {
            Err(format!(
                "the node on port {port} has role:{role}, master_port:{master_port}, \
                 master_link_status:{link} (waiting for a replica of port {master}, link up)"
            ))
        }
    }
}

impl Awaited for SentinelTopology {
    fn name(&self) -> String {
        format!("master {:?}", self.master_name)
    }

    fn log_tails(&self) -> String {
        let mut out = String::new();
        for (kind, process) in self
            .nodes
            .iter()
            .map(|node| ("node", node))
            .chain(self.sentinels.iter().map(|sentinel| ("sentinel", sentinel)))
        {
            let _ = write!(
                out,
                "\n  {kind} on port {}: {}",
                process.port,
                process.log_tail()
            );
        }
        out
    }
}

/// Why a sentinel gave no master.
enum Unanswered {
    /// No connection: the sentinel is not live.
    Unreachable(String),
    /// It answered, but not with a master.
    Refused(String),
}

impl std::fmt::Display for Unanswered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unanswered::Unreachable(e) => write!(f, "unreachable: {e}"),
            Unanswered::Refused(e) => f.write_str(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_percent_encoded() {
        assert_eq!(percent_encode("a b:c@d/é"), "a%20b%3Ac%40d%2F%C3%A9");
        assert_eq!(percent_encode("plain-1.2_3~"), "plain-1.2_3~");
    }
}

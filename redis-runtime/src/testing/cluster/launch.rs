//! Starting the nodes and forming the cluster: ports, arguments, slot
//! ranges, `CLUSTER MEET` and `CLUSTER REPLICATE`, until every node
//! agrees.

use std::collections::HashSet;
use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;

use super::nodes::{expect_replica_entry, expect_serving, info_field};
use super::{
    BUS_PORT_OFFSET, ClusterTopology, MASTERS, NODE_TIMEOUT_MS, NODES, PORT_ATTEMPTS, SLOTS,
};
use crate::testing::process::{Process, server_args};
use crate::testing::wait::{Awaited, CONVERGE_TIMEOUT};
use crate::testing::{HarnessError, free_port};

/// The slot range the `i`th master gets at start, as `redis-cli --cluster
/// create` splits them: 0-5460, 5461-10922, 10923-16383.
pub(super) fn master_slots(i: usize) -> (u16, u16) {
    // `k * 16384 / 3`, rounded to the nearest slot.
    let bound = |k: usize| {
        let slot = (k * usize::from(SLOTS) + MASTERS / 2) / MASTERS;
        u16::try_from(slot).expect("a slot bound is at most 16384")
    };
    (bound(i), bound(i + 1) - 1)
}

pub(super) fn check_slot(slot: u16) {
    assert!(
        slot < SLOTS,
        "slot {slot} does not exist: slots are 0 to 16383"
    );
}

/// A free loopback port whose cluster bus port (10000 higher) is free
/// too. Both are released before the node binds them, so a race is
/// possible; [`start_node`] retries on a new one.
pub(super) fn free_cluster_port() -> std::io::Result<u16> {
    for _ in 0..PORT_ATTEMPTS {
        let port = free_port()?;
        let Some(bus) = port.checked_add(BUS_PORT_OFFSET) else {
            continue;
        };
        if TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, bus))).is_ok() {
            return Ok(port);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        format!(
            "no free loopback port with a free cluster bus port (+{BUS_PORT_OFFSET}) in \
             {PORT_ATTEMPTS} tries"
        ),
    ))
}

/// Starts a cluster node on a fresh port (and bus port) in `dir`,
/// retrying on fresh ports if a bind fails.
pub(super) fn start_node(
    bin: &str,
    dir: &Path,
    extra: &dyn Fn(u16) -> Vec<String>,
) -> Result<Process, HarnessError> {
    Process::start_on_free_port(bin, dir, None, free_cluster_port, |port| {
        let mut args = node_args(port, dir);
        args.extend(extra(port).into_iter().map(OsString::from));
        Ok(args)
    })
}

/// A cluster node's arguments, like [`super::RedisServer`]'s (loopback,
/// persistence off) plus cluster mode with a 1 s node timeout. Only
/// directives Redis 7.0 and Valkey 8 both accept.
pub(super) fn node_args(port: u16, dir: &Path) -> Vec<OsString> {
    let mut args = server_args(port, dir);
    args.push("--cluster-enabled".into());
    args.push("yes".into());
    // Relative to `--dir`: each node's own file in its own directory.
    args.push("--cluster-config-file".into());
    args.push(format!("nodes-{port}.conf").into());
    args.push("--cluster-node-timeout".into());
    args.push(NODE_TIMEOUT_MS.to_string().into());
    args
}

impl ClusterTopology {
    /// Start's work once the six nodes answer: config epochs, slots, meet,
    /// replicate, then wait for all of it to settle.
    pub(super) fn form(&self) {
        let ports = self.seed_ports();
        let ids: Vec<String> = ports.iter().map(|&port| self.node_id(port)).collect();
        for (i, &port) in ports.iter().enumerate() {
            // Distinct epochs up front, as `redis-cli --cluster create`
            // sets them: no collision for the nodes to resolve first.
            let epoch = (i + 1).to_string();
            self.command::<()>(port, &["CLUSTER", "SET-CONFIG-EPOCH", &epoch]);
        }
        for (i, &port) in ports[..MASTERS].iter().enumerate() {
            let (first, last) = master_slots(i);
            let (first, last) = (first.to_string(), last.to_string());
            self.command::<()>(port, &["CLUSTER", "ADDSLOTSRANGE", &first, &last]);
        }
        for &port in &ports[1..] {
            let port = port.to_string();
            self.command::<()>(ports[0], &["CLUSTER", "MEET", "127.0.0.1", &port]);
        }
        self.wait_until(CONVERGE_TIMEOUT, "every node to know every other", || {
            self.all_met(&ids)
        });
        // A node must know its master before it can replicate from it.
        for i in 0..MASTERS {
            self.command::<()>(ports[MASTERS + i], &["CLUSTER", "REPLICATE", &ids[i]]);
        }
        self.wait_until(CONVERGE_TIMEOUT, "the cluster to come together", || {
            self.formed(&ids)
        });
    }

    /// Every node lists the six nodes, none of them half-met, and is
    /// connected to each.
    pub(super) fn all_met(&self, ids: &[String]) -> Result<(), String> {
        for port in self.seed_ports() {
            let view = self.view(port)?;
            let known: HashSet<&str> = view.iter().map(|entry| entry.id.as_str()).collect();
            if let Some(missing) = ids.iter().find(|id| !known.contains(id.as_str())) {
                return Err(format!("port {port} does not know node {missing} yet"));
            }
            for entry in &view {
                if !ids.contains(&entry.id) {
                    return Err(format!(
                        "port {port} lists a node it is still meeting ({})",
                        entry.flags.join(",")
                    ));
                }
                if !entry.connected || entry.has_flag("handshake") || entry.has_flag("noaddr") {
                    return Err(format!(
                        "port {port} sees port {} with flags {} ({})",
                        entry.port,
                        entry.flags.join(","),
                        if entry.connected {
                            "connected"
                        } else {
                            "disconnected"
                        }
                    ));
                }
            }
        }
        Ok(())
    }

    /// Start's condition; see [`ClusterTopology::start`].
    pub(super) fn formed(&self, ids: &[String]) -> Result<(), String> {
        let ports = self.seed_ports();
        for &port in &ports {
            let info: String = self.query(port, &["CLUSTER", "INFO"])?;
            let field = |name| info_field(&info, name);
            let (state, slots_ok, known) = (
                field("cluster_state"),
                field("cluster_slots_ok"),
                field("cluster_known_nodes"),
            );
            if state != "ok" || slots_ok != SLOTS.to_string() || known != NODES.to_string() {
                return Err(format!(
                    "port {port} has cluster_state:{state}, cluster_slots_ok:{slots_ok}, \
                     cluster_known_nodes:{known}"
                ));
            }
            let view = self.view(port)?;
            for i in 0..MASTERS {
                expect_serving(&view, port, &ids[i], ports[i], &[master_slots(i)])?;
                let replica = MASTERS + i;
                expect_replica_entry(&view, port, &ids[replica], ports[replica], &ids[i])?;
            }
        }
        for i in 0..MASTERS {
            self.expect_replica_of(ports[MASTERS + i], ports[i])?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slots_are_split_like_redis_cli_does() {
        assert_eq!(master_slots(0), (0, 5460));
        assert_eq!(master_slots(1), (5461, 10922));
        assert_eq!(master_slots(2), (10923, 16383));
    }
}

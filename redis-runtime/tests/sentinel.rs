//! Redis Sentinel: a master, a replica and three sentinels
//! ([`SentinelTopology`]), failed over by hand and by a crash.

use std::time::{Duration, Instant};

use redis_runtime::testing::SentinelTopology;

/// Polls the data node on `port` until its `ROLE` is `role`, panicking
/// after `limit`.
fn wait_for_role(topology: &SentinelTopology, port: u16, role: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    let mut last = String::new();
    while Instant::now() < deadline {
        let seen = redis::Client::open(topology.node_url(port))
            .and_then(|client| client.get_connection_with_timeout(Duration::from_millis(500)))
            .and_then(|mut conn| redis::cmd("ROLE").query::<Vec<redis::Value>>(&mut conn));
        match seen.as_deref() {
            Ok([first, ..]) if *first == redis::Value::BulkString(role.as_bytes().to_vec()) => {
                return;
            }
            _ => last = format!("{seen:?}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out after {limit:?} waiting for port {port} to be a {role}; last ROLE: {last}");
}

// The harness itself.

#[test]
fn the_harness_fails_over_and_back() {
    let clock = Instant::now();
    let mut topology = SentinelTopology::start("harness");
    eprintln!("start: {:?}", clock.elapsed());
    let [first, second] = topology.node_ports();
    assert_eq!(
        topology.master_port(),
        first,
        "the first node starts as master"
    );
    assert_eq!(topology.sentinel_addrs().len(), 3);

    let clock = Instant::now();
    let promoted = topology.failover();
    eprintln!("failover: {:?}", clock.elapsed());
    assert_eq!(promoted, second, "the failover promotes the replica");
    assert_eq!(topology.master_port(), second);

    let clock = Instant::now();
    let killed = topology.kill_master();
    assert_eq!(killed, second);
    let back = topology.wait_for_new_master(killed);
    eprintln!("kill -> new master: {:?}", clock.elapsed());
    assert_eq!(back, first, "the first node is master again");

    let clock = Instant::now();
    topology.restart_node(killed);
    wait_for_role(&topology, killed, "slave", Duration::from_secs(30));
    eprintln!("restart -> replica: {:?}", clock.elapsed());
}

//! The Redis Cluster harness ([`ClusterTopology`]) against real servers:
//! it forms three masters with a replica each, moves a slot with its keys,
//! fails a master over by hand and survives a master's crash. Prints how
//! long each step took.

use std::time::{Duration, Instant};

use redis_runtime::testing::ClusterTopology;

const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// Keys in the slot that moves: more than one `MIGRATE` batch (100).
const KEYS_IN_SLOT: usize = 250;

/// One command on the node on `port`.
fn query<T: redis::FromRedisValue>(topology: &ClusterTopology, port: u16, cmd: &redis::Cmd) -> T {
    try_query(topology, port, cmd).unwrap_or_else(|e| panic!("{cmd:?} on port {port} failed: {e}"))
}

fn try_query<T: redis::FromRedisValue>(
    topology: &ClusterTopology,
    port: u16,
    cmd: &redis::Cmd,
) -> redis::RedisResult<T> {
    let client = redis::Client::open(topology.node_url(port))?;
    let mut conn = client.get_connection_with_timeout(IO_TIMEOUT)?;
    conn.set_read_timeout(Some(IO_TIMEOUT))?;
    cmd.query(&mut conn)
}

fn cmd(args: &[&str]) -> redis::Cmd {
    let (name, rest) = args.split_first().expect("a command has a name");
    let mut cmd = redis::cmd(name);
    cmd.arg(rest);
    cmd
}

fn cluster_state(topology: &ClusterTopology, port: u16) -> String {
    let info: String = query(topology, port, &cmd(&["CLUSTER", "INFO"]));
    info.lines()
        .find_map(|line| line.trim().strip_prefix("cluster_state:"))
        .unwrap_or_else(|| panic!("no cluster_state in CLUSTER INFO of port {port}: {info}"))
        .to_string()
}

#[test]
fn the_cluster_harness_migrates_fails_over_and_survives_a_kill() {
    let clock = Instant::now();
    let mut topology = ClusterTopology::start();
    let start_time = clock.elapsed();

    let seeds = topology.seed_ports();
    assert_eq!(seeds.len(), 6, "six nodes: {seeds:?}");
    assert!(!seeds.contains(&6379), "never the default port: {seeds:?}");
    let expected_url = seeds
        .iter()
        .map(|port| format!("127.0.0.1:{port}"))
        .collect::<Vec<_>>()
        .join(",");
    assert_eq!(topology.url(), format!("redis+cluster://{expected_url}"));
    for &port in &seeds {
        assert_eq!(cluster_state(&topology, port), "ok", "port {port}");
    }
    let masters = topology.masters();
    assert_eq!(masters.len(), 3, "three masters: {masters:?}");
    assert_eq!(topology.master_of_slot(0), masters[0]);
    assert_eq!(topology.master_of_slot(16383), masters[2]);

    // The key and its siblings share a slot (hash tag), written through
    // the master that serves it.
    let key = "{harness}:probe";
    let slot: u16 = query(&topology, seeds[0], &cmd(&["CLUSTER", "KEYSLOT", key]));
    let owner = topology.master_of_slot(slot);
    query::<()>(&topology, owner, &cmd(&["SET", key, "before the move"]));
    for i in 1..KEYS_IN_SLOT {
        let sibling = format!("{{harness}}:{i}");
        query::<()>(&topology, owner, &cmd(&["SET", &sibling, "sibling"]));
    }

    let to = masters
        .iter()
        .copied()
        .find(|&port| port != owner)
        .expect("another master");
    let clock = Instant::now();
    topology.migrate_slot(slot, to);
    let migrate_time = clock.elapsed();
    assert_eq!(topology.master_of_slot(slot), to);
    let value: Option<String> = query(&topology, to, &cmd(&["GET", key]));
    assert_eq!(value.as_deref(), Some("before the move"));
    let slot_arg = slot.to_string();
    let count = cmd(&["CLUSTER", "COUNTKEYSINSLOT", &slot_arg]);
    assert_eq!(query::<usize>(&topology, to, &count), KEYS_IN_SLOT);
    assert_eq!(query::<usize>(&topology, owner, &count), 0);
    let redirected = try_query::<Option<String>>(&topology, owner, &cmd(&["GET", key]))
        .expect_err("the old master redirects");
    assert_eq!(redirected.code(), Some("MOVED"), "{redirected}");

    let clock = Instant::now();
    let promoted = topology.failover(to);
    let failover_time = clock.elapsed();
    assert_ne!(promoted, to);
    let masters = topology.masters();
    assert!(
        masters.contains(&promoted) && !masters.contains(&to),
        "port {promoted} replaced port {to}: {masters:?}"
    );
    assert_eq!(topology.master_of_slot(slot), promoted);
    let value: Option<String> = query(&topology, promoted, &cmd(&["GET", key]));
    assert_eq!(value.as_deref(), Some("before the move"));

    // The old master became the promoted one's replica: killing the
    // promoted one hands the slot back to it.
    let clock = Instant::now();
    let survivor = topology.kill_master(promoted);
    let kill_time = clock.elapsed();
    assert_eq!(
        survivor, to,
        "the only replica of port {promoted} takes over"
    );
    let masters = topology.masters();
    assert_eq!(masters.len(), 3, "three masters again: {masters:?}");
    assert!(!masters.contains(&promoted), "{masters:?}");
    assert_eq!(topology.master_of_slot(slot), survivor);
    for &port in seeds.iter().filter(|&&port| port != promoted) {
        assert_eq!(cluster_state(&topology, port), "ok", "port {port}");
    }
    let value: Option<String> = query(&topology, survivor, &cmd(&["GET", key]));
    assert_eq!(value.as_deref(), Some("before the move"));

    println!(
        "cluster harness timings: start {start_time:?}, migrate ({KEYS_IN_SLOT} keys) \
         {migrate_time:?}, failover {failover_time:?}, kill {kill_time:?}"
    );
}

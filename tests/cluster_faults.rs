//! Faults on a real Redis Cluster (3 masters, 3 replicas on loopback)
//! under load: eight entity writers on a type pinned to one slot, four on
//! a type spread over every slot with `cross_slot` indexes, two on
//! accounts whose emails are unique across the type (a `cross_slot`
//! unique hash, contended: 25 accounts share 12 emails), a stream producer with a two-consumer worker, and a subscriber, all
//! running while that slot migrates to another master key by key, then
//! while the master serving it is failed over by hand, and then while it
//! is killed. After each: every failure is a typed error,
//! writes resume within a bound the test prints, `verify` finds the
//! indexes exact, the worker has handled every entry, and the subscribers
//! (a classic channel, and a shard channel in the faulted slot) hear
//! messages published after the fault.
//!
//! One cluster for the binary; the faults run one after the other.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis_runtime::pubsub::Channel;
use redis_runtime::stream::Stream;
use redis_runtime::testing::{ClusterTopology, eventually};
use redis_runtime::{Client, Config, Context, RedisEntity, RedisRecord, index};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Pinned to the slot of `{jobs}`: every key of the type moves with it.
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[redis(cluster, key = "job:{{jobs}}:{id}")]
#[redis(sorted_index(key = "jobs:{{jobs}}:by_user:{user_id}", score = "created_at"))]
#[redis(index(key = "jobs:{{jobs}}:status:{status}"))]
struct Job {
    id: String,
    user_id: String,
    status: String,
    created_at: i64,
}

/// The layout other services share, each order in its own slot, its
/// indexes global (`cross_slot`) and its outbox stream too
/// (`stream_cross_slot`): its writes, their index moves and entries reach
/// every master, the faulted one included.
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[redis(cluster, key = "order:{id}")]
#[redis(stream = "orders:stream", stream_cross_slot)]
#[redis(index(key = "orders:status:{status}", cross_slot))]
#[redis(sorted_index(key = "orders:user:{user_id}", score = "created_at", cross_slot))]
struct Order {
    id: String,
    user_id: String,
    status: String,
    created_at: i64,
}

/// Writers of orders, beside the job writers.
const ORDER_WRITERS: u64 = 4;

/// One global unique email per account (`accounts:by_email`), each
/// account in its own slot: a save claims its email in the unique hash's
/// slot first, and releases the one it leaves just after.
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[redis(cluster, key = "account:{id}")]
#[redis(unique(key = "accounts:by_email", field = "email", cross_slot))]
struct Account {
    id: String,
    email: String,
}

/// Writers of accounts, after the order writers.
const ACCOUNT_WRITERS: u64 = 2;

/// Accounts the writers pick from, and the emails they contend for.
const ACCOUNTS: u64 = 25;
const EMAILS: u64 = 12;

/// A stream message.
#[derive(RedisRecord, Debug, Clone, PartialEq)]
struct Tick {
    n: u64,
}

const WRITERS: u64 = 8;

/// What the load saw: per error code, how many; when each write ended.
#[derive(Default)]
struct Seen {
    ok: u64,
    errors: BTreeMap<&'static str, u64>,
    /// One message per error code.
    examples: BTreeMap<&'static str, String>,
    /// Of the errors, those whose write may have run (cut in flight).
    unknown: u64,
    /// Successful writes' completion times.
    successes: Vec<Instant>,
    published: BTreeSet<u64>,
    handled: BTreeSet<u64>,
    heard: Vec<Instant>,
    /// Messages heard on the shard channel in the faulted slot.
    heard_sharded: Vec<Instant>,
    /// The orders whose creation (a save of a new one) succeeded, as
    /// their stream entry holds them.
    orders_created: Vec<Order>,
}

struct Load {
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    seen: Arc<Mutex<Seen>>,
}

fn seen(load: &Load) -> std::sync::MutexGuard<'_, Seen> {
    load.seen.lock().unwrap_or_else(|e| e.into_inner())
}

/// One create, patch or delete of a job among 100, chosen by `n`.
async fn random_write(client: &Client, n: &mut u64) -> redis_runtime::Result<()> {
    *n = n
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let id = format!("j{}", (*n >> 33) % 100);
    let status = ["queued", "running", "done"][((*n >> 20) % 3) as usize];
    match (*n >> 40) % 3 {
        0 => Job {
            id,
            user_id: format!("u{}", *n % 5),
            status: status.into(),
            created_at: (*n % 100_000) as i64,
        }
        .create(client)
        .await
        .map(drop),
        1 => {
            let patch = JobPatch {
                status: Some(status.into()),
                ..Default::default()
            };
            Job::patch(client, &id, &patch).await
        }
        _ => Job::delete(client, &id).await.map(drop),
    }
}

/// One save or delete of an order among 100, chosen by `n`; the order when
/// the save created it.
async fn random_order_write(client: &Client, n: &mut u64) -> redis_runtime::Result<Option<Order>> {
    *n = n
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let id = format!("o{}", (*n >> 33) % 100);
    if (*n >> 40).is_multiple_of(4) {
        return Order::delete(client, &id).await.map(|_| None);
    }
    let order = Order {
        id,
        user_id: format!("u{}", *n % 5),
        status: ["new", "paid", "shipped"][((*n >> 20) % 3) as usize].into(),
        created_at: (*n % 100_000) as i64,
    };
    let outcome = order.save(client).await?;
    Ok((!outcome.existed).then_some(order))
}

/// One save (to one of [`EMAILS`]) or delete of an account among
/// [`ACCOUNTS`], chosen by `n`.
async fn random_account_write(client: &Client, n: &mut u64) -> redis_runtime::Result<()> {
    *n = n
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let id = format!("a{}", (*n >> 33) % ACCOUNTS);
    if (*n >> 40).is_multiple_of(5) {
        return Account::delete(client, &id).await.map(drop);
    }
    let email = format!("e{}@x", (*n >> 20) % EMAILS);
    Account { id, email }.save(client).await.map(drop)
}

async fn start_load(client: &Client) -> Load {
    let stop = CancellationToken::new();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut tasks = Vec::new();
    for w in 0..WRITERS + ORDER_WRITERS + ACCOUNT_WRITERS {
        let (client, stop, seen) = (client.clone(), stop.clone(), seen.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = w + 1;
            while !stop.is_cancelled() {
                let result = if w < WRITERS {
                    random_write(&client, &mut n).await.map(|()| None)
                } else if w < WRITERS + ORDER_WRITERS {
                    random_order_write(&client, &mut n).await
                } else {
                    random_account_write(&client, &mut n).await.map(|()| None)
                };
                let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
                match result {
                    Ok(created) => seen.orders_created.extend(created),
                    // Refusals by the data (exists, missing, an email
                    // taken) are successes here.
                    Err(e)
                        if matches!(
                            e.code(),
                            "ALREADY_EXISTS" | "NOT_FOUND" | "UNIQUE_VIOLATION"
                        ) => {}
                    Err(e) => {
                        *seen.errors.entry(e.code()).or_default() += 1;
                        seen.unknown += u64::from(e.outcome_unknown());
                        seen.examples
                            .entry(e.code())
                            .or_insert_with(|| e.to_string());
                        continue;
                    }
                }
                seen.ok += 1;
                seen.successes.push(Instant::now());
            }
        }));
    }
    // A producer and a worker of two consumers on `{ticks}`.
    let stream = Stream::<Tick>::new(client, "{ticks}:stream");
    let group = stream.group("tickers");
    group.ensure().await.expect("ensure the group");
    {
        let (stop, seen, stream) = (stop.clone(), seen.clone(), stream.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.is_cancelled() {
                if stream.publish(&Tick { n }).await.is_ok() {
                    seen.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .published
                        .insert(n);
                }
                n += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    for consumer in ["c1", "c2"] {
        let worker = group
            .clone()
            .with_consumer(consumer)
            .worker()
            .block(Duration::from_millis(500))
            .claim_min_idle(Duration::from_millis(500))
            .claim_interval(Duration::from_millis(250));
        let (stop, seen) = (stop.clone(), seen.clone());
        tasks.push(tokio::spawn(async move {
            let handled = move |entry: redis_runtime::Entry<Tick>| {
                let seen = seen.clone();
                async move {
                    seen.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .handled
                        .insert(entry.message.n);
                    Ok::<(), String>(())
                }
            };
            // A run ended by a fault is started again after a pause, as a
            // service would (a run that fails at once must not spin, or a
            // failed test could not shut its runtime down).
            while !stop.is_cancelled() {
                if worker
                    .clone()
                    .run(handled.clone(), stop.clone())
                    .await
                    .is_err()
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }));
    }
    // Subscribers hearing publishers on the shared connection: a classic
    // channel, and a shard channel in the slot the faults hit.
    let classic = Channel::<String>::new(client, "job-status");
    let sharded = Channel::<String>::sharded(client, "{jobs}:status");
    for (channel, sharded) in [(classic, false), (sharded, true)] {
        let mut subscription = channel.subscribe().await.expect("subscribe");
        let (listening, seen) = (stop.clone(), seen.clone());
        tasks.push(tokio::spawn(async move {
            let stop = listening;
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    message = subscription.next() => match message {
                        Some(Ok(_)) => {
                            let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
                            let heard = if sharded { &mut seen.heard_sharded } else { &mut seen.heard };
                            heard.push(Instant::now());
                        }
                        Some(Err(_)) => {}
                        None => break,
                    },
                }
            }
        }));
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            while !stop.is_cancelled() {
                let _ = channel.publish(&"running".to_string()).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    Load { stop, tasks, seen }
}

impl Load {
    async fn finish(self) -> Seen {
        self.stop.cancel();
        for task in self.tasks {
            task.await.expect("a load task panicked");
        }
        Arc::try_unwrap(self.seen)
            .map_err(|_| ())
            .expect("tasks done")
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
    }
}

/// Runs `fault` under load; returns how long after the fault started the
/// writes succeeded again (the first success after the longest gap), and
/// checks everything the module docs promise. A crash may lose writes a
/// master acknowledged (`acked_writes_may_be_lost`): replication is
/// asynchronous.
async fn under_load(
    client: &Client,
    what: &str,
    acked_writes_may_be_lost: bool,
    fault: impl FnOnce() -> u16,
) -> Duration {
    // Each load's order entries on a stream of its own.
    let _: i64 = client
        .write(
            Context::new("test.del", ""),
            redis::cmd("DEL").arg("orders:stream"),
        )
        .await
        .expect("DEL");
    let load = start_load(client).await;
    eventually(
        Duration::from_secs(10),
        "the load to get going",
        async || {
            let seen = seen(&load);
            seen.ok > 100
                && seen.handled.len() > 10
                && seen.heard.len() > 5
                && seen.heard_sharded.len() > 5
        },
    )
    .await;
    let started = Instant::now();
    let new_master = tokio::task::block_in_place(fault);
    let done = Instant::now();
    // Writes, entries handled and messages heard after the fault.
    eventually(Duration::from_secs(20), "the load to recover", async || {
        let seen = seen(&load);
        seen.successes.iter().filter(|t| **t > done).count() > 100
            && seen.heard.iter().any(|t| *t > done)
            && seen.heard_sharded.iter().any(|t| *t > done)
    })
    .await;
    let seen = load.finish().await;
    let gap = longest_gap(&seen.successes, started);
    let heard_after = seen.heard.iter().filter(|t| **t > done).count();
    let sharded_after = seen.heard_sharded.iter().filter(|t| **t > done).count();
    let sharded_gap = longest_gap(&seen.heard_sharded, started);
    println!(
        "{what}: master now on port {new_master}; fault took {:?}; writes: {} ok, failures {:?} ({} with the outcome unknown); longest pause in successful writes {:?}; {} messages heard after; shard channel: {} heard after, longest pause {:?}",
        done - started,
        seen.ok,
        seen.errors,
        seen.unknown,
        gap,
        heard_after,
        sharded_after,
        sharded_gap
    );
    for code in seen.errors.keys() {
        assert!(
            matches!(*code, "STORAGE_UNAVAILABLE" | "STORAGE_TIMEOUT"),
            "{what}: a failure that is not a transient one: {:?}",
            seen.examples
        );
    }
    // Every published entry is handled, by one consumer or after a claim.
    let group = Stream::<Tick>::new(client, "{ticks}:stream").group("tickers");
    let missing: Vec<u64> = seen.published.difference(&seen.handled).copied().collect();
    if !missing.is_empty() {
        // Entries delivered but not acknowledged before the stop are
        // pending: a worker run now takes them over.
        let stop = CancellationToken::new();
        let handled = Arc::new(Mutex::new(BTreeSet::new()));
        let run = {
            let (stop, handled) = (stop.clone(), handled.clone());
            let worker = group
                .clone()
                .with_consumer("sweeper")
                .worker()
                .claim_min_idle(Duration::from_millis(1))
                .claim_interval(Duration::from_millis(50))
                .block(Duration::from_millis(100));
            tokio::spawn(worker.run(
                move |entry: redis_runtime::Entry<Tick>| {
                    let handled = handled.clone();
                    async move {
                        handled
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(entry.message.n);
                        Ok::<(), String>(())
                    }
                },
                stop.clone(),
            ))
        };
        eventually(
            Duration::from_secs(10),
            "pending entries to be reclaimed",
            async || {
                let handled = handled.lock().unwrap_or_else(|e| e.into_inner());
                missing.iter().all(|n| handled.contains(n))
            },
        )
        .await;
        stop.cancel();
        run.await.expect("join").expect("sweeper run");
    }
    let report = index::verify::<Job>(client).await.expect("verify");
    assert!(report.drift.is_empty(), "{what}: drift {:?}", report.drift);
    // Orders' index moves that failed with the fault were left in their
    // records: settle applies them, and then the indexes are exact.
    // A lease whose holder lost its node with the fault lapses within
    // 10 s; until then its record is left to the holder (busy).
    let mut applied = 0;
    eventually(
        Duration::from_secs(15),
        "every order record settled",
        async || {
            let settled = index::settle::<Order>(client).await.expect("settle");
            applied += settled.applied;
            settled.busy == 0 && settled.left == 0
        },
    )
    .await;
    let report = index::verify::<Order>(client).await.expect("verify");
    println!(
        "{what}: orders: {applied} records settled after the load, {} entities, drift after settle {}",
        report.entities,
        report.drift.len()
    );
    assert_eq!(report.pending, 0);
    let missing = orders_missing_from_their_stream(client, &seen.orders_created).await;
    if acked_writes_may_be_lost {
        // An acknowledged creation lost with the master took its record.
        println!("{what}: order entries missing after the crash: {missing:?}");
    } else {
        assert!(missing.is_empty(), "{what}: entries missing: {missing:?}");
    }
    if acked_writes_may_be_lost && !report.drift.is_empty() {
        // A killed master may take writes it acknowledged but had not yet
        // replicated: an order or an index entry on it, with the rest on
        // other masters. Only a full repair can tell; it must leave none.
        println!("{what}: orders drift after the crash: {:?}", report.drift);
        index::rebuild::<Order>(client).await.expect("rebuild");
        let report = index::verify::<Order>(client).await.expect("verify");
        assert!(report.drift.is_empty(), "{what}: drift {:?}", report.drift);
    } else {
        assert!(report.drift.is_empty(), "{what}: drift {:?}", report.drift);
    }
    // Accounts: claims whose write a fault cut short were recorded beside
    // the account, and settle releases them; then no two accounts hold
    // one email, and the unique hash maps exactly the emails held.
    eventually(
        Duration::from_secs(15),
        "every account record settled",
        async || {
            let settled = index::settle::<Account>(client).await.expect("settle");
            settled.busy == 0 && settled.left == 0
        },
    )
    .await;
    let ids: Vec<String> = (0..ACCOUNTS).map(|n| format!("a{n}")).collect();
    let accounts = Account::get_many(client, &ids).await.expect("accounts");
    let mut holders: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for account in accounts.into_iter().flatten() {
        holders.entry(account.email).or_default().push(account.id);
    }
    let shared: Vec<_> = holders.iter().filter(|(_, ids)| ids.len() > 1).collect();
    if acked_writes_may_be_lost {
        // A claim the killed master acknowledged but had not replicated is
        // gone with it, and another account may have claimed the email
        // since: asynchronous replication, as for any write.
        println!("{what}: emails held twice after the crash: {shared:?}");
    } else {
        assert!(shared.is_empty(), "{what}: emails held twice: {shared:?}");
    }
    let report = index::verify::<Account>(client).await.expect("verify");
    println!(
        "{what}: accounts: {} held emails, drift after settle {}",
        holders.len(),
        report.drift.len()
    );
    assert_eq!(report.pending, 0);
    if acked_writes_may_be_lost && !report.drift.is_empty() {
        println!("{what}: accounts drift after the crash: {:?}", report.drift);
        index::rebuild::<Account>(client).await.expect("rebuild");
        let report = index::verify::<Account>(client).await.expect("verify");
        // An email held twice stays drift until one account changes it.
        let held_twice = shared.len();
        assert!(
            report.drift.len() <= held_twice,
            "{what}: drift {:?}",
            report.drift
        );
    } else {
        assert!(report.drift.is_empty(), "{what}: drift {:?}", report.drift);
    }
    // The client answers at once again.
    let ping: String = client
        .read(Context::new("test.ping", ""), &redis::cmd("PING"))
        .await
        .expect("ping");
    assert_eq!(ping, "PONG");
    gap
}

/// The created orders that have no entry on `orders:stream` (each creation
/// needs one of its own: entries are appended at least once), after
/// printing how many entries the stream holds beyond them (appended again,
/// or of creations whose reply a fault lost).
async fn orders_missing_from_their_stream(client: &Client, created: &[Order]) -> Vec<Order> {
    let stream = Stream::<Order>::new(client, "orders:stream");
    let batch = stream.range("-", "+", 1_000_000).await.expect("XRANGE");
    assert!(batch.failures.is_empty(), "{:?}", batch.failures);
    let mut on_stream: Vec<Order> = batch.entries.into_iter().map(|e| e.message).collect();
    let entries = on_stream.len();
    let mut missing = Vec::new();
    for order in created {
        match on_stream.iter().position(|entry| entry == order) {
            Some(at) => {
                on_stream.swap_remove(at);
            }
            None => missing.push(order.clone()),
        }
    }
    println!(
        "orders: {} creations, {entries} stream entries, {} beyond them",
        created.len(),
        on_stream.len()
    );
    missing
}

/// The longest pause between successful writes from `since` on.
fn longest_gap(successes: &[Instant], since: Instant) -> Duration {
    let mut times: Vec<Instant> = successes.iter().copied().filter(|t| *t >= since).collect();
    times.sort();
    let mut last = since;
    let mut gap = Duration::ZERO;
    for t in times {
        gap = gap.max(t - last);
        last = t;
    }
    gap
}

fn slot_of(topology: &ClusterTopology, key: &str) -> u16 {
    let port = topology.masters()[0];
    let node = redis::Client::open(topology.node_url(port)).expect("node URL");
    let mut conn = node.get_connection().expect("connect to a node");
    redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(key)
        .query(&mut conn)
        .expect("CLUSTER KEYSLOT")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_workers_and_subscribers_ride_out_a_failover_and_a_crash() {
    let mut topology = ClusterTopology::start();
    let config = Config::from_url(&topology.url()).expect("cluster URL");
    let client = Client::connect(config).await.expect("connect");
    let slot = slot_of(&topology, "{jobs}");

    // The slot moves key by key while scripts write it: each call either
    // runs before or after the move, or is refused (TRYAGAIN) and retried.
    let master = topology.master_of_slot(slot);
    let target = topology
        .masters()
        .into_iter()
        .find(|&port| port != master)
        .expect("another master");
    let migration = under_load(&client, "slot migration", false, || {
        topology.migrate_slot(slot, target);
        target
    })
    .await;
    assert!(migration < Duration::from_secs(10), "{migration:?}");

    let master = topology.master_of_slot(slot);
    let failover = under_load(&client, "CLUSTER FAILOVER", false, || {
        topology.failover(master)
    })
    .await;
    assert!(failover < Duration::from_secs(10), "{failover:?}");

    let master = topology.master_of_slot(slot);
    let crash = under_load(&client, "SIGKILL of the master", true, || {
        topology.kill_master(master)
    })
    .await;
    assert!(crash < Duration::from_secs(15), "{crash:?}");
    client.shutdown().await;
}

//! Redis Sentinel faults under a realistic load, against a real topology
//! the harness starts (a master, a replica and three sentinels on
//! loopback, [`SentinelTopology`]): entity writers, a stream producer, a
//! worker, and a pub/sub publisher and subscriber keep going through a
//! manual failover and then a crash of the new master. Every step is
//! measured (how long until writes land on the new master, when the
//! subscriber and the worker resume, how many acknowledged publishes the
//! failover lost without `WAIT`); the indexes are exact afterwards and the
//! worker has handled every entry the final master holds.

// Shared with the index suites; this one uses only part of it.
#[allow(dead_code)]
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use redis_runtime::stream::{ConsumerGroup, Stream};
use redis_runtime::testing::{SentinelTopology, eventually};
use redis_runtime::worker::{CancellationToken, WorkerReport};
use redis_runtime::{Channel, Client, Config, Context, RedisRecord};
use tokio::task::JoinHandle;

use common::{Job, JobStatus, assert_no_drift, job, random_write};

/// The stream the producer appends to and the worker consumes.
const STREAM: &str = "failover:work";
/// The pub/sub channel of the publisher and the subscriber.
const CHANNEL: &str = "failover:ticks";
/// How long after a step starts an entity write must land on the new
/// master. Measured under this load: 1.1 to 1.2 s after a manual failover
/// starts and 2.3 s after a crash, each within 20 ms of the Sentinels'
/// `+switch-master` (the client moves on the notice, and operations
/// backing off end their wait when it moves).
const RECOVERY_BOUND: Duration = Duration::from_secs(5);
/// How long the subscriber and the worker get to resume after a step.
const RESUME_LIMIT: Duration = Duration::from_secs(10);
/// Failure codes the load may see: the documented transient codes, and the
/// ordinary outcomes of random creates, patches and deletes.
const TRANSIENT: &[&str] = &["STORAGE_UNAVAILABLE", "STORAGE_TIMEOUT"];
const ORDINARY: &[&str] = &["ALREADY_EXISTS", "NOT_FOUND"];

#[derive(RedisRecord, Debug, Clone, PartialEq)]
struct Msg {
    seq: u32,
}

/// Outcomes of one kind of operation: how many succeeded, and the codes of
/// the ones that failed.
#[derive(Default, Debug, Clone)]
struct Seen {
    ok: u64,
    failed: BTreeMap<&'static str, u64>,
}

impl Seen {
    fn record<T>(&mut self, result: &redis_runtime::Result<T>) {
        match result {
            Ok(_) => self.ok += 1,
            Err(e) => *self.failed.entry(e.code()).or_default() += 1,
        }
    }

    fn add(&mut self, other: &Seen) {
        self.ok += other.ok;
        for (code, count) in &other.failed {
            *self.failed.entry(code).or_default() += count;
        }
    }

    /// Every failure has one of the `allowed` codes.
    fn assert_documented(&self, what: &str, allowed: &[&[&str]]) {
        for code in self.failed.keys() {
            assert!(
                allowed.iter().any(|codes| codes.contains(code)),
                "{what}: undocumented failure {code}: {:?}",
                self.failed
            );
        }
    }
}

/// A [`Seen`] shared by tasks, read (and reset) per step.
type Tally = Arc<Mutex<Seen>>;

fn record<T>(tally: &Tally, result: &redis_runtime::Result<T>) {
    tally.lock().expect("tally").record(result);
}

/// What `tally` counted since the last call, counting it afresh.
fn take(tally: &Tally) -> Seen {
    std::mem::take(&mut *tally.lock().expect("tally"))
}

/// The longest stretch without an event (a message received, an entry
/// handled), shared by the tasks that see the events.
struct Gaps {
    base: Instant,
    /// When the last event happened, in ms since `base`.
    last_ms: AtomicU64,
    /// The longest stretch, in ms, since the last [`Gaps::take`].
    longest_ms: AtomicU64,
}

impl Gaps {
    fn new() -> Self {
        Self {
            base: Instant::now(),
            last_ms: AtomicU64::new(0),
            longest_ms: AtomicU64::new(0),
        }
    }

    fn event(&self) {
        let now = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        let previous = self.last_ms.swap(now, Ordering::Relaxed);
        self.longest_ms
            .fetch_max(now.saturating_sub(previous), Ordering::Relaxed);
    }

    /// The longest stretch since the last call (or the start).
    fn take(&self) -> Duration {
        Duration::from_millis(self.longest_ms.swap(0, Ordering::Relaxed))
    }
}

/// What the subscriber saw.
struct Received {
    /// Messages received since the last step summary.
    count: AtomicU64,
    /// The highest tick received, plus one (0: none yet).
    above: AtomicU64,
    gaps: Gaps,
    /// [`redis_runtime::Subscription::resubscriptions`], as of the last message.
    resubscriptions: AtomicU64,
}

/// The tasks of a [`Load`], joined at the end.
struct Tasks {
    writers: Vec<JoinHandle<()>>,
    producer: JoinHandle<()>,
    publisher: JoinHandle<()>,
    subscriber: JoinHandle<()>,
    workers: Vec<JoinHandle<redis_runtime::Result<WorkerReport>>>,
}

/// What runs during the test ([`Tasks`]): how to stop it, and what it saw.
struct Load {
    /// Stops the writers, the producer and the publisher.
    stop: Arc<AtomicBool>,
    stop_subscriber: CancellationToken,
    stop_workers: CancellationToken,
    /// Entity operations.
    ops: Tally,
    /// Stretches without a successful entity operation.
    writing: Arc<Gaps>,
    /// Stream publishes.
    publishes: Tally,
    /// Pub/sub publishes.
    ticks: Tally,
    /// The next stream message's `seq`.
    next_seq: Arc<AtomicU32>,
    /// The `seq`s whose publish was acknowledged, and when.
    acknowledged: Arc<Mutex<Vec<(u32, Instant)>>>,
    /// The `seq`s the worker handled (at least once).
    handled: Arc<Mutex<BTreeSet<u32>>>,
    /// Stretches without a handled entry.
    handling: Arc<Gaps>,
    /// The next pub/sub tick.
    next_tick: Arc<AtomicU64>,
    received: Arc<Received>,
}

impl Load {
    /// Starts it all on `client`: the group must exist.
    async fn start(client: &Client, group: &ConsumerGroup<Msg>) -> (Self, Tasks) {
        let stop = Arc::new(AtomicBool::new(false));
        let ops = Tally::default();
        let writing = Arc::new(Gaps::new());
        let writers = (0..8)
            .map(|w| spawn_writer(client, &stop, &ops, &writing, w))
            .collect();

        let publishes = Tally::default();
        let next_seq = Arc::new(AtomicU32::new(0));
        let acknowledged = Arc::new(Mutex::new(Vec::new()));
        let producer = tokio::spawn({
            let stream = group.stream().clone();
            let (stop, tally) = (stop.clone(), publishes.clone());
            let (next_seq, acknowledged) = (next_seq.clone(), acknowledged.clone());
            async move {
                while !stop.load(Ordering::Relaxed) {
                    let seq = next_seq.fetch_add(1, Ordering::SeqCst);
                    let result = stream.publish(&Msg { seq }).await;
                    if result.is_ok() {
                        let at = Instant::now();
                        acknowledged.lock().expect("acknowledged").push((seq, at));
                    }
                    record(&tally, &result);
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        });

        let handled = Arc::new(Mutex::new(BTreeSet::new()));
        let handling = Arc::new(Gaps::new());
        let stop_workers = CancellationToken::new();
        let workers = (0..2)
            .map(|i| {
                let worker = group
                    .clone()
                    .with_consumer(format!("c{i}"))
                    .worker()
                    .block(Duration::from_millis(500))
                    .claim_min_idle(Duration::from_secs(2))
                    .claim_interval(Duration::from_millis(500));
                let (handled, handling) = (handled.clone(), handling.clone());
                tokio::spawn(worker.run(
                    move |entry| {
                        let (handled, handling) = (handled.clone(), handling.clone());
                        async move {
                            handling.event();
                            handled.lock().expect("handled").insert(entry.message.seq);
                            Ok::<(), String>(())
                        }
                    },
                    stop_workers.clone(),
                ))
            })
            .collect();

        let channel = Channel::<u64>::new(client, CHANNEL);
        let received = Arc::new(Received {
            count: AtomicU64::new(0),
            above: AtomicU64::new(0),
            gaps: Gaps::new(),
            resubscriptions: AtomicU64::new(0),
        });
        let stop_subscriber = CancellationToken::new();
        let mut subscription = channel.subscribe().await.expect("subscribe");
        let subscriber = tokio::spawn({
            let (received, stop) = (received.clone(), stop_subscriber.clone());
            async move {
                loop {
                    let message = tokio::select! {
                        () = stop.cancelled() => break,
                        message = subscription.next() => message,
                    };
                    let tick = match message {
                        Some(Ok(tick)) => tick,
                        Some(Err(e)) => panic!("a tick did not decode: {e}"),
                        None => panic!("the subscription ended while the client runs"),
                    };
                    received.gaps.event();
                    received.count.fetch_add(1, Ordering::Relaxed);
                    received.above.fetch_max(tick + 1, Ordering::SeqCst);
                    received
                        .resubscriptions
                        .store(subscription.resubscriptions(), Ordering::Relaxed);
                }
            }
        });
        let ticks = Tally::default();
        let next_tick = Arc::new(AtomicU64::new(0));
        let publisher = tokio::spawn({
            let (stop, tally, next_tick) = (stop.clone(), ticks.clone(), next_tick.clone());
            async move {
                while !stop.load(Ordering::Relaxed) {
                    let tick = next_tick.fetch_add(1, Ordering::SeqCst);
                    record(&tally, &channel.publish(&tick).await);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        });

        let tasks = Tasks {
            writers,
            producer,
            publisher,
            subscriber,
            workers,
        };
        let load = Self {
            stop,
            stop_subscriber,
            stop_workers,
            ops,
            writing,
            publishes,
            ticks,
            next_seq,
            acknowledged,
            handled,
            handling,
            next_tick,
            received,
        };
        (load, tasks)
    }

    /// Waits until the subscriber receives a tick and the worker handles a
    /// stream message published after this call; returns how long each
    /// took.
    async fn resumes(&self, step: &str) -> (Duration, Duration) {
        let (tick, seq) = (
            self.next_tick.load(Ordering::SeqCst),
            self.next_seq.load(Ordering::SeqCst),
        );
        let clock = Instant::now();
        let what = format!("the subscriber to receive a tick published after the {step}");
        eventually(RESUME_LIMIT, &what, async || {
            self.received.above.load(Ordering::SeqCst) > tick
        })
        .await;
        let subscriber = clock.elapsed();
        let what = format!("the worker to handle a message published after the {step}");
        eventually(RESUME_LIMIT, &what, async || {
            let handled = self.handled.lock().expect("handled");
            handled.range(seq..).next().is_some()
        })
        .await;
        (subscriber, clock.elapsed())
    }

    fn acknowledged(&self) -> Vec<(u32, Instant)> {
        self.acknowledged.lock().expect("acknowledged").clone()
    }

    /// What happened since the last summary, counting afresh.
    fn summary(&self, step: &'static str, clock: Instant, lost: Vec<(u32, Instant)>) -> Summary {
        Summary {
            step,
            clock,
            ops: take(&self.ops),
            writer_gap: self.writing.take(),
            publishes: take(&self.publishes),
            ticks: take(&self.ticks),
            received: self.received.count.swap(0, Ordering::Relaxed),
            resubscriptions: self.received.resubscriptions.load(Ordering::Relaxed),
            subscriber_gap: self.received.gaps.take(),
            worker_gap: self.handling.take(),
            lost,
        }
    }
}

/// One writer doing random creates, patches, increments and deletes on
/// 200 jobs until `stop` is set, as in `tests/faults.rs`.
fn spawn_writer(
    client: &Client,
    stop: &Arc<AtomicBool>,
    tally: &Tally,
    writing: &Arc<Gaps>,
    w: u64,
) -> JoinHandle<()> {
    let (client, stop, tally) = (client.clone(), stop.clone(), tally.clone());
    let writing = writing.clone();
    tokio::spawn(async move {
        let mut n = w + 1;
        while !stop.load(Ordering::Relaxed) {
            let result = random_write(&client, &mut n).await;
            if result.is_ok() {
                writing.event();
            }
            record(&tally, &result);
        }
    })
}

/// A client straight to the data node on `port`, for inspection.
async fn node(topology: &SentinelTopology, port: u16) -> Client {
    let config = Config::from_url(&topology.node_url(port)).expect("node URL");
    Client::connect(config).await.expect("node client")
}

/// Whether the node behind `node` says it is a master (`ROLE`).
async fn is_master(node: &Client) -> bool {
    let reply: redis_runtime::Result<Vec<redis::Value>> = node
        .read(Context::new("test.role", ""), &redis::cmd("ROLE"))
        .await;
    matches!(
        reply.as_deref(),
        Ok([redis::Value::BulkString(role), ..]) if role.as_slice() == b"master"
    )
}

/// How long after `clock` an entity write through `client` landed on the
/// node behind `target`: writes the job `id` with a fresh `created_at` each
/// time `target` is a master, until that node has it. The role is checked
/// before the write, so a write the old master took (and replicated) before
/// the promotion does not count.
async fn writes_land_on(client: &Client, target: &Client, id: &str, clock: Instant) -> Duration {
    let limit = Duration::from_secs(20);
    let mut attempt = 0;
    let mut last = String::from("the node was never a master");
    loop {
        assert!(
            clock.elapsed() < limit,
            "no entity write landed on the new master within {limit:?}; last: {last}"
        );
        if is_master(target).await {
            attempt += 1;
            let probe = job(id, "probe", JobStatus::Queued, attempt);
            match probe.save(client).await {
                Ok(_) => match Job::get(target, id).await {
                    Ok(Some(found)) if found.created_at == attempt => return clock.elapsed(),
                    Ok(found) => last = format!("the write went elsewhere (found {found:?})"),
                    Err(e) => last = format!("reading it back failed: {e}"),
                },
                Err(e) => last = format!("the write failed: {e}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `seq`s of every entry of the stream on the node behind `node`.
async fn stream_seqs(node: &Client) -> BTreeSet<u32> {
    let stream = Stream::<Msg>::new(node, STREAM);
    let mut seqs = BTreeSet::new();
    let mut start = "-".to_string();
    loop {
        let page = stream.range(&start, "+", 1000).await.expect("XRANGE");
        assert!(page.failures.is_empty(), "{:?}", page.failures);
        let Some(last) = page.entries.last() else {
            return seqs;
        };
        start = format!("({}", last.id);
        seqs.extend(page.entries.iter().map(|entry| entry.message.seq));
    }
}

/// The acknowledged `seq`s missing from `present`, with when they were
/// acknowledged.
fn lost(acknowledged: &[(u32, Instant)], present: &BTreeSet<u32>) -> Vec<(u32, Instant)> {
    acknowledged
        .iter()
        .filter(|(seq, _)| !present.contains(seq))
        .copied()
        .collect()
}

/// `at` relative to `clock`, signed, in seconds.
fn offset(at: Instant, clock: Instant) -> String {
    match at.checked_duration_since(clock) {
        Some(after) => format!("+{:.3} s", after.as_secs_f64()),
        None => format!("-{:.3} s", clock.duration_since(at).as_secs_f64()),
    }
}

/// When things happened in one step.
struct Timing {
    /// How long the harness call took.
    harness: Duration,
    /// How long until an entity write landed on the new master.
    recovered: Duration,
    /// The first `+switch-master` notice a Sentinel published in the step.
    switched: Option<Instant>,
}

/// Records when the Sentinels publish `+switch-master` (what the client
/// follows), on its own connections, so each step's summary can compare
/// the client's recovery with the notice.
async fn watch_switches(topology: &SentinelTopology) -> Arc<Mutex<Vec<Instant>>> {
    let notices = Arc::new(Mutex::new(Vec::new()));
    for addr in topology.sentinel_addrs() {
        let mut pubsub = redis::Client::open(format!("redis://{addr}"))
            .expect("sentinel URL")
            .get_async_pubsub()
            .await
            .expect("a pub/sub connection to a sentinel");
        pubsub
            .subscribe("+switch-master")
            .await
            .expect("subscribe to +switch-master");
        let notices = notices.clone();
        tokio::spawn(async move {
            let mut messages = pubsub.into_on_message();
            while messages.next().await.is_some() {
                notices.lock().expect("notices").push(Instant::now());
            }
        });
    }
    notices
}

/// The first of `notices` at or after `clock`.
fn first_after(notices: &Mutex<Vec<Instant>>, clock: Instant) -> Option<Instant> {
    let notices = notices.lock().expect("notices");
    notices.iter().filter(|at| **at >= clock).min().copied()
}

/// What the load saw during one step (from the end of the previous one).
struct Summary {
    step: &'static str,
    /// When the step started.
    clock: Instant,
    ops: Seen,
    /// The longest stretch without a successful entity operation.
    writer_gap: Duration,
    publishes: Seen,
    ticks: Seen,
    /// Ticks the subscriber received.
    received: u64,
    /// Resubscriptions so far (the subscription's counter).
    resubscriptions: u64,
    subscriber_gap: Duration,
    worker_gap: Duration,
    /// Acknowledged publishes missing from the new master's stream.
    lost: Vec<(u32, Instant)>,
}

impl Summary {
    fn print(&self, timing: &Timing, resumed: (Duration, Duration)) {
        let window = match (self.lost.first(), self.lost.last()) {
            (Some((_, first)), Some((_, last))) => format!(
                ", acknowledged {} to {} from the step's start",
                offset(*first, self.clock),
                offset(*last, self.clock)
            ),
            _ => String::new(),
        };
        let switched = match timing.switched {
            Some(at) => offset(at, self.clock),
            None => "never".to_string(),
        };
        println!(
            "{}: harness done after {:?}, first +switch-master at {switched}; entity writes \
             land on the new master {:?} after the step started; entity ops ok {} failed {:?}, \
             longest stretch without one succeeding {:?}; stream publishes ok {} failed {:?}, \
             {} acknowledged ones lost{window}; pub/sub publishes ok {} failed {:?}, {} \
             received; subscriber resubscriptions so far {}, longest silence {:?}, resumed {:?} \
             after the step; worker longest silence {:?}, resumed {:?} after the step",
            self.step,
            timing.harness,
            timing.recovered,
            self.ops.ok,
            self.ops.failed,
            self.writer_gap,
            self.publishes.ok,
            self.publishes.failed,
            self.lost.len(),
            self.ticks.ok,
            self.ticks.failed,
            self.received,
            self.resubscriptions,
            self.subscriber_gap,
            resumed.0,
            self.worker_gap,
            resumed.1,
        );
    }
}

/// Entity writers, a stream producer and worker, and a pub/sub publisher
/// and subscriber run through a manual failover (A) and then a crash of
/// the new master (B), on one client following the Sentinels with the
/// defaults (no replica acknowledgements). After each step entity writes
/// land on the new master within a bound, and the subscriber and the
/// worker resume. At the end every failure has a documented code, the
/// indexes are exact, and the worker has handled every entry of the final
/// master's stream and left nothing pending. Acknowledged publishes the
/// failovers lost (no `WAIT`) are counted and printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_failover_and_a_master_crash_under_load_leave_zero_drift() {
    let started = Instant::now();
    let topology = SentinelTopology::start("failover");
    let (first, second) = (topology.node_ports()[0], topology.node_ports()[1]);
    assert_eq!(topology.master_port(), first);
    let client = Client::connect(
        Config::builder(topology.url())
            .lazy_connect(false)
            .build()
            .expect("config"),
    )
    .await
    .expect("connect through the sentinels");
    let switches = watch_switches(&topology).await;
    let first_node = node(&topology, first).await;
    let second_node = node(&topology, second).await;
    let group = Stream::<Msg>::new(&client, STREAM).group("g");
    group.ensure().await.expect("create the group");
    let (load, tasks) = Load::start(&client, &group).await;
    println!("topology and load started after {:?}", started.elapsed());
    eventually(Duration::from_secs(5), "the load to run", async || {
        load.handled.lock().expect("handled").len() > 20
            && load.received.count.load(Ordering::Relaxed) > 2
            && load.ops.lock().expect("tally").ok > 100
    })
    .await;

    // Step A (its counts include the warm-up above): a manual failover to the second node. The harness call
    // blocks (about 11 s, until the old master is demoted), so it runs off
    // the async workers while the probe measures when writes land there.
    let clock = Instant::now();
    let harness = tokio::task::spawn_blocking(move || {
        let promoted = topology.failover();
        (topology, promoted, clock.elapsed())
    });
    let recovered = writes_land_on(&client, &second_node, "probe-a", clock).await;
    let (mut topology, promoted, harness) = harness.await.expect("the failover");
    assert_eq!(promoted, second);
    let timing = Timing {
        harness,
        recovered,
        switched: first_after(&switches, clock),
    };
    let resumed = load.resumes("manual failover").await;
    let lost_a = lost(&load.acknowledged(), &stream_seqs(&second_node).await);
    let step_a = load.summary("step A, manual failover", clock, lost_a);
    step_a.print(&timing, resumed);
    assert!(
        recovered < RECOVERY_BOUND,
        "after the manual failover, writes landed on the new master after {recovered:?}"
    );

    // Step B: the new master crashes; the first node (its replica) is
    // promoted. The crashed node is not restarted: without persistence it
    // would come back empty and could wipe the data.
    let clock = Instant::now();
    let harness = tokio::task::spawn_blocking(move || {
        let killed = topology.kill_master();
        let promoted = topology.wait_for_new_master(killed);
        (topology, killed, promoted, clock.elapsed())
    });
    let recovered = writes_land_on(&client, &first_node, "probe-b", clock).await;
    let (topology, killed, promoted, harness) = harness.await.expect("the crash failover");
    assert_eq!((killed, promoted), (second, first));
    let timing = Timing {
        harness,
        recovered,
        switched: first_after(&switches, clock),
    };
    second_node.shutdown().await;
    let resumed = load.resumes("master crash").await;

    // The end: stop the load, let the worker drain, stop it.
    load.stop.store(true, Ordering::Relaxed);
    for writer in tasks.writers {
        writer.await.expect("a writer panicked");
    }
    tasks.producer.await.expect("the producer panicked");
    tasks.publisher.await.expect("the publisher panicked");
    let acknowledged = load.acknowledged();
    let present = stream_seqs(&first_node).await;
    let lost_total = lost(&acknowledged, &present);
    let lost_b = lost_total
        .iter()
        .filter(|lost| !step_a.lost.contains(lost))
        .copied()
        .collect();
    let drained = Instant::now();
    eventually(
        Duration::from_secs(15),
        "the worker to handle every entry of the final stream and leave none pending",
        async || {
            let all_handled = {
                let handled = load.handled.lock().expect("handled");
                present.iter().all(|seq| handled.contains(seq))
            };
            all_handled && group.pending_count().await.is_ok_and(|n| n == 0)
        },
    )
    .await;
    let drained = drained.elapsed();
    load.stop_workers.cancel();
    let mut reports = Vec::new();
    for worker in tasks.workers {
        let report = worker.await.expect("a worker panicked");
        reports.push(report.expect("the worker's run ends Ok"));
    }
    load.stop_subscriber.cancel();
    tasks.subscriber.await.expect("the subscriber panicked");
    let step_b = load.summary("step B, master crash", clock, lost_b);
    step_b.print(&timing, resumed);
    println!(
        "end: {} entries on the final master, {} acknowledged publishes lost in all, every \
         entry handled and none pending {drained:?} after the load stopped; worker reports \
         {reports:?}; total {:?}",
        present.len(),
        lost_total.len(),
        started.elapsed(),
    );
    assert!(
        recovered < RECOVERY_BOUND,
        "after the crash, writes landed on the new master after {recovered:?}"
    );

    let (mut ops, mut publishes, mut ticks) = (step_a.ops, step_a.publishes, step_a.ticks);
    ops.add(&step_b.ops);
    publishes.add(&step_b.publishes);
    ticks.add(&step_b.ticks);
    ops.assert_documented("entity ops", &[TRANSIENT, ORDINARY]);
    publishes.assert_documented("stream publishes", &[TRANSIENT]);
    ticks.assert_documented("pub/sub publishes", &[TRANSIENT]);
    assert!(ops.ok > 100, "the load ran: {ops:?}");
    assert!(!present.is_empty(), "the producer ran");
    assert_no_drift::<Job>(&client).await;
    client.shutdown().await;
    first_node.shutdown().await;
    drop(topology);
}

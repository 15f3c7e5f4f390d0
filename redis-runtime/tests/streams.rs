//! Streams, each test against a real, private `redis-server` and against a
//! real Redis Cluster (the tests that need one server's process run on a
//! server only): eleven numbered success criteria of event ingestion (one
//! test each, named after its number), decode failures, claiming with and
//! without XAUTOCLAIM, blocking reads on their own connection, and the
//! entity outbox.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use redis::Value;
use redis_runtime::on_both_topologies;
use redis_runtime::stream::{
    ClaimStrategy, ConsumerGroup, DecodePolicy, FailureAction, GroupStart, Stream,
    default_consumer_name,
};
use redis_runtime::testing::{RedisServer, TestRedis, eventually, raw_command, raw_query};
use redis_runtime::{Client, Config, Context, Entry, RedisEntity, RedisRecord};

use common::{PASSWORD, SecretLogin, secret_login};

/// An incoming event, as a stream message that is not a stored entity.
#[derive(RedisRecord, Debug, Clone, PartialEq)]
struct Event {
    id: String,
    #[redis(rename = "type")]
    kind: String,
    amount: f64,
    #[redis(json)]
    payload: BTreeMap<String, String>,
    created_at: i64,
}

fn event(n: usize) -> Event {
    Event {
        id: format!("e{n}"),
        kind: "push".into(),
        amount: n as f64 + 0.5,
        payload: BTreeMap::from([("repo".into(), format!("r{n}"))]),
        created_at: 1_700_000_000_000 + n as i64,
    }
}

/// The events stream's name; a test's key is `redis.key(EVENTS)`.
const EVENTS: &str = "events:incoming";
const GROUP: &str = "event-processors";

/// The events stream at `key`, through `client`.
fn events(client: &Client, key: impl Into<String>) -> Stream<Event> {
    Stream::new(client, key)
}

/// The test's events stream and its group, created (on the empty stream,
/// from the beginning: the default).
async fn with_group(redis: &TestRedis) -> (Stream<Event>, ConsumerGroup<Event>) {
    let stream = events(redis.client(), redis.key(EVENTS));
    let group = stream.group(GROUP);
    group.ensure().await.expect("ensure");
    (stream, group)
}

/// Publishes `event(n)` for each `n`, one at a time; their stream ids.
async fn publish_events(stream: &Stream<Event>, ns: std::ops::Range<usize>) -> Vec<String> {
    let mut ids = Vec::new();
    for n in ns {
        ids.push(stream.publish(&event(n)).await.expect("publish"));
    }
    ids
}

async fn raw_int(client: &Client, args: &[&str]) -> i64 {
    raw_query(client, args).await
}

fn text(value: &Value) -> String {
    match value {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        other => panic!("expected a string, got {other:?}"),
    }
}

/// The ids on a stream, oldest first.
async fn stream_ids(client: &Client, key: &str) -> Vec<String> {
    match raw_command(client, &["XRANGE", key, "-", "+"]).await {
        Value::Array(entries) => entries
            .iter()
            .map(|e| match e {
                Value::Array(parts) => text(&parts[0]),
                other => panic!("bad entry {other:?}"),
            })
            .collect(),
        other => panic!("bad XRANGE reply {other:?}"),
    }
}

/// How many entries of the stream at `key` are pending in [`GROUP`].
async fn pending_count(client: &Client, key: &str) -> i64 {
    match raw_command(client, &["XPENDING", key, GROUP]).await {
        Value::Array(parts) => match &parts[0] {
            Value::Int(n) => *n,
            other => panic!("bad count {other:?}"),
        },
        other => panic!("bad XPENDING reply {other:?}"),
    }
}

/// Publishing adds one entry, stored as the record's fields.
async fn criterion_01_publish_adds_one_entry_to_events_incoming(redis: TestRedis) {
    let client = redis.client();
    let key = redis.key(EVENTS);
    let stream = events(client, &key);
    assert_eq!(raw_int(client, &["XLEN", &key]).await, 0);
    let id = stream.publish(&event(1)).await.expect("publish");
    assert_eq!(raw_int(client, &["XLEN", &key]).await, 1);
    assert_eq!(stream.len().await.expect("len"), 1);
    assert_eq!(stream_ids(client, &key).await, vec![id.clone()]);

    // Stored as the record's fields, with the documented codec.
    let fields = match raw_command(client, &["XRANGE", &key, &id, &id]).await {
        Value::Array(entries) => match &entries[0] {
            Value::Array(parts) => match &parts[1] {
                Value::Array(items) => items.iter().map(text).collect::<Vec<_>>(),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    };
    assert_eq!(
        fields,
        [
            "id",
            "e1",
            "type",
            "push",
            "amount",
            "1.5",
            "payload",
            r#"{"repo":"r1"}"#,
            "created_at",
            "1700000000001"
        ]
    );
}

/// A batch of five is one pipeline and five entries, in order.
async fn criterion_02_batch_of_five_produces_five_entries(redis: TestRedis) {
    let client = redis.client();
    let key = redis.key(EVENTS);
    let stream = events(client, &key);
    let batch: Vec<Event> = (0..5).map(event).collect();
    let before = client.round_trips();
    let report = stream
        .publish_batch(batch.iter().map(|e| (e.id.clone(), e)))
        .await
        .expect("batch");
    assert_eq!(client.round_trips() - before, 1, "one pipeline");
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(report.succeeded.len(), 5);
    assert_eq!(raw_int(client, &["XLEN", &key]).await, 5);
    let on_stream = stream_ids(client, &key).await;
    for (i, published) in report.succeeded.iter().enumerate() {
        assert_eq!(published.index, i);
        assert_eq!(published.id, format!("e{i}"));
        assert_eq!(published.stream_id, on_stream[i]);
    }
}

/// A group read returns the published events with their ids, blocking
/// or not, and honours COUNT.
async fn criterion_03_read_returns_the_published_events_with_their_stream_ids(redis: TestRedis) {
    let (stream, group) = with_group(&redis).await;
    let ids = publish_events(&stream, 0..3).await;
    let published: Vec<(String, Event)> = ids.into_iter().zip((0..3).map(event)).collect();
    let batch = group
        .read(10, Some(Duration::from_secs(1)))
        .await
        .expect("read");
    assert!(batch.failures.is_empty(), "{:?}", batch.failures);
    let got: Vec<(String, Event)> = batch
        .entries
        .iter()
        .map(|e| (e.id.clone(), e.message.clone()))
        .collect();
    assert_eq!(got, published);
    assert!(batch.entries.iter().all(|e| e.deliveries == 1));

    // Nothing new: a short block returns an empty batch, not an error.
    let again = group
        .read(10, Some(Duration::from_millis(50)))
        .await
        .expect("read");
    assert!(again.is_empty());
    // COUNT is honoured, and a non-blocking read works on the shared connection.
    stream.publish(&event(7)).await.expect("publish");
    stream.publish(&event(8)).await.expect("publish");
    let one = group.read(1, None).await.expect("read");
    assert_eq!(one.entries.len(), 1);
    assert_eq!(one.entries[0].message, event(7));
}

/// Acknowledging takes entries off the pending list, once.
async fn criterion_04_ack_removes_the_entry_from_the_pending_list(redis: TestRedis) {
    let client = redis.client();
    let key = redis.key(EVENTS);
    let (stream, group) = with_group(&redis).await;
    publish_events(&stream, 0..3).await;
    let batch = group.read(10, None).await.expect("read");
    assert_eq!(batch.entries.len(), 3);
    assert_eq!(pending_count(client, &key).await, 3);
    assert_eq!(group.pending_count().await.expect("pending"), 3);

    assert_eq!(group.ack([&batch.entries[0].id]).await.expect("ack"), 1);
    assert_eq!(pending_count(client, &key).await, 2);
    assert_eq!(
        group.ack([&batch.entries[0].id]).await.expect("ack"),
        0,
        "acking twice is harmless"
    );
    assert_eq!(group.ack(batch.ids()).await.expect("ack"), 2);
    assert_eq!(pending_count(client, &key).await, 0);
    assert_eq!(group.ack(Vec::<String>::new()).await.expect("empty"), 0);
}

/// Ensuring a group is idempotent, and other errors are not swallowed.
async fn criterion_05_ensure_consumer_group_twice_does_not_error(redis: TestRedis) {
    let client = redis.client();
    let key = redis.key(EVENTS);
    let group = events(client, &key).group(GROUP);
    assert!(
        group.ensure().await.expect("first"),
        "created the first time"
    );
    assert!(
        !group.ensure().await.expect("second"),
        "BUSYGROUP is success"
    );
    assert!(
        !group
            .ensure_from(GroupStart::Beginning)
            .await
            .expect("third")
    );
    // MKSTREAM: the stream exists, empty, with exactly one group.
    assert_eq!(raw_int(client, &["EXISTS", &key]).await, 1);
    assert_eq!(raw_int(client, &["XLEN", &key]).await, 0);
    match raw_command(client, &["XINFO", "GROUPS", &key]).await {
        Value::Array(groups) => assert_eq!(groups.len(), 1),
        other => panic!("{other:?}"),
    }
    // Other errors are not swallowed: a key of the wrong type.
    let not_a_stream = redis.key("not-a-stream");
    raw_command(client, &["SET", &not_a_stream, "x"]).await;
    let err = Stream::<Event>::new(client, not_a_stream)
        .group(GROUP)
        .ensure()
        .await
        .expect_err("wrong type");
    assert_eq!(err.code(), "STORAGE_COMMAND");
}

/// A new group reads from the beginning by default, from new entries on
/// request, and an existing one is never moved.
async fn a_new_group_starts_at_the_beginning_unless_told_otherwise_and_is_never_moved(
    redis: TestRedis,
) {
    let stream = events(redis.client(), redis.key(EVENTS));
    let early = publish_events(&stream, 0..2).await;

    // The default: entries from before the group existed are delivered.
    let jobs = stream.group("jobs");
    assert!(jobs.ensure().await.expect("ensure"));
    assert_eq!(jobs.read(10, None).await.expect("read").ids(), early);

    // Only new entries, on request.
    let live = stream.group("live");
    assert!(
        live.ensure_from(GroupStart::NewEntriesOnly)
            .await
            .expect("ensure")
    );
    assert!(live.read(10, None).await.expect("read").is_empty());
    // An existing group is never moved, whatever is asked.
    assert!(!live.ensure().await.expect("again"));
    assert!(
        live.read(10, None).await.expect("read").is_empty(),
        "not rewound"
    );
    assert!(
        !jobs
            .ensure_from(GroupStart::NewEntriesOnly)
            .await
            .expect("again")
    );
    let late = publish_events(&stream, 2..3).await;
    assert_eq!(live.read(10, None).await.expect("read").ids(), late);
    assert_eq!(jobs.read(10, None).await.expect("read").ids(), late);
    assert_eq!(GroupStart::default(), GroupStart::Beginning);
}

/// One malformed event in a batch is reported, and the others published;
/// per-item server errors are reported per item too.
async fn criterion_08_batch_with_one_malformed_event_publishes_the_others_and_reports_it(
    redis: TestRedis,
) {
    let client = redis.client();
    let key = redis.key(EVENTS);
    let stream = events(client, &key);
    let mut batch: Vec<Event> = (0..5).map(event).collect();
    batch[2].amount = f64::NAN; // cannot be encoded
    let report = stream
        .publish_batch(batch.iter().map(|e| (e.id.clone(), e)))
        .await
        .expect("the batch as a whole succeeds");
    let ok: Vec<(usize, &str)> = report
        .succeeded
        .iter()
        .map(|p| (p.index, p.id.as_str()))
        .collect();
    assert_eq!(ok, [(0, "e0"), (1, "e1"), (3, "e3"), (4, "e4")]);
    assert_eq!(report.failed.len(), 1);
    let failed = &report.failed[0];
    assert_eq!((failed.index, failed.id.as_str()), (2, "e2"));
    assert_eq!(failed.error.code(), "ENCODE");
    assert!(
        failed.error.to_string().contains("`amount`"),
        "{}",
        failed.error
    );
    assert_eq!(raw_int(client, &["XLEN", &key]).await, 4);
    assert_eq!(
        stream_ids(client, &key).await,
        report
            .succeeded
            .iter()
            .map(|p| p.stream_id.clone())
            .collect::<Vec<_>>()
    );

    // Per-item server errors are reported per item too.
    let string_key = redis.key("string-key");
    raw_command(client, &["SET", &string_key, "x"]).await;
    let report = Stream::<Event>::new(client, string_key)
        .publish_batch(batch[..2].iter().map(|e| (e.id.clone(), e)))
        .await
        .expect("the pipeline ran");
    assert!(report.succeeded.is_empty());
    assert_eq!(report.failed.len(), 2);
    assert!(
        report
            .failed
            .iter()
            .all(|f| f.error.code() == "STORAGE_COMMAND")
    );
}

/// Entries idle longer than `min_idle` are claimed, and not before; a
/// live consumer's fresh entry is not taken.
async fn criterion_09_claim_reclaims_entries_idle_longer_than_n_ms(redis: TestRedis) {
    let stream = events(redis.client(), redis.key(EVENTS));
    let crashed = stream.group(GROUP).with_consumer("crashed");
    let survivor = stream.group(GROUP).with_consumer("survivor");
    crashed.ensure().await.expect("ensure");
    publish_events(&stream, 0..2).await;
    let taken = crashed.read(10, None).await.expect("read");
    assert_eq!(taken.entries.len(), 2);
    let started = Instant::now();
    let min_idle = Duration::from_millis(300);

    // Not idle long enough yet: nothing to claim.
    let early = survivor.claim_idle(min_idle, 10).await.expect("claim");
    assert!(early.is_empty());

    // Poll until they are; it must not happen before min_idle has passed.
    let claimed = loop {
        let batch = survivor.claim_idle(min_idle, 10).await.expect("claim");
        if !batch.entries.is_empty() {
            break batch;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "never became claimable"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(started.elapsed() >= min_idle);
    assert_eq!(claimed.ids(), taken.ids());
    assert_eq!(claimed.entries[0].message, event(0));
    assert!(
        claimed.entries.iter().all(|e| e.deliveries == 2),
        "{:?}",
        claimed.entries
    );
    let owners: Vec<String> = survivor
        .pending(10)
        .await
        .expect("pending")
        .into_iter()
        .map(|p| p.consumer)
        .collect();
    assert_eq!(owners, ["survivor", "survivor"]);

    // A fresh entry of a live consumer is not taken.
    stream.publish(&event(9)).await.expect("publish");
    assert_eq!(crashed.read(10, None).await.expect("read").entries.len(), 1);
    assert!(
        survivor
            .claim_idle(min_idle, 10)
            .await
            .expect("claim")
            .is_empty()
    );
}

/// PendingThenClaim takes the idle entries only.
async fn pending_then_claim_strategy_skips_entries_that_are_not_idle(redis: TestRedis) {
    let stream = events(redis.client(), redis.key(EVENTS));
    let survivor = stream
        .group(GROUP)
        .with_consumer("survivor")
        .with_claim_strategy(ClaimStrategy::PendingThenClaim);
    let busy = stream.group(GROUP).with_consumer("busy");
    let crashed = stream.group(GROUP).with_consumer("crashed");
    busy.ensure().await.expect("ensure");
    publish_events(&stream, 0..3).await;
    let old = crashed.read(3, None).await.expect("read");
    // Wait for them to go idle, then make fresh pending entries after them.
    let min_idle = Duration::from_millis(150);
    tokio::time::sleep(min_idle + Duration::from_millis(50)).await;
    publish_events(&stream, 3..6).await;
    assert_eq!(busy.read(3, None).await.expect("read").entries.len(), 3);
    let claimed = survivor.claim_idle(min_idle, 10).await.expect("claim");
    assert_eq!(claimed.ids(), old.ids());
    assert!(claimed.entries.iter().all(|e| e.deliveries == 2));
}

/// The default consumer is `hostname-pid`, and the server knows it so.
async fn criterion_10_consumer_name_holds_hostname_and_pid(redis: TestRedis) {
    let client = redis.client();
    let key = redis.key(EVENTS);
    let host = hostname::get()
        .expect("hostname")
        .to_string_lossy()
        .into_owned();
    let pid = std::process::id().to_string();
    let name = default_consumer_name();
    assert_eq!(name, format!("{host}-{pid}"));

    let stream = events(client, &key);
    let group = stream.group(GROUP);
    assert_eq!(group.consumer_name(), name);
    group.ensure().await.expect("ensure");
    stream.publish(&event(1)).await.expect("publish");
    group.read(1, None).await.expect("read");
    // The server knows the consumer by that name.
    let consumers = raw_command(client, &["XINFO", "CONSUMERS", &key, GROUP]).await;
    let names: Vec<String> = match consumers {
        Value::Array(list) => list
            .iter()
            .map(|c| match c {
                Value::Array(kv) => text(&kv[1]),
                Value::Map(kv) => text(&kv[0].1),
                other => panic!("{other:?}"),
            })
            .collect(),
        other => panic!("{other:?}"),
    };
    assert_eq!(names, [name]);
}

/// Undecodable entries are dead-lettered (to `<stream>:dead`, in the
/// stream's slot) and acknowledged; the good ones are returned.
async fn undecodable_entries_are_dead_lettered_and_the_rest_of_the_batch_returned(
    redis: TestRedis,
) {
    let client = redis.client();
    let key = redis.key(EVENTS);
    let (stream, group) = with_group(&redis).await;
    let good1 = stream.publish(&event(1)).await.expect("publish");
    let bad_amount = text(
        &raw_command(
            client,
            &[
                "XADD",
                &key,
                "*",
                "id",
                "x",
                "type",
                "t",
                "amount",
                "lots",
                "payload",
                "{}",
                "created_at",
                "1",
            ],
        )
        .await,
    );
    let missing = text(&raw_command(client, &["XADD", &key, "*", "id", "y"]).await);
    let good2 = stream.publish(&event(2)).await.expect("publish");

    let batch = group
        .read(10, None)
        .await
        .expect("read never fails on bad data");
    assert_eq!(batch.ids(), [good1.as_str(), good2.as_str()]);
    assert_eq!(batch.failures.len(), 2);
    let failure = &batch.failures[0];
    assert_eq!(failure.id.as_deref(), Some(bad_amount.as_str()));
    assert_eq!(failure.error.code(), "DECODE");
    let message = failure.error.to_string();
    assert!(message.contains("`amount`"), "{message}");
    assert!(
        message.contains(&format!("{key} entry {bad_amount}")),
        "{message}"
    );
    assert!(matches!(failure.action, FailureAction::DeadLettered { .. }));
    assert!(
        batch.failures[1]
            .error
            .to_string()
            .contains("required field is missing")
    );

    // Both parked, acked: only the good ones are pending.
    assert_eq!(pending_count(client, &key).await, 2);
    let dead = group.dead_letters(10).await.expect("dead letters");
    assert_eq!(dead.len(), 2);
    assert_eq!(dead[0].source_id, bad_amount);
    assert_eq!(dead[0].group, GROUP);
    assert_eq!(dead[0].consumer, default_consumer_name());
    assert_eq!(dead[0].deliveries, 1);
    assert!(dead[0].error.contains("`amount`"), "{}", dead[0].error);
    assert_eq!(
        dead[0].message.as_ref().map_err(|e| e.code()).err(),
        Some("DECODE")
    );
    assert_eq!(dead[1].source_id, missing);
    assert_eq!(
        group.dead_letter_stream(),
        redis.key("events:incoming:dead")
    );
}

/// The other decode policies acknowledge, or leave pending, and write
/// no dead letter.
async fn decode_policies_acknowledge_or_leave_pending(redis: TestRedis) {
    let client = redis.client();
    let key = redis.key(EVENTS);
    let stream = events(client, &key);
    let acking = stream
        .group("acking")
        .with_decode_policy(DecodePolicy::Acknowledge);
    let leaving = stream
        .group("leaving")
        .with_decode_policy(DecodePolicy::LeavePending);
    acking.ensure().await.expect("ensure");
    leaving.ensure().await.expect("ensure");
    raw_command(client, &["XADD", &key, "*", "garbage", "1"]).await;

    let batch = acking.read(10, None).await.expect("read");
    assert_eq!(batch.failures[0].action, FailureAction::Acknowledged);
    assert_eq!(acking.pending_count().await.expect("pending"), 0);

    let batch = leaving.read(10, None).await.expect("read");
    assert_eq!(batch.failures[0].action, FailureAction::LeftPending);
    assert_eq!(leaving.pending_count().await.expect("pending"), 1);
    assert_eq!(
        raw_int(client, &["EXISTS", &redis.key("events:incoming:dead")]).await,
        0
    );
}

/// A blocking read outlives the response timeout on its own connection,
/// the shared one answering meanwhile, and wakes when an entry arrives.
async fn a_blocking_read_uses_its_own_connection_and_outlives_the_response_timeout(
    redis: TestRedis,
) {
    let client = redis
        .client_with(|c| c.response_timeout(Duration::from_millis(200)))
        .await;
    let key = redis.key(EVENTS);
    let stream = events(&client, &key);
    let group = stream.group(GROUP);
    group.ensure().await.expect("ensure");

    // Blocks for longer than the response timeout, without tripping it...
    let reader = group.clone();
    let started = Instant::now();
    let blocked =
        tokio::spawn(async move { reader.read(5, Some(Duration::from_millis(800))).await });
    // ...while the shared connection keeps answering promptly.
    for _ in 0..5 {
        let t = Instant::now();
        assert!(client.health().await.ok);
        assert!(t.elapsed() < Duration::from_millis(200));
    }
    let batch = blocked.await.expect("join").expect("no timeout");
    assert!(batch.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(750));

    // A blocked read wakes up when an entry arrives.
    let blocked_before = redis.blocked_clients_at(&key).await;
    let reader = group.clone();
    let woken = tokio::spawn(async move { reader.read(5, Some(Duration::from_secs(10))).await });
    eventually(Duration::from_secs(5), "the read to block", async || {
        redis.blocked_clients_at(&key).await > blocked_before
    })
    .await;
    let started = Instant::now();
    let id = stream.publish(&event(1)).await.expect("publish");
    let batch = woken.await.expect("join").expect("read");
    assert_eq!(batch.ids(), [id.as_str()]);
    assert!(started.elapsed() < Duration::from_secs(2));
}

/// COUNT 0 (no limit to Redis) is refused.
async fn read_count_zero_is_refused_rather_than_unbounded(redis: TestRedis) {
    let group = events(redis.client(), redis.key(EVENTS)).group(GROUP);
    let err = group.read(0, None).await.expect_err("zero");
    assert_eq!(err.code(), "STORAGE_CONFIG");
}

/// Ranges read outside any group, with no delivery count.
async fn range_reads_outside_any_group(redis: TestRedis) {
    let stream = events(redis.client(), redis.key(EVENTS));
    let ids = publish_events(&stream, 0..4).await;
    let batch = stream.range("-", "+", 3).await.expect("range");
    assert_eq!(
        batch.ids(),
        ids[..3].iter().map(String::as_str).collect::<Vec<_>>()
    );
    assert!(batch.entries.iter().all(|e| e.deliveries == 0));
    let tail = stream.range(&ids[2], "+", 10).await.expect("range");
    assert_eq!(tail.entries.len(), 2);
}

/// Creating the entity writes its hash and its stream entry in one
/// script, one round trip.
async fn outbox_create_enqueues_the_entity_in_the_same_step(redis: TestRedis) {
    let client = redis.client();
    let jobs = Stream::<Job>::of_entity(client).expect("declared stream");
    assert_eq!(jobs.key(), "jobs:{outbox_create}:stream");
    // Warm up: the first call of a script loads it.
    job("j0").create(client).await.expect("create");
    let group = jobs.group("runners");
    group
        .ensure_from(GroupStart::NewEntriesOnly)
        .await
        .expect("ensure"); // from `$`: after j0

    let before = client.round_trips();
    let outcome = job("j1").create(client).await.expect("create");
    assert_eq!(
        client.round_trips() - before,
        1,
        "hash and stream entry in one script"
    );
    let stream_id = outcome.stream_id.expect("an entry was enqueued");

    let batch = group.read(10, None).await.expect("read");
    assert_eq!(batch.entries.len(), 1);
    assert_eq!(batch.entries[0].id, stream_id);
    assert_eq!(batch.entries[0].message, job("j1"));

    let err = Stream::<Ping2>::of_entity(client).expect_err("no stream declared");
    assert_eq!(err.code(), "STORAGE_CONFIG");
}

/// A create that writes nothing enqueues nothing, and updates never do.
async fn outbox_a_failed_create_adds_no_stream_entry(redis: TestRedis) {
    const TASKS: &str = "tasks:{outbox_failed_create}:stream";
    let client = redis.client();
    task("t1").create(client).await.expect("create");
    assert_eq!(raw_int(client, &["XLEN", TASKS]).await, 1);

    let mut duplicate = task("t1");
    duplicate.status = "running".into();
    let err = duplicate.create(client).await.expect_err("exists");
    assert_eq!(err.code(), "ALREADY_EXISTS");
    assert_eq!(
        raw_int(client, &["XLEN", TASKS]).await,
        1,
        "both or neither: no entry for a create that wrote nothing"
    );
    // A create refused before any write (an invalid key) enqueues nothing either.
    let err = task("bad:id")
        .create(client)
        .await
        .expect_err("invalid key");
    assert_eq!(err.code(), "INVALID_KEY");
    assert_eq!(raw_int(client, &["XLEN", TASKS]).await, 1);
    // Updates do not enqueue.
    Task::patch(
        client,
        "t1",
        &TaskPatch {
            status: Some("running".into()),
            ..Default::default()
        },
    )
    .await
    .expect("patch");
    assert_eq!(raw_int(client, &["XLEN", TASKS]).await, 1);
}

/// Creates trim the stream to about its `stream_maxlen`.
async fn outbox_trims_the_stream_to_about_maxlen(redis: TestRedis) {
    let client = redis.client();
    for id in 0..600u32 {
        Ping { id }.create(client).await.expect("create");
    }
    let len = raw_int(client, &["XLEN", "pings:{outbox_trim}:stream"]).await;
    // MAXLEN ~ trims whole nodes (100 entries by default): about 10, never 600.
    assert!((10..=110).contains(&len), "XLEN = {len}");
    let newest = Stream::<Ping>::of_entity(client)
        .expect("stream")
        .range("-", "+", 1000)
        .await
        .expect("range");
    assert_eq!(newest.entries.last().map(|e| e.message.id), Some(599));
}

/// A blocking read, on its own connection, reaches the metrics hook.
async fn blocking_reads_are_reported_to_the_metrics_hook(redis: TestRedis) {
    use redis_runtime::metrics::{OperationEvent, Outcome};
    use std::sync::{Arc, Mutex};

    let seen: Arc<Mutex<Vec<(String, Outcome)>>> = Arc::default();
    let sink = seen.clone();
    let hook = move |event: &OperationEvent<'_>| {
        sink.lock()
            .expect("lock")
            .push((event.operation.to_string(), event.outcome));
    };
    // The harness's config: a short connect timeout.
    let config = Config::builder(redis.url())
        .connect_timeout(Duration::from_secs(1))
        .build()
        .expect("config");
    let client = Client::connect_with_metrics(config, hook)
        .await
        .expect("connect");
    let group = events(&client, redis.key(EVENTS)).group(GROUP);
    group.ensure().await.expect("ensure");
    let batch = group
        .read(10, Some(Duration::from_millis(50)))
        .await
        .expect("blocking read");
    assert!(batch.is_empty());
    let seen = seen.lock().expect("lock").clone();
    assert!(
        seen.contains(&("stream.read".to_string(), Outcome::Success)),
        "the blocking read must reach the hook: {seen:?}"
    );
}

on_both_topologies!(
    criterion_01_publish_adds_one_entry_to_events_incoming,
    criterion_02_batch_of_five_produces_five_entries,
    criterion_03_read_returns_the_published_events_with_their_stream_ids,
    criterion_04_ack_removes_the_entry_from_the_pending_list,
    criterion_05_ensure_consumer_group_twice_does_not_error,
    a_new_group_starts_at_the_beginning_unless_told_otherwise_and_is_never_moved,
    criterion_08_batch_with_one_malformed_event_publishes_the_others_and_reports_it,
    criterion_09_claim_reclaims_entries_idle_longer_than_n_ms,
    pending_then_claim_strategy_skips_entries_that_are_not_idle,
    criterion_10_consumer_name_holds_hostname_and_pid,
    undecodable_entries_are_dead_lettered_and_the_rest_of_the_batch_returned,
    decode_policies_acknowledge_or_leave_pending,
    a_blocking_read_uses_its_own_connection_and_outlives_the_response_timeout,
    read_count_zero_is_refused_rather_than_unbounded,
    range_reads_outside_any_group,
    outbox_create_enqueues_the_entity_in_the_same_step,
    outbox_a_failed_create_adds_no_stream_entry,
    outbox_trims_the_stream_to_about_maxlen,
    blocking_reads_are_reported_to_the_metrics_hook,
);

// On one server only: it needs a server that is not running.
#[tokio::test]
async fn criterion_06_publish_to_unreachable_server_fails_within_5s() {
    let server = RedisServer::start_stopped();
    let client = server.client().await;
    let started = Instant::now();
    let err = events(&client, EVENTS)
        .publish(&event(1))
        .await
        .expect_err("nothing listens");
    let elapsed = started.elapsed();
    println!("publish failed after {elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    assert!(
        matches!(err.code(), "STORAGE_UNAVAILABLE" | "STORAGE_TIMEOUT"),
        "{err:?}"
    );
    let context = err.context().expect("context");
    assert_eq!(context.operation, "stream.publish");
    assert_eq!(context.key_pattern, EVENTS);

    // The batch publish fails the same way, as one typed error.
    let started = Instant::now();
    let batch = [event(1), event(2)];
    let err = events(&client, EVENTS)
        .publish_batch(batch.iter().map(|e| (e.id.clone(), e)))
        .await
        .expect_err("nothing listens");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(err.is_transient(), "{err:?}");
}

// On one server only: it stops the server.
#[tokio::test]
async fn criterion_07_health_reports_not_ok_when_redis_is_down() {
    let (mut server, client) = RedisServer::start_with_client().await;
    assert!(client.health().await.ok);
    server.stop();
    let started = Instant::now();
    let health = client.health().await;
    assert!(!health.ok);
    assert!(health.error.is_some());
    assert!(started.elapsed() < Duration::from_millis(3500));
}

// On one server only: it starts a server without XAUTOCLAIM
// (`--rename-command`).
#[tokio::test]
async fn criterion_09_claim_falls_back_to_xpending_and_xclaim_without_xautoclaim() {
    // A server without XAUTOCLAIM (renamed away), like Redis < 6.2.
    let no_autoclaim = ["--rename-command", "XAUTOCLAIM", ""].map(String::from);
    let server = RedisServer::start_with_args(&no_autoclaim);
    let client = server.client().await;
    let err = client
        .run(Context::new("probe", ""), |mut conn| async move {
            Ok(redis::cmd("XAUTOCLAIM")
                .arg(&["s", "g", "c", "0", "0-0"])
                .query_async::<Value>(&mut conn)
                .await?)
        })
        .await
        .expect_err("this server has no XAUTOCLAIM");
    assert!(err.to_string().contains("unknown command"), "{err}");

    let stream = events(&client, EVENTS);
    let crashed = stream.group(GROUP).with_consumer("crashed");
    let survivor = stream.group(GROUP).with_consumer("survivor"); // ClaimStrategy::Auto
    crashed.ensure().await.expect("ensure");
    publish_events(&stream, 0..25).await;
    let taken = crashed.read(25, None).await.expect("read");
    assert_eq!(taken.entries.len(), 25);
    let min_idle = Duration::from_millis(200);
    let started = Instant::now();
    let mut claimed = Vec::new();
    while claimed.len() < 25 {
        // A small count makes it walk the pending list page by page.
        let batch = survivor.claim_idle(min_idle, 4).await.expect("claim");
        assert!(batch.failures.is_empty());
        if batch.entries.is_empty() {
            assert!(started.elapsed() < Duration::from_secs(5), "stuck");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        claimed.extend(batch.entries);
    }
    assert!(started.elapsed() >= min_idle);
    let ids: Vec<&str> = claimed.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, taken.ids(), "every entry claimed once, in order");
    assert!(claimed.iter().all(|e| e.deliveries == 2));
    assert_eq!(
        claimed
            .iter()
            .map(|e| e.message.clone())
            .collect::<Vec<_>>(),
        (0..25).map(event).collect::<Vec<_>>()
    );
    assert!(
        survivor
            .pending(100)
            .await
            .expect("pending")
            .iter()
            .all(|p| p.consumer == "survivor")
    );
}

// On one server only: it logs in as an ACL user of its own server, and
// stops and restarts that server.
#[tokio::test]
async fn criterion_11_the_url_is_never_logged() {
    let SecretLogin {
        mut server,
        url,
        client,
        logs,
        _admin,
        _guard,
        ..
    } = secret_login().await;
    let stream = events(&client, EVENTS);
    let group = stream.group(GROUP);
    group.ensure().await.expect("ensure");
    stream.publish(&event(1)).await.expect("publish");
    raw_command(&client, &["XADD", EVENTS, "*", "id", "bad"]).await; // undecodable
    let batch = group
        .read(10, Some(Duration::from_millis(100)))
        .await
        .expect("read");
    assert_eq!(batch.failures.len(), 1);
    group.ack(batch.ids()).await.expect("ack");

    // A worker's whole life: start, claim, read, handle, ack, stop.
    stream.publish(&event(3)).await.expect("publish");
    let stop = tokio_util::sync::CancellationToken::new();
    let done = stop.clone();
    // The handler stops the worker after its first entry.
    let handle_once = move |_entry: Entry<Event>| {
        done.cancel();
        std::future::ready(Ok::<(), String>(()))
    };
    let worker = group.worker().block(Duration::from_millis(50));
    let report = worker.run(handle_once, stop).await.expect("worker");
    assert_eq!(report.handled, 1);

    // Provoke errors on the shared and on the dedicated connection.
    server.stop();
    let mut texts = Vec::new();
    let err = stream.publish(&event(2)).await.expect_err("down");
    texts.push(format!("{err} {err:?}"));
    let err = group
        .read(1, Some(Duration::from_millis(50)))
        .await
        .expect_err("down");
    texts.push(format!("{err} {err:?}"));
    texts.push(format!("{stream:?} {group:?} {client:?}"));
    server.restart();

    texts.push(logs.text());
    let all = texts.join("\n");
    assert!(all.contains("redis connected"), "{all}");
    assert!(all.contains("undecodable stream entry"), "{all}");
    assert!(all.contains("redis error"), "{all}");
    assert!(!all.contains(PASSWORD), "a password leaked:\n{all}");
    assert!(!all.contains(&url), "the URL leaked:\n{all}");
    assert!(!all.contains("redis://"), "a URL leaked:\n{all}");
}

// On one server only: it restarts the server.
#[tokio::test]
async fn a_blocking_read_reconnects_after_a_server_restart() {
    let (mut server, client) = RedisServer::start_with_client().await;
    let group = events(&client, EVENTS).group(GROUP);
    group.ensure().await.expect("ensure");
    group
        .read(1, Some(Duration::from_millis(10)))
        .await
        .expect("opens the dedicated connection");
    server.restart();
    // The data went with the restart; recreate the group once the shared
    // connection is back (its first command may see the broken pipe).
    let limit = Duration::from_secs(10);
    let recovered = |result: redis_runtime::Result<bool>| match result {
        Ok(done) => done,
        Err(e) => {
            assert!(e.is_transient(), "{e:?}");
            false
        }
    };
    eventually(limit, "the group to be recreated", async || {
        recovered(group.ensure().await.map(|_| true))
    })
    .await;
    eventually(limit, "the blocking read to recover", async || {
        let read = group.read(1, Some(Duration::from_millis(10))).await;
        recovered(read.map(|batch| {
            assert!(batch.is_empty());
            true
        }))
    })
    .await;
}

// ---- the outbox: entities declared with a stream ----
//
// A create writes the hash and the stream entry in one script, so on a
// cluster they must share a hash slot: these types are declared `cluster`,
// pinned to one slot by a constant tag. A stream is one fixed key, and the
// cluster tests share one cluster, so each test has a type of its own.

/// The entity of `outbox_create_enqueues_the_entity_in_the_same_step`.
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[redis(cluster, key = "job:{{outbox_create}}:{id}")]
#[redis(stream = "jobs:{{outbox_create}}:stream", stream_maxlen = 1000)]
struct Job {
    id: String,
    user_id: String,
    status: String,
    created_at: i64,
}

/// The entity of `outbox_a_failed_create_adds_no_stream_entry`: a [`Job`]
/// with a stream of its own.
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[redis(cluster, key = "task:{{outbox_failed_create}}:{id}")]
#[redis(stream = "tasks:{{outbox_failed_create}}:stream", stream_maxlen = 1000)]
struct Task {
    id: String,
    user_id: String,
    status: String,
    created_at: i64,
}

/// The entity of `outbox_trims_the_stream_to_about_maxlen`.
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[redis(cluster, key = "ping:{{outbox_trim}}:{id}")]
#[redis(stream = "pings:{{outbox_trim}}:stream", stream_maxlen = 10)]
struct Ping {
    id: u32,
}

fn job(id: &str) -> Job {
    Job {
        id: id.into(),
        user_id: "u1".into(),
        status: "queued".into(),
        created_at: 1_700_000_000_000,
    }
}

fn task(id: &str) -> Task {
    Task {
        id: id.into(),
        user_id: "u1".into(),
        status: "queued".into(),
        created_at: 1_700_000_000_000,
    }
}

#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[redis(key = "ping2:{id}")]
struct Ping2 {
    id: u32,
}

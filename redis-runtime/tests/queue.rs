//! List queues (`LPUSH` in, `RPOP` out) and the reliable variant, each test
//! against a real, private `redis-server` and against a real Redis Cluster.

use std::time::{Duration, Instant};

use redis::Value;
use redis_runtime::on_both_topologies;
use redis_runtime::queue::{Held, ListQueue, ReliableQueue};
use redis_runtime::testing::{RedisServer, TestRedis, eventually, raw_command, raw_query};
use redis_runtime::{Client, Json, RedisValue};

/// The list at `key`, head first.
async fn list(client: &Client, key: &str) -> Vec<String> {
    raw_query(client, &["LRANGE", key, "0", "-1"]).await
}

/// Pops from `consumer`, waiting up to `wait` for an item, which must be
/// `expected`.
async fn pop_blocking(
    consumer: &ReliableQueue<String>,
    wait: Duration,
    expected: &str,
) -> Held<String> {
    let popped = consumer.pop_blocking(wait).await.expect("pop");
    let held = popped.unwrap_or_else(|| panic!("no item within {wait:?}, expected {expected}"));
    assert_eq!(held.item, expected);
    held
}

fn ids(range: std::ops::Range<u32>) -> Vec<String> {
    range.map(|n| format!("job-{n}")).collect()
}

#[derive(RedisValue, Debug, Clone, Copy, PartialEq)]
enum Priority {
    Low,
    High,
}

#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq)]
struct JobRef {
    tenant: String,
    job: u32,
}

async fn push_pop_is_fifo_with_the_job_queue_layout(redis: TestRedis) {
    let client = redis.client();
    let queue = ListQueue::<String>::new(client, redis.key("job_queue"));
    assert_eq!(queue.push(&"job-0".to_string()).await.expect("push"), 1);
    assert_eq!(queue.push_many(&ids(1..4)).await.expect("push many"), 4);
    assert_eq!(queue.push_many(&[]).await.expect("nothing"), 4);
    // LPUSH in, RPOP out: redis-cli sees the newest at the head.
    assert_eq!(
        list(client, &redis.key("job_queue")).await,
        ["job-3", "job-2", "job-1", "job-0"]
    );
    assert_eq!(queue.len().await.expect("len"), 4);

    assert_eq!(queue.pop().await.expect("pop").as_deref(), Some("job-0"));
    let batch = queue.pop_many(2).await.expect("pop many");
    assert_eq!(batch.items, ["job-1", "job-2"]);
    assert!(batch.failures.is_empty());
    assert_eq!(queue.pop_many(10).await.expect("rest").items, ["job-3"]);
    assert_eq!(queue.pop().await.expect("pop"), None);
    assert!(queue.pop_many(10).await.expect("empty").items.is_empty());
    assert!(queue.is_empty().await.expect("empty"));

    // Items pushed by another client (a plain `LPUSH job_queue id`) pop too.
    raw_command(client, &["LPUSH", &redis.key("job_queue"), "from-cli"]).await;
    assert_eq!(queue.pop().await.expect("pop").as_deref(), Some("from-cli"));
}

async fn clear_empties_the_queue_and_reports_how_many(redis: TestRedis) {
    let client = redis.client();
    let queue = ListQueue::<u64>::new(client, redis.key("numbers"));
    queue.push_many(&[1, 2, 3]).await.expect("push");
    assert_eq!(queue.clear().await.expect("clear"), 3);
    assert_eq!(queue.len().await.expect("len"), 0);
    assert_eq!(queue.clear().await.expect("clear again"), 0);
}

async fn typed_items_use_the_field_codec(redis: TestRedis) {
    let client = redis.client();
    let priorities = ListQueue::<Priority>::new(client, redis.key("priorities"));
    priorities
        .push_many(&[Priority::High, Priority::Low])
        .await
        .expect("push");
    assert_eq!(
        list(client, &redis.key("priorities")).await,
        ["low", "high"]
    );
    assert_eq!(priorities.pop().await.expect("pop"), Some(Priority::High));

    let refs = ListQueue::<Json<JobRef>>::new(client, redis.key("refs"));
    let item = Json(JobRef {
        tenant: "t1".into(),
        job: 7,
    });
    refs.push(&item).await.expect("push");
    assert_eq!(
        list(client, &redis.key("refs")).await,
        [r#"{"tenant":"t1","job":7}"#]
    );
    assert_eq!(refs.pop().await.expect("pop"), Some(item));
}

async fn undecodable_items_are_parked_not_lost(redis: TestRedis) {
    let client = redis.client();
    let queue = ListQueue::<u32>::new(client, redis.key("counts"));
    raw_command(
        client,
        &["LPUSH", &redis.key("counts"), "1", "two", "3", "-4"],
    )
    .await;
    let batch = queue.pop_many(3).await.expect("pop many");
    assert_eq!(batch.items, [1, 3]);
    assert_eq!(batch.failures.len(), 1);
    assert_eq!(batch.failures[0].code(), "DECODE");
    let err = queue.pop().await.expect_err("-4 is not a u32");
    assert_eq!(err.code(), "DECODE");
    assert!(err.to_string().contains(&redis.key("counts:dead")), "{err}");
    assert_eq!(list(client, &redis.key("counts:dead")).await, ["-4", "two"]);
    assert_eq!(queue.len().await.expect("len"), 0);
}

async fn blocking_pop_waits_on_its_own_connection(redis: TestRedis) {
    let response_timeout = Duration::from_millis(200);
    let client = redis
        .client_with(|c| c.response_timeout(response_timeout))
        .await;
    let key = redis.key("job_queue");
    let queue = ListQueue::<String>::new(&client, &key);

    // Times out with None, after the timeout, though it exceeds the
    // shared connection's response timeout.
    let started = Instant::now();
    assert_eq!(
        queue
            .pop_blocking(Duration::from_millis(600))
            .await
            .expect("pop"),
        None
    );
    assert!(started.elapsed() >= Duration::from_millis(550));

    // Wakes up when an item is pushed.
    let blocked_before = redis.blocked_clients_at(&key).await;
    let waiter = {
        let queue = queue.clone();
        tokio::spawn(async move { queue.pop_blocking(Duration::from_secs(10)).await })
    };
    eventually(Duration::from_secs(5), "the pop to block", async || {
        redis.blocked_clients_at(&key).await > blocked_before
    })
    .await;
    // The shared connection is free meanwhile.
    assert!(client.health().await.ok);
    let pushed_at = Instant::now();
    queue.push(&"job-1".to_string()).await.expect("push");
    let popped = waiter.await.expect("join").expect("pop");
    assert_eq!(popped.as_deref(), Some("job-1"));
    assert!(pushed_at.elapsed() < Duration::from_secs(2));

    // A zero timeout does not wait (and never means "forever").
    assert_eq!(queue.pop_blocking(Duration::ZERO).await.expect("pop"), None);
}

async fn reliable_pop_holds_the_item_until_ack(redis: TestRedis) {
    let client = redis.client();
    let queue = ListQueue::<String>::new(client, redis.key("jobs"));
    queue.push_many(&ids(0..3)).await.expect("push");
    let consumer = queue
        .reliable_as("worker-1", Duration::from_secs(30))
        .await
        .expect("consumer");
    assert_eq!(
        consumer.processing_key(),
        redis.key("jobs:processing:worker-1")
    );

    let held = consumer.pop().await.expect("pop").expect("an item");
    assert_eq!(held.item, "job-0");
    assert_eq!(
        list(client, &redis.key("jobs:processing:worker-1")).await,
        ["job-0"]
    );
    assert_eq!(queue.len().await.expect("len"), 2);
    assert_eq!(consumer.held_count().await.expect("held"), 1);

    assert!(consumer.ack(&held).await.expect("ack"));
    assert!(
        !consumer.ack(&held).await.expect("ack twice"),
        "no longer held"
    );
    assert_eq!(consumer.held_count().await.expect("held"), 0);

    // Give one back: it goes to the back of the queue.
    let held = pop_blocking(&consumer, Duration::from_secs(1), "job-1").await;
    assert!(consumer.requeue(&held).await.expect("requeue"));
    assert_eq!(list(client, &redis.key("jobs")).await, ["job-1", "job-2"]);
    assert_eq!(consumer.held_count().await.expect("held"), 0);

    // Closing requeues what is still held, at once.
    consumer.pop().await.expect("pop").expect("job-2");
    assert_eq!(consumer.close().await.expect("close"), 1);
    assert_eq!(list(client, &redis.key("jobs")).await, ["job-1", "job-2"]);
    assert_eq!(
        raw_command(
            client,
            &["ZSCORE", &redis.key("jobs:consumers"), "worker-1"]
        )
        .await,
        Value::Nil
    );
}

async fn a_consumer_that_dies_holding_an_item_gets_it_requeued(redis: TestRedis) {
    let client = redis.client();
    let queue = ListQueue::<String>::new(client, redis.key("jobs"));
    queue.push_many(&ids(0..2)).await.expect("push");
    let lease = Duration::from_millis(300);

    let doomed = queue.reliable_as("doomed", lease).await.expect("consumer");
    let held = doomed.pop().await.expect("pop").expect("item");
    assert_eq!(held.item, "job-0");
    // It dies without acking: no more lease renewals from here on.
    drop(doomed);
    let died_at = Instant::now();

    let survivor = queue
        .reliable_as("survivor", lease)
        .await
        .expect("consumer");
    let first = survivor.pop().await.expect("pop").expect("item");
    assert_eq!(first.item, "job-1");
    survivor.ack(&first).await.expect("ack");

    // The survivor's keepalive requeues job-0 once doomed's lease expired.
    let again = pop_blocking(&survivor, Duration::from_secs(5), "job-0").await;
    assert!(died_at.elapsed() >= lease - Duration::from_millis(50));
    assert!(survivor.ack(&again).await.expect("ack"));
    assert!(
        list(client, &redis.key("jobs:processing:doomed"))
            .await
            .is_empty()
    );
    assert_eq!(queue.len().await.expect("len"), 0);
}

async fn a_live_consumer_keeps_its_items_past_the_lease(redis: TestRedis) {
    let client = redis.client();
    let queue = ListQueue::<String>::new(client, redis.key("jobs"));
    queue.push(&"job-0".to_string()).await.expect("push");
    let lease = Duration::from_millis(150);
    let slow = queue.reliable_as("slow", lease).await.expect("consumer");
    let other = queue.reliable_as("other", lease).await.expect("consumer");
    let held = slow.pop().await.expect("pop").expect("item");
    // Several leases long; both keepalives run meanwhile.
    tokio::time::sleep(lease * 5).await;
    assert_eq!(other.requeue_stale().await.expect("requeue"), 0);
    assert_eq!(other.pop().await.expect("pop"), None, "not stolen");
    assert!(
        slow.ack(&held).await.expect("ack"),
        "still held by its live owner"
    );
}

async fn undecodable_reliable_items_move_to_the_dead_list(redis: TestRedis) {
    let client = redis.client();
    let queue = ListQueue::<u8>::new(client, redis.key("bytes"));
    raw_command(client, &["LPUSH", &redis.key("bytes"), "300"]).await;
    let consumer = queue
        .reliable_as("c1", Duration::from_secs(30))
        .await
        .expect("consumer");
    let err = consumer.pop().await.expect_err("300 is not a u8");
    assert_eq!(err.code(), "DECODE");
    assert_eq!(consumer.held_count().await.expect("held"), 0);
    assert_eq!(list(client, &redis.key("bytes:dead")).await, ["300"]);
}

async fn consumer_names_are_key_safe(redis: TestRedis) {
    let client = redis.client();
    let queue = ListQueue::<String>::new(client, redis.key("jobs"));
    let err = queue
        .reliable_as("a:b", Duration::from_secs(1))
        .await
        .expect_err("a colon would break out of the key");
    assert_eq!(err.code(), "INVALID_KEY");
    let default = queue
        .reliable(Duration::from_secs(1))
        .await
        .expect("default");
    assert!(
        default
            .consumer()
            .ends_with(&format!("-{}", std::process::id()))
    );
}

on_both_topologies!(
    push_pop_is_fifo_with_the_job_queue_layout,
    clear_empties_the_queue_and_reports_how_many,
    typed_items_use_the_field_codec,
    undecodable_items_are_parked_not_lost,
    blocking_pop_waits_on_its_own_connection,
    reliable_pop_holds_the_item_until_ack,
    a_consumer_that_dies_holding_an_item_gets_it_requeued,
    a_live_consumer_keeps_its_items_past_the_lease,
    undecodable_reliable_items_move_to_the_dead_list,
    consumer_names_are_key_safe,
);

#[tokio::test]
async fn an_older_server_is_refused_by_name_before_any_command_is_sent() {
    use redis_runtime::server::ServerInfo;
    let (_server, client) = RedisServer::start_with_client().await;
    let old = ServerInfo::from_info("# Server\r\nredis_version:6.0.16\r\n").expect("info");
    client.assume_server(old);
    let queue = ListQueue::<String>::new(&client, "jobs:queue");
    let sent = client.round_trips();

    let err = queue
        .reliable(Duration::from_secs(5))
        .await
        .expect_err("LMOVE needs 6.2");
    assert_eq!(err.code(), "STORAGE_UNSUPPORTED");
    let message = err.to_string();
    assert!(
        message.contains("LMOVE") && message.contains("6.2.0") && message.contains("redis 6.0.16"),
        "{message}"
    );
    let err = queue.pop_many(10).await.expect_err("RPOP count needs 6.2");
    assert_eq!(err.code(), "STORAGE_UNSUPPORTED");
    assert_eq!(client.round_trips(), sent, "nothing was sent");
}

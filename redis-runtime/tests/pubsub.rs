//! Typed pub/sub against a real, private `redis-server`: round trips, bad
//! messages, surviving a server restart, clean end on drop.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use redis_runtime::pubsub::Channel;
use redis_runtime::testing::{RedisServer, eventually, raw_query};
use redis_runtime::{Client, Json, Subscription};

#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
struct JobUpdate {
    tenant_id: String,
    job_id: String,
    status: String,
    error: Option<String>,
}

fn update(status: &str) -> Json<JobUpdate> {
    Json(JobUpdate {
        tenant_id: "tenant-1".into(),
        job_id: "job-uuid".into(),
        status: status.into(),
        error: None,
    })
}

/// How many subscribers the server counts on `channel`.
async fn numsub(client: &Client, channel: &str) -> i64 {
    let counts: BTreeMap<String, i64> = raw_query(client, &["PUBSUB", "NUMSUB", channel]).await;
    counts[channel]
}

/// The next message, which must come within 5 s.
async fn next<T>(sub: &mut Subscription<T>) -> redis_runtime::Result<T> {
    tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("a message in time")
        .expect("subscription open")
}

#[tokio::test]
async fn typed_publish_and_subscribe() {
    let (_server, client) = RedisServer::start_with_client().await;
    let updates = Channel::<Json<JobUpdate>>::new(&client, "job_updates");
    assert_eq!(
        updates.publish(&update("QUEUED")).await.expect("publish"),
        0,
        "nobody listens yet"
    );
    let mut sub = updates.subscribe().await.expect("subscribe");
    assert_eq!(sub.channel(), "job_updates");
    // subscribe() returned after the server confirmed: this is received.
    assert_eq!(
        updates.publish(&update("RUNNING")).await.expect("publish"),
        1
    );
    updates
        .publish(&update("COMPLETED"))
        .await
        .expect("publish");
    assert_eq!(next(&mut sub).await.expect("ok"), update("RUNNING"));
    // It is also a Stream.
    let next = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("in time")
        .expect("open")
        .expect("decodes");
    assert_eq!(next, update("COMPLETED"));

    // The wire format is plain JSON, with camelCase field names.
    let mut raw_sub = client
        .redis_client()
        .await
        .expect("redis client")
        .get_async_pubsub()
        .await
        .expect("pubsub");
    raw_sub.subscribe("job_updates").await.expect("subscribe");
    updates.publish(&update("FAILED")).await.expect("publish");
    let message = tokio::time::timeout(Duration::from_secs(5), raw_sub.on_message().next())
        .await
        .expect("in time")
        .expect("message");
    assert_eq!(
        message.get_payload_bytes(),
        br#"{"tenantId":"tenant-1","jobId":"job-uuid","status":"FAILED","error":null}"#
    );
}

#[tokio::test]
async fn a_bad_message_is_a_decode_error_and_the_subscription_goes_on() {
    let (_server, client) = RedisServer::start_with_client().await;
    let channel = Channel::<Json<JobUpdate>>::new(&client, "job_updates");
    let mut sub = channel.subscribe().await.expect("subscribe");
    let raw = Channel::<String>::new(&client, "job_updates");
    raw.publish(&"{not json".to_string())
        .await
        .expect("publish");
    channel.publish(&update("RUNNING")).await.expect("publish");
    let err = next(&mut sub).await.expect_err("bad");
    assert_eq!(err.code(), "DECODE");
    assert!(err.to_string().contains("job_updates"), "{err}");
    assert_eq!(next(&mut sub).await.expect("ok"), update("RUNNING"));
}

#[tokio::test]
async fn a_subscription_survives_a_server_restart() {
    let (mut server, client) = RedisServer::start_with_client().await;
    let channel = Channel::<String>::new(&client, "status");
    let mut sub = channel.subscribe().await.expect("subscribe");
    channel
        .publish(&"before".to_string())
        .await
        .expect("publish");
    assert_eq!(next(&mut sub).await.expect("ok"), "before");

    server.restart();
    // Wait until the subscription is back (it says so), then publish once.
    let limit = Duration::from_secs(15);
    eventually(limit, "the resubscription", async || {
        sub.resubscriptions() > 0
    })
    .await;
    let mut receivers = None;
    // The shared connection may need a moment of its own to come back.
    eventually(limit, "publish to recover", async || {
        match channel.publish(&"after".to_string()).await {
            Ok(n) => receivers = Some(n),
            Err(e) => assert!(e.is_transient(), "{e:?}"),
        }
        receivers.is_some()
    })
    .await;
    assert_eq!(
        receivers,
        Some(1),
        "the restarted server knows the subscriber"
    );
    assert_eq!(next(&mut sub).await.expect("ok"), "after");
    assert_eq!(sub.resubscriptions(), 1);
}

#[tokio::test]
async fn dropping_the_subscription_ends_it_on_the_server() {
    let (_server, client) = RedisServer::start_with_client().await;
    let channel = Channel::<String>::new(&client, "status");
    let sub = channel.subscribe().await.expect("subscribe");
    assert_eq!(numsub(&client, "status").await, 1);
    drop(sub);
    eventually(
        Duration::from_secs(5),
        "the subscription to end",
        async || numsub(&client, "status").await == 0,
    )
    .await;
    assert_eq!(channel.publish(&"x".to_string()).await.expect("publish"), 0);
}

#[tokio::test]
async fn subscribing_to_an_unreachable_server_fails_fast_with_a_typed_error() {
    let server = RedisServer::start_stopped();
    let client = server.client().await;
    let started = Instant::now();
    let err = Channel::<String>::new(&client, "status")
        .subscribe()
        .await
        .expect_err("nothing listens");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(err.is_transient(), "{err:?}");
    assert_eq!(
        err.context().map(|c| &*c.operation),
        Some("pubsub.subscribe")
    );
}

#[tokio::test]
async fn a_client_shutdown_ends_the_subscription() {
    let (_server, client) = RedisServer::start_with_client().await;
    let mut sub = Channel::<String>::new(&client, "status")
        .subscribe()
        .await
        .expect("subscribe");
    client.shutdown().await;
    let end = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("ends promptly");
    assert!(end.is_none());
    let err = Channel::<String>::new(&client, "status")
        .subscribe()
        .await
        .expect_err("shut down");
    assert_eq!(err.code(), "STORAGE_SHUTDOWN");
}

#[tokio::test]
async fn on_one_server_a_sharded_channel_is_the_classic_one() {
    let (_server, client) = RedisServer::start_with_client().await;
    let sharded = Channel::<String>::sharded(&client, "{t1}:status");
    let classic = Channel::<String>::new(&client, "{t1}:status");
    let mut from_sharded = sharded.subscribe().await.expect("subscribe");
    assert_eq!(
        numsub(&client, "{t1}:status").await,
        1,
        "a classic subscriber"
    );
    assert_eq!(classic.publish(&"a".into()).await.expect("publish"), 1);
    assert_eq!(next(&mut from_sharded).await.expect("decoded"), "a");
    assert_eq!(sharded.publish(&"b".into()).await.expect("publish"), 1);
    assert_eq!(next(&mut from_sharded).await.expect("decoded"), "b");
}

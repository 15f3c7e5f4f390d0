//! Typed pub/sub: round trips, bad messages, clean end on drop and on
//! shutdown, each against a real, private `redis-server` (classic
//! channels) and against a real Redis Cluster (shard channels); and, on
//! one server, surviving a restart.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use redis_runtime::on_both_topologies;
use redis_runtime::pubsub::Channel;
use redis_runtime::testing::{RedisServer, TestRedis, eventually, raw_query};
use redis_runtime::{Client, FieldValue, Json, Subscription};
use tokio::sync::mpsc;

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

/// The channel `name` of this test: on one server the classic channel
/// `name`; on the cluster the shard channel [`TestRedis::key`] makes of
/// it. A shard channel's subscribers are all on its slot's primary, so the
/// count `SPUBLISH` returns is every subscriber, as `PUBLISH` does on one
/// server (a classic `PUBLISH` on a cluster counts only the subscribers of
/// the node that took it).
fn channel<T: FieldValue + Send + 'static>(redis: &TestRedis, name: &str) -> Channel<T> {
    let name = redis.key(name);
    if redis.is_cluster() {
        Channel::sharded(redis.client(), name)
    } else {
        Channel::new(redis.client(), name)
    }
}

/// How many subscribers the server counts on `channel`: `PUBSUB NUMSUB` on
/// one server; on a cluster, where the channels of [`channel`] are shard
/// channels, `PUBSUB SHARDNUMSUB`, summed over the nodes.
async fn numsub(client: &Client, channel: &str) -> i64 {
    let command = if client.config().is_cluster() {
        "SHARDNUMSUB"
    } else {
        "NUMSUB"
    };
    let counts: BTreeMap<String, i64> = raw_query(client, &["PUBSUB", command, channel]).await;
    counts[channel]
}

/// The next message, which must come within 5 s.
async fn next<T>(sub: &mut Subscription<T>) -> redis_runtime::Result<T> {
    tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("a message in time")
        .expect("subscription open")
}

/// A subscriber outside the runtime, as another service would be, that
/// sees the payloads as they are on the wire: `SUBSCRIBE` on a redis-rs
/// pub/sub connection on one server, `SSUBSCRIBE` on a redis-rs RESP3
/// cluster connection on the cluster.
enum RawSubscriber {
    Classic(redis::aio::PubSub),
    Sharded {
        _connection: redis::cluster_async::ClusterConnection,
        pushes: mpsc::UnboundedReceiver<redis::PushInfo>,
    },
}

impl RawSubscriber {
    /// Subscribed to `channel` (a name [`channel`] gave) when it returns.
    async fn start(redis: &TestRedis, channel: &str) -> Self {
        let Some(cluster) = redis.cluster() else {
            let mut pubsub = redis
                .client()
                .redis_client()
                .await
                .expect("redis client")
                .get_async_pubsub()
                .await
                .expect("pubsub");
            pubsub.subscribe(channel).await.expect("subscribe");
            return Self::Classic(pubsub);
        };
        let nodes: Vec<String> = cluster
            .seed_ports()
            .into_iter()
            .map(|port| cluster.node_url(port))
            .collect();
        let (tx, pushes) = mpsc::unbounded_channel();
        let mut connection = redis::cluster::ClusterClientBuilder::new(nodes)
            .use_protocol(redis::ProtocolVersion::RESP3)
            .push_sender(tx)
            .build()
            .expect("cluster client")
            .get_async_connection()
            .await
            .expect("cluster connection");
        connection.ssubscribe(channel).await.expect("ssubscribe");
        Self::Sharded {
            _connection: connection,
            pushes,
        }
    }

    /// The payload of the next message, which must come within 5 s.
    async fn next_payload(&mut self) -> Vec<u8> {
        let payload = async {
            match self {
                Self::Classic(pubsub) => pubsub
                    .on_message()
                    .next()
                    .await
                    .expect("message")
                    .get_payload_bytes()
                    .to_vec(),
                Self::Sharded { pushes, .. } => loop {
                    let push = pushes.recv().await.expect("push");
                    if push.kind != redis::PushKind::SMessage {
                        continue;
                    }
                    match push.data.get(1) {
                        Some(redis::Value::BulkString(payload)) => break payload.clone(),
                        other => panic!("smessage without a payload: {other:?}"),
                    }
                },
            }
        };
        tokio::time::timeout(Duration::from_secs(5), payload)
            .await
            .expect("in time")
    }
}

async fn typed_publish_and_subscribe(redis: TestRedis) {
    let updates = channel::<Json<JobUpdate>>(&redis, "job_updates");
    assert_eq!(
        updates.publish(&update("QUEUED")).await.expect("publish"),
        0,
        "nobody listens yet"
    );
    let mut sub = updates.subscribe().await.expect("subscribe");
    assert_eq!(sub.channel(), redis.key("job_updates"));
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
    let mut raw_sub = RawSubscriber::start(&redis, &redis.key("job_updates")).await;
    updates.publish(&update("FAILED")).await.expect("publish");
    assert_eq!(
        raw_sub.next_payload().await,
        br#"{"tenantId":"tenant-1","jobId":"job-uuid","status":"FAILED","error":null}"#
    );
}

async fn a_bad_message_is_a_decode_error_and_the_subscription_goes_on(redis: TestRedis) {
    let channel_name = redis.key("job_updates");
    let updates = channel::<Json<JobUpdate>>(&redis, "job_updates");
    let mut sub = updates.subscribe().await.expect("subscribe");
    let raw = channel::<String>(&redis, "job_updates");
    raw.publish(&"{not json".to_string())
        .await
        .expect("publish");
    updates.publish(&update("RUNNING")).await.expect("publish");
    let err = next(&mut sub).await.expect_err("bad");
    assert_eq!(err.code(), "DECODE");
    assert!(err.to_string().contains(&channel_name), "{err}");
    assert_eq!(next(&mut sub).await.expect("ok"), update("RUNNING"));
}

async fn dropping_the_subscription_ends_it_on_the_server(redis: TestRedis) {
    let client = redis.client();
    let status = redis.key("status");
    let channel = channel::<String>(&redis, "status");
    let sub = channel.subscribe().await.expect("subscribe");
    assert_eq!(numsub(client, &status).await, 1);
    drop(sub);
    eventually(
        Duration::from_secs(5),
        "the subscription to end",
        async || numsub(client, &status).await == 0,
    )
    .await;
    assert_eq!(channel.publish(&"x".to_string()).await.expect("publish"), 0);
}

async fn a_client_shutdown_ends_the_subscription(redis: TestRedis) {
    let client = redis.client();
    let mut sub = channel::<String>(&redis, "status")
        .subscribe()
        .await
        .expect("subscribe");
    client.shutdown().await;
    let end = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("ends promptly");
    assert!(end.is_none());
    let err = channel::<String>(&redis, "status")
        .subscribe()
        .await
        .expect_err("shut down");
    assert_eq!(err.code(), "STORAGE_SHUTDOWN");
}

on_both_topologies!(
    typed_publish_and_subscribe,
    a_bad_message_is_a_decode_error_and_the_subscription_goes_on,
    dropping_the_subscription_ends_it_on_the_server,
    a_client_shutdown_ends_the_subscription,
);

// Standalone only: it restarts the server (`RedisServer::restart`).
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

// Standalone only: it needs a server that is not running (`RedisServer::start_stopped`).
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

// Standalone only: it checks what a sharded channel is on one server.
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

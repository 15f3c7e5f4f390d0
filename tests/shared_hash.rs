//! Hashes shared with other services: another application (a TypeScript
//! web app, a Go runner) may keep fields in an entity's hash that the Rust
//! type does not declare. `update` and `save` replace only the declared
//! fields, so those survive, while indexes, the TTL registry, TTLs and the
//! outbox behave exactly as for a hash only we write.

use std::collections::BTreeMap;
use std::time::Duration;

use redis_runtime::index;
use redis_runtime::testing::{RedisServer, raw_command, raw_query};
use redis_runtime::{Client, Page, RedisEntity, ScoreRange, Ttl};

/// Indexed three ways, with a TTL (so a TTL registry), a stream and an
/// optional field.
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[redis(key = "order:{id}", ttl = "1h", stream = "orders:stream")]
#[redis(sorted_index(key = "orders:customer:{customer_id}", score = "placed_at"))]
#[redis(index(key = "orders:status:{status}"))]
#[redis(unique(key = "orders:by_ref", field = "reference"))]
struct Order {
    id: String,
    customer_id: String,
    status: String,
    reference: String,
    placed_at: i64,
    note: Option<String>,
}

/// No TTL declared, no indexes.
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[redis(key = "profile:{id}")]
struct Profile {
    id: String,
    bio: Option<String>,
}

/// An absolute expiry taken from a field.
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[redis(key = "grant:{id}")]
struct Grant {
    id: String,
    #[redis(expires_at)]
    expires_at: i64,
    scope: Option<String>,
}

/// The fields only the other services know, with their values.
const FOREIGN: [(&str, &str); 2] = [("legacy_flag", "1"), ("tsOnlyField", r#"{"seen":true}"#)];

fn order() -> Order {
    Order {
        id: "o1".into(),
        customer_id: "c1".into(),
        status: "queued".into(),
        reference: "ref-1".into(),
        placed_at: 100,
        note: Some("fragile".into()),
    }
}

async fn raw_hash(client: &Client, key: &str) -> BTreeMap<String, String> {
    raw_query(client, &["HGETALL", key]).await
}

/// Another client writes the foreign fields into `key`'s hash.
async fn add_foreign_fields(client: &Client, key: &str) {
    let mut hset = vec!["HSET", key];
    for (field, value) in FOREIGN {
        hset.extend([field, value]);
    }
    raw_command(client, &hset).await;
}

/// Asserts the foreign fields are still in `key`'s hash, unchanged.
async fn assert_foreign_fields_kept(client: &Client, key: &str, after: &str) {
    let hash = raw_hash(client, key).await;
    for (field, value) in FOREIGN {
        assert_eq!(
            hash.get(field).map(String::as_str),
            Some(value),
            "{after} must leave {field} alone: {hash:?}"
        );
    }
}

/// The order's remaining lifetime; panics if it does not expire.
async fn order_ttl(client: &Client) -> Duration {
    match Order::ttl(client, "o1").await.expect("ttl") {
        Ttl::ExpiresIn(left) => left,
        other => panic!("the order must expire: {other:?}"),
    }
}

/// Asserts every index holds `o1` exactly under `order`'s values, the TTL
/// registry snapshot has them too, and `verify` finds no drift.
async fn assert_indexed_as(client: &Client, order: &Order) {
    let by_customer = Order::by_customer_id_ids_in_range(
        client,
        &order.customer_id,
        &ScoreRange::all(),
        Page::oldest_first(10),
    )
    .await
    .expect("sorted");
    assert_eq!(by_customer, ["o1"]);
    let score: f64 = raw_query(
        client,
        &[
            "ZSCORE",
            &format!("orders:customer:{}", order.customer_id),
            "o1",
        ],
    )
    .await;
    assert_eq!(score, order.placed_at as f64);
    let by_status = Order::by_status_ids(client, &order.status)
        .await
        .expect("set");
    assert_eq!(by_status, ["o1"]);
    let holder = Order::by_reference(client, &order.reference)
        .await
        .expect("unique");
    assert_eq!(holder.as_ref(), Some(order));
    let refs: BTreeMap<String, String> = raw_query(client, &["HGETALL", "orders:by_ref"]).await;
    assert_eq!(
        refs,
        BTreeMap::from([(order.reference.clone(), "o1".to_string())])
    );

    let snapshot: String = raw_query(client, &["HGET", "__ttl:order:id:fields", "o1"]).await;
    for (field, value) in [
        ("customer_id", &order.customer_id),
        ("status", &order.status),
        ("reference", &order.reference),
    ] {
        let entry = format!(r#""{field}":"{value}""#);
        assert!(snapshot.contains(&entry), "registry snapshot {snapshot}");
    }

    let report = index::verify::<Order>(client).await.expect("verify");
    assert!(report.drift.is_empty(), "drift: {:#?}", report.drift);
}

async fn stream_len(client: &Client) -> i64 {
    raw_query(client, &["XLEN", "orders:stream"]).await
}

#[tokio::test]
async fn update_and_save_keep_fields_the_type_does_not_declare() {
    let (_server, client) = RedisServer::start_with_client().await;
    let mut o = order();
    o.create(&client).await.expect("create");
    assert_eq!(stream_len(&client).await, 1);
    add_foreign_fields(&client, "order:o1").await;

    // update: TTL kept, a None field removed, indexed values moved.
    let hundred = Duration::from_secs(100);
    assert!(Order::expire(&client, "o1", hundred).await.expect("expire"));
    o.note = None;
    o.status = "shipped".into();
    o.placed_at = 200;
    o.update(&client).await.expect("update");
    assert_foreign_fields_kept(&client, "order:o1", "update").await;
    let hash = raw_hash(&client, "order:o1").await;
    assert!(!hash.contains_key("note"), "None field must be removed");
    let left = order_ttl(&client).await;
    assert!(
        left <= hundred && left > Duration::from_secs(90),
        "{left:?}"
    );
    assert_eq!(
        Order::get(&client, "o1").await.expect("get"),
        Some(o.clone())
    );
    let queued = Order::by_status_ids(&client, &"queued".to_string())
        .await
        .expect("set");
    assert!(queued.is_empty(), "old status entry left: {queued:?}");
    assert_indexed_as(&client, &o).await;

    // update_refreshing_ttl: the declared TTL restarts, the field comes back.
    o.note = Some("handle with care".into());
    o.reference = "ref-2".into();
    o.update_refreshing_ttl(&client).await.expect("refresh");
    assert_foreign_fields_kept(&client, "order:o1", "update_refreshing_ttl").await;
    let left = order_ttl(&client).await;
    assert!(left > Duration::from_secs(3500), "{left:?}");
    assert_eq!(
        Order::get(&client, "o1").await.expect("get"),
        Some(o.clone())
    );
    assert_eq!(
        Order::by_reference(&client, &"ref-1".to_string())
            .await
            .expect("unique"),
        None
    );
    assert_indexed_as(&client, &o).await;

    // save over an existing entity: TTL restarted, no stream entry.
    assert!(Order::expire(&client, "o1", hundred).await.expect("expire"));
    o.note = None;
    o.customer_id = "c2".into();
    let outcome = o.save(&client).await.expect("save");
    assert!(outcome.existed);
    assert_eq!(outcome.stream_id, None);
    assert_eq!(
        stream_len(&client).await,
        1,
        "only a new entity is enqueued"
    );
    assert_foreign_fields_kept(&client, "order:o1", "save").await;
    let hash = raw_hash(&client, "order:o1").await;
    assert!(!hash.contains_key("note"), "None field must be removed");
    let left = order_ttl(&client).await;
    assert!(left > Duration::from_secs(3500), "{left:?}");
    assert_eq!(
        Order::get(&client, "o1").await.expect("get"),
        Some(o.clone())
    );
    let c1: i64 = raw_query(&client, &["EXISTS", "orders:customer:c1"]).await;
    assert_eq!(c1, 0, "old sorted entry left");
    assert_indexed_as(&client, &o).await;

    // A delete removes the whole hash, foreign fields included.
    assert!(Order::delete(&client, "o1").await.expect("delete"));
    let left: i64 = raw_query(&client, &["EXISTS", "order:o1"]).await;
    assert_eq!(left, 0, "the entity is gone, with every field");

    // save of a new entity still enqueues its stream entry.
    let outcome = o.save(&client).await.expect("save new");
    assert!(!outcome.existed);
    assert!(outcome.stream_id.is_some());
    assert_eq!(stream_len(&client).await, 2);
}

#[tokio::test]
async fn save_without_a_ttl_still_makes_the_entity_persistent() {
    let (_server, client) = RedisServer::start_with_client().await;
    let mut p = Profile {
        id: "p1".into(),
        bio: Some("hi".into()),
    };
    p.create(&client).await.expect("create");
    add_foreign_fields(&client, "profile:p1").await;
    // Another service gave the hash a TTL.
    raw_command(&client, &["PEXPIRE", "profile:p1", "100000"]).await;

    // update keeps it; save restarts the TTL, which for this type is none.
    p.bio = None;
    p.update(&client).await.expect("update");
    let ttl = Profile::ttl(&client, "p1").await.expect("ttl");
    assert!(matches!(ttl, Ttl::ExpiresIn(_)), "{ttl:?}");
    p.save(&client).await.expect("save");
    let ttl = Profile::ttl(&client, "p1").await.expect("ttl");
    assert_eq!(ttl, Ttl::Persistent);
    assert_foreign_fields_kept(&client, "profile:p1", "save").await;
    assert_eq!(Profile::get(&client, "p1").await.expect("get"), Some(p));
}

#[tokio::test]
async fn an_expiry_in_the_past_deletes_the_whole_hash() {
    let (_server, client) = RedisServer::start_with_client().await;
    let now_ms = redis_runtime::testing::now_ms();
    let mut g = Grant {
        id: "g1".into(),
        expires_at: now_ms + 600_000,
        scope: Some("read".into()),
    };
    g.create(&client).await.expect("create");
    add_foreign_fields(&client, "grant:g1").await;
    g.expires_at = now_ms - 1_000;
    g.update(&client).await.expect("update into the past");
    let left: i64 = raw_query(&client, &["EXISTS", "grant:g1"]).await;
    assert_eq!(left, 0, "the write is a delete of the whole hash");
}

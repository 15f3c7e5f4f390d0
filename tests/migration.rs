//! Data written under names that older versions used is moved, not lost:
//! the TTL registry's pre-0.2 name (`visit:{id}:__ttl`).

use redis_runtime::testing::{RedisServer, raw_query};
use redis_runtime::{Record, RedisEntity, migrate};

#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[redis(key = "visit:{id}", ttl = "1h")]
#[redis(index(key = "visits:page:{page}"))]
struct Visit {
    id: String,
    page: String,
}

const LEGACY: &str = "visit:{id}:__ttl";
const LEGACY_FIELDS: &str = "visit:{id}:__ttl:fields";
const CURRENT: &str = "__ttl:visit:id";
const CURRENT_FIELDS: &str = "__ttl:visit:id:fields";

#[tokio::test]
async fn a_legacy_registry_is_merged_into_the_current_one_and_removed() {
    let (_server, client) = RedisServer::start_with_client().await;
    assert_eq!(Visit::descriptor().ttl_registry, Some(CURRENT));

    // v1 written by this version: its entry is under the current name.
    let v1 = Visit {
        id: "v1".into(),
        page: "home".into(),
    };
    v1.create(&client).await.expect("create");
    let current_score: f64 = raw_query(&client, &["ZSCORE", CURRENT, "v1"]).await;

    // Entries an older version wrote: v2 only there, v1 with a stale score.
    let stale = "1000";
    let legacy_v2_score = "99999999999999";
    let _: i64 = raw_query(
        &client,
        &["ZADD", LEGACY, legacy_v2_score, "v2", stale, "v1"],
    )
    .await;
    let _: i64 = raw_query(
        &client,
        &[
            "HSET",
            LEGACY_FIELDS,
            "v2",
            r#"{"page":"about"}"#,
            "v1",
            "{}",
        ],
    )
    .await;

    let moved = migrate::move_legacy_ttl_registry::<Visit>(&client)
        .await
        .expect("move");
    assert_eq!(moved, 2);

    let legacy_left: i64 = raw_query(&client, &["EXISTS", LEGACY, LEGACY_FIELDS]).await;
    assert_eq!(legacy_left, 0, "the old keys are gone");
    let v2_score: String = raw_query(&client, &["ZSCORE", CURRENT, "v2"]).await;
    assert_eq!(v2_score, legacy_v2_score, "v2 moved with its expiry");
    let v1_score: f64 = raw_query(&client, &["ZSCORE", CURRENT, "v1"]).await;
    assert_eq!(v1_score, current_score, "the newer entry wins");
    let v2_fields: String = raw_query(&client, &["HGET", CURRENT_FIELDS, "v2"]).await;
    assert_eq!(v2_fields, r#"{"page":"about"}"#);
    let v1_fields: String = raw_query(&client, &["HGET", CURRENT_FIELDS, "v1"]).await;
    assert_eq!(v1_fields, r#"{"page":"home"}"#, "the newer snapshot wins");

    let again = migrate::move_legacy_ttl_registry::<Visit>(&client)
        .await
        .expect("second move");
    assert_eq!(again, 0, "nothing left to move");
}

#[tokio::test]
async fn rebuild_moves_a_legacy_registry_first() {
    let (_server, client) = RedisServer::start_with_client().await;
    let v3 = Visit {
        id: "v3".into(),
        page: "docs".into(),
    };
    v3.create(&client).await.expect("create");
    // As an older version left it: v3's entry under the old name only.
    let score: String = raw_query(&client, &["ZSCORE", CURRENT, "v3"]).await;
    let _: String = raw_query(&client, &["RENAME", CURRENT, LEGACY]).await;
    let _: String = raw_query(&client, &["RENAME", CURRENT_FIELDS, LEGACY_FIELDS]).await;

    let report = redis_runtime::index::rebuild::<Visit>(&client)
        .await
        .expect("rebuild");
    assert_eq!(report.registry_entries_moved, 1);
    assert!(report.remaining.is_empty(), "{:?}", report.remaining);
    let moved: String = raw_query(&client, &["ZSCORE", CURRENT, "v3"]).await;
    assert_eq!(moved, score);
    let legacy_left: i64 = raw_query(&client, &["EXISTS", LEGACY, LEGACY_FIELDS]).await;
    assert_eq!(legacy_left, 0);
}

//! Keys shared with other services, against a real `redis-server`: hashes
//! written the way a TypeScript app (ioredis' `hset(key, obj)`) or a Go
//! runner writes them decode through the generated `get` and index pages,
//! and our own writes stay canonical.

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use redis_runtime::testing::{RedisServer, raw_query};
use redis_runtime::{Client, Page, RedisEntity, RedisValue};

#[derive(RedisValue, Debug, Clone, Copy, PartialEq, Eq)]
enum RunStatus {
    Queued,
    Running,
    /// The Go runner says `done`, an old dashboard `success`.
    #[redis(alias = "done", alias = "success")]
    Completed,
    Failed,
}

#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[redis(key = "run:{id}", rename_all = "camelCase")]
#[redis(sorted_index(key = "runs:team:{team}", score = "created_at"))]
#[redis(unique(key = "runs:by_slug", field = "slug"))]
struct Run {
    id: String,
    team: String,
    slug: String,
    status: RunStatus,
    created_at: i64,
    /// Renamed twice; older writers still use the old names.
    #[redis(alias = "exit_code", alias = "code")]
    exit_status: Option<i64>,
    retried: bool,
    finished_at: Option<i64>,
    cancelled: Option<bool>,
    previous_status: Option<RunStatus>,
    started: Option<std::time::SystemTime>,
    #[redis(json)]
    labels: Option<Vec<String>>,
    /// `""` is a real note.
    note: Option<String>,
    /// ioredis writes a null email as `""`: read it as `None`.
    #[redis(empty_is_none)]
    owner_email: Option<String>,
}

fn run(id: &str, created_at: i64) -> Run {
    Run {
        id: id.into(),
        team: "blue".into(),
        slug: format!("slug-{id}"),
        status: RunStatus::Running,
        created_at,
        exit_status: Some(0),
        retried: false,
        finished_at: Some(created_at + 5),
        cancelled: Some(false),
        previous_status: Some(RunStatus::Queued),
        started: Some(UNIX_EPOCH + Duration::from_millis(1_700_000_000_000)),
        labels: Some(vec!["nightly".into()]),
        note: Some("first".into()),
        owner_email: Some("ada@example.com".into()),
    }
}

/// What ioredis' `redis.hset("run:<id>", obj)` stores for a run whose
/// nullable fields are `null`, with the enum and boolean in its own spelling
/// and the exit status under the field's old name.
async fn write_like_ioredis(client: &Client, id: &str) {
    let key = format!("run:{id}");
    let _: i64 = raw_query(client, &["HDEL", &key, "exitStatus"]).await;
    let _: i64 = raw_query(
        client,
        &[
            "HSET",
            &key,
            "status",
            "Completed",
            "retried",
            "TRUE",
            "exit_code",
            "3",
            "finishedAt",
            "",
            "cancelled",
            "",
            "previousStatus",
            "",
            "started",
            "",
            "labels",
            "",
            "note",
            "",
            "ownerEmail",
            "",
        ],
    )
    .await;
}

async fn stored(client: &Client, key: &str) -> BTreeMap<String, String> {
    raw_query(client, &["HGETALL", key]).await
}

#[tokio::test]
async fn a_hash_written_by_ioredis_reads_through_get() {
    let (_server, client) = RedisServer::start_with_client().await;
    run("r1", 1_000).create(&client).await.expect("create");
    write_like_ioredis(&client, "r1").await;

    let got = Run::get(&client, "r1")
        .await
        .expect("decodes")
        .expect("exists");
    assert_eq!(
        got.status,
        RunStatus::Completed,
        "\"Completed\" ignores case"
    );
    assert!(got.retried, "\"TRUE\" is true");
    assert_eq!(got.exit_status, Some(3), "read from the old name");
    assert_eq!(got.finished_at, None, "\"\" is a null number");
    assert_eq!(got.cancelled, None, "\"\" is a null bool");
    assert_eq!(got.previous_status, None, "\"\" is a null enum");
    assert_eq!(got.started, None, "\"\" is a null timestamp");
    assert_eq!(got.labels, None, "\"\" is null JSON");
    assert_eq!(got.note, Some(String::new()), "\"\" is a real String");
    assert_eq!(got.owner_email, None, "empty_is_none");
}

#[tokio::test]
async fn one_interop_hash_does_not_break_an_index_page() {
    let (_server, client) = RedisServer::start_with_client().await;
    for (i, id) in ["r1", "r2", "r3"].into_iter().enumerate() {
        let created_at = 1_000 + i64::try_from(i).expect("small");
        run(id, created_at).create(&client).await.expect("create");
    }
    write_like_ioredis(&client, "r2").await;

    let page = Run::by_team(&client, "blue", Page::oldest_first(10))
        .await
        .expect("page")
        .strict()
        .expect("every entity decodes");
    let ids: Vec<&str> = page.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["r1", "r2", "r3"]);
    assert_eq!(page[1].status, RunStatus::Completed);
    assert_eq!(page[1].finished_at, None);
    assert_eq!(page[0], run("r1", 1_000), "canonical hashes are unchanged");
}

#[tokio::test]
async fn a_go_runner_hash_reads_and_unique_lookups_take_str() {
    let (_server, client) = RedisServer::start_with_client().await;
    // A Go runner: strconv.FormatBool is "true"/"false", some write "1"/"0";
    // it says "done" and still uses the oldest field name.
    let _: i64 = raw_query(
        &client,
        &[
            "HSET",
            "run:g1",
            "id",
            "g1",
            "team",
            "red",
            "slug",
            "slug-g1",
            "status",
            "DONE",
            "createdAt",
            "2000",
            "code",
            "-1",
            "retried",
            "1",
            "cancelled",
            "off",
        ],
    )
    .await;
    let got = Run::get(&client, "g1")
        .await
        .expect("decodes")
        .expect("exists");
    assert_eq!(got.status, RunStatus::Completed);
    assert_eq!(got.exit_status, Some(-1));
    assert!(got.retried);
    assert_eq!(got.cancelled, Some(false));
    assert_eq!(got.owner_email, None);

    // A String unique field is looked up by `&str`.
    run("r1", 1_000).create(&client).await.expect("create");
    let found = Run::by_slug(&client, "slug-r1").await.expect("lookup");
    assert_eq!(found.map(|r| r.id), Some("r1".to_string()));
    let slug = String::from("slug-r1");
    assert!(
        Run::by_slug(&client, &slug)
            .await
            .expect("lookup")
            .is_some()
    );

    // Garbage is still an error naming the key and the field.
    let _: i64 = raw_query(&client, &["HSET", "run:g1", "retried", "maybe"]).await;
    let err = Run::get(&client, "g1").await.expect_err("not a boolean");
    assert_eq!(err.code(), "DECODE");
    let text = err.to_string();
    assert!(
        text.contains("run:g1") && text.contains("retried"),
        "{text}"
    );
}

#[tokio::test]
async fn writes_stay_canonical() {
    let (_server, client) = RedisServer::start_with_client().await;
    let original = run("r1", 1_000);
    original.create(&client).await.expect("create");
    let fields = stored(&client, "run:r1").await;
    let expected: BTreeMap<String, String> = [
        ("id", "r1"),
        ("team", "blue"),
        ("slug", "slug-r1"),
        ("status", "running"),
        ("createdAt", "1000"),
        ("exitStatus", "0"),
        ("retried", "false"),
        ("finishedAt", "1005"),
        ("cancelled", "false"),
        ("previousStatus", "queued"),
        ("started", "1700000000000"),
        ("labels", r#"["nightly"]"#),
        ("note", "first"),
        ("ownerEmail", "ada@example.com"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(fields, expected);
    let back = Run::get(&client, "r1").await.expect("get").expect("exists");
    assert_eq!(back, original, "round trip");

    // Read what ioredis wrote, write it back: canonical spellings and names,
    // and the `""` nulls are gone (a None is no field).
    write_like_ioredis(&client, "r1").await;
    let read = Run::get(&client, "r1").await.expect("get").expect("exists");
    read.update(&client).await.expect("update");
    let fields = stored(&client, "run:r1").await;
    assert_eq!(fields.get("status").map(String::as_str), Some("completed"));
    assert_eq!(fields.get("retried").map(String::as_str), Some("true"));
    assert_eq!(fields.get("exitStatus").map(String::as_str), Some("3"));
    assert_eq!(fields.get("note").map(String::as_str), Some(""));
    for gone in [
        "finishedAt",
        "cancelled",
        "previousStatus",
        "started",
        "labels",
        "ownerEmail",
    ] {
        assert!(!fields.contains_key(gone), "{gone} removed: {fields:?}");
    }
    // The old name is another service's field now: kept, and no longer read
    // since the canonical one is present.
    assert_eq!(fields.get("exit_code").map(String::as_str), Some("3"));
    let again = Run::get(&client, "r1").await.expect("get").expect("exists");
    assert_eq!(again, read);
}

//! Per-entity append logs (a job's `job:{id}:output`, kept 24 h after the
//! last line), each test against a real, private `redis-server` and against
//! a real Redis Cluster.

use std::time::Duration;

use redis_runtime::applog::AppendLog;
use redis_runtime::on_both_topologies;
use redis_runtime::testing::{TestRedis, eventually, raw_command};
use redis_runtime::{Json, Ttl};

const DAY: Duration = Duration::from_secs(24 * 3600);

fn lines(texts: &[&str]) -> Vec<String> {
    texts.iter().map(|s| s.to_string()).collect()
}

/// The key pattern `<prefix>:<rest>` of this test: `prefix` goes through
/// [`TestRedis::key`] (`job` on one server, `{test}:job` on the cluster),
/// its hash tag written `{{…}}` so the pattern reads it as literal braces,
/// not as a placeholder.
fn pattern(redis: &TestRedis, prefix: &str, rest: &str) -> String {
    let prefix = redis.key(prefix).replace('{', "{{").replace('}', "}}");
    format!("{prefix}:{rest}")
}

#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq)]
struct Line {
    at: i64,
    stream: String,
    text: String,
}

async fn append_read_range_and_count(redis: TestRedis) {
    let client = redis.client();
    let output =
        AppendLog::<String>::new(client, &pattern(&redis, "job", "{id}:output"), Some(DAY))
            .expect("log");
    assert_eq!(output.key("42").expect("key"), redis.key("job:42:output"));
    assert_eq!(output.len("42").await.expect("len"), 0);
    assert!(output.all("42").await.expect("empty").is_empty());

    assert_eq!(
        output
            .append("42", &"cloning".to_string())
            .await
            .expect("append"),
        1
    );
    assert_eq!(
        output
            .append_many("42", &lines(&["building", "testing", "done"]))
            .await
            .expect("append many"),
        4
    );
    assert_eq!(output.len("42").await.expect("len"), 4);
    assert_eq!(
        output.all("42").await.expect("all"),
        lines(&["cloning", "building", "testing", "done"])
    );
    assert_eq!(
        output.range("42", 1, 2).await.expect("range"),
        lines(&["building", "testing"])
    );
    assert_eq!(
        output.range("42", -2, -1).await.expect("tail"),
        lines(&["testing", "done"])
    );
    // Logs are per entity.
    assert_eq!(output.len(&7u64).await.expect("other"), 0);
    assert!(output.delete("42").await.expect("delete"));
    assert!(!output.delete("42").await.expect("gone"));
}

async fn every_append_refreshes_the_ttl_in_the_same_step(redis: TestRedis) {
    let client = redis.client();
    let output =
        AppendLog::<String>::new(client, &pattern(&redis, "job", "{id}:output"), Some(DAY))
            .expect("log");
    assert_eq!(output.ttl("1").await.expect("ttl"), Ttl::Missing);
    output.append("1", "a").await.expect("append");
    // Shorten it by hand, as if most of the day had passed...
    raw_command(client, &["PEXPIRE", &redis.key("job:1:output"), "60000"]).await;
    let before = client.round_trips();
    output.append("1", "b").await.expect("append");
    assert_eq!(
        client.round_trips() - before,
        1,
        "push and expire in one round trip"
    );
    // ...and the next append restores the full day.
    match output.ttl("1").await.expect("ttl") {
        Ttl::ExpiresIn(left) => assert!(left > DAY - Duration::from_secs(60), "{left:?}"),
        other => panic!("{other:?}"),
    }

    let forever =
        AppendLog::<String>::new(client, &pattern(&redis, "audit", "{id}"), None).expect("log");
    forever.append("1", "x").await.expect("append");
    assert_eq!(forever.ttl("1").await.expect("ttl"), Ttl::Persistent);
}

async fn a_log_expires_when_it_goes_quiet(redis: TestRedis) {
    let client = redis.client();
    let output = AppendLog::<String>::new(
        client,
        &pattern(&redis, "job", "{id}:output"),
        Some(Duration::from_millis(100)),
    )
    .expect("log");
    output.append("1", "x").await.expect("append");
    eventually(Duration::from_secs(5), "the log to expire", async || {
        output.len("1").await.expect("len") == 0
    })
    .await;
}

async fn max_len_keeps_the_newest_lines(redis: TestRedis) {
    let client = redis.client();
    let output = AppendLog::<u32>::new(client, &pattern(&redis, "job", "{id}:output"), Some(DAY))
        .expect("log")
        .with_max_len(3);
    for n in 0..5u32 {
        output.append("1", &n).await.expect("append");
    }
    assert_eq!(output.all("1").await.expect("all"), [2, 3, 4]);
}

async fn records_and_bad_data(redis: TestRedis) {
    let client = redis.client();
    let output =
        AppendLog::<Json<Line>>::new(client, &pattern(&redis, "job", "{id}:output"), Some(DAY))
            .expect("log");
    let line = Json(Line {
        at: 1,
        stream: "stdout".into(),
        text: "hello".into(),
    });
    output.append("9", &line).await.expect("append");
    assert_eq!(output.all("9").await.expect("all"), [line]);

    raw_command(client, &["RPUSH", &redis.key("job:9:output"), "not json"]).await;
    let err = output.all("9").await.expect_err("bad line");
    assert_eq!(err.code(), "DECODE");
    let text = err.to_string();
    assert!(
        text.contains(&redis.key("job:9:output")) && text.contains("[1]"),
        "{text}"
    );
}

async fn ids_cannot_escape_the_pattern_and_patterns_are_checked(redis: TestRedis) {
    let client = redis.client();
    let output =
        AppendLog::<String>::new(client, &pattern(&redis, "job", "{id}:output"), Some(DAY))
            .expect("log");
    for hostile in ["", "1:admin", "*", "a b", "x{y}"] {
        let err = output.append(hostile, "x").await.expect_err("rejected");
        assert_eq!(err.code(), "INVALID_KEY", "{hostile:?}");
    }
    // Refused before any key exists: the patterns name no key of the test.
    for bad in ["job:{id", "job:output", "tenant:{t}:job:{id}"] {
        let err = AppendLog::<String>::new(client, bad, Some(DAY)).expect_err("bad pattern");
        assert_eq!(err.code(), "STORAGE_CONFIG", "{bad}");
    }
    let err =
        AppendLog::<String>::new(client, "job:{id}", Some(Duration::ZERO)).expect_err("zero ttl");
    assert_eq!(err.code(), "STORAGE_CONFIG");
}

async fn string_logs_take_str_lines_and_str_ids(redis: TestRedis) {
    let client = redis.client();
    let output =
        AppendLog::<String>::new(client, &pattern(&redis, "job", "{id}:output"), Some(DAY))
            .expect("log");
    let id: &str = "7";
    let owned_id = String::from("7");
    let borrowed: &str = "from a &str";
    assert_eq!(output.append(id, borrowed).await.expect("str line"), 1);
    assert_eq!(output.append(id, &"a &&str").await.expect("&&str"), 2);
    let formatted = format!("step {}", 3);
    assert_eq!(
        output.append(&owned_id, &formatted).await.expect("String"),
        3
    );
    assert_eq!(
        output
            .append_many(id, &["many", "lines"])
            .await
            .expect("&str slice"),
        5
    );
    let no_lines: [&str; 0] = [];
    assert_eq!(output.append_many(id, &no_lines).await.expect("none"), 5);
    assert_eq!(
        output.all(&owned_id).await.expect("all"),
        lines(&["from a &str", "a &&str", "step 3", "many", "lines"])
    );
    let err = output.append("a b", "x").await.expect_err("bad id");
    assert_eq!(err.code(), "INVALID_KEY");
}

on_both_topologies!(
    append_read_range_and_count,
    every_append_refreshes_the_ttl_in_the_same_step,
    a_log_expires_when_it_goes_quiet,
    max_len_keeps_the_newest_lines,
    records_and_bad_data,
    ids_cannot_escape_the_pattern_and_patterns_are_checked,
    string_logs_take_str_lines_and_str_ids,
);

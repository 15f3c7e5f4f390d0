//! CRUD, TTL and codec behaviour of `#[derive(RedisEntity)]`, each test
//! against a real, private `redis-server` and against a real Redis Cluster.
//!
//! The cluster is shared by the cluster tests of this binary, so each test
//! names the entities of a type other tests write too with [`id`]: the ids
//! it always used on one server, prefixed by the test's name on the
//! cluster. Types only one test writes (`Doc`, `Invite`, …) keep their ids.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use redis::AsyncCommands;
use redis_runtime::on_both_topologies;
use redis_runtime::testing::{TestRedis, eventually, raw_command, raw_query};
use redis_runtime::{Client, Context, RedisEntity, RedisValue, Ttl};

#[derive(RedisValue, Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    Free,
    ProTeam,
}

#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[redis(key = "user:{id}")]
struct User {
    id: String,
    email: String,
    display_name: String,
    plan: Plan,
    login_count: u32,
    created_at: i64,
    last_login_at: Option<SystemTime>,
    avatar: Option<String>,
    #[redis(json)]
    settings: BTreeMap<String, String>,
    #[redis(skip)]
    cached_score: u8,
    #[redis(default)]
    verified: bool,
}

#[derive(RedisEntity, Debug, Clone, PartialEq)]
/// Key and TTL given in separate attributes.
#[redis(key = "session:{id}")]
#[redis(ttl = "7d")]
struct Session {
    id: String,
    user_id: String,
    created_at: i64,
}

#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[redis(key = "tenant:{tenant_id}:doc:{id}", rename_all = "camelCase")]
struct Doc {
    tenant_id: String,
    id: u64,
    title_text: String,
}

#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[redis(key = "token:{id}")]
struct Token {
    id: String,
    #[redis(expires_at)]
    expires_at: i64,
}

/// An invitation: announced on a stream, indexed by inviter, valid until
/// `expires_at`. Pinned to the slot of the tag `{invites}` (its hashes, the
/// stream, the index and the TTL registry), so that a write, one script,
/// runs on a cluster too.
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[redis(cluster, key = "invite:{{invites}}:{id}")]
#[redis(stream = "invites:{{invites}}:stream")]
#[redis(index(key = "invites:{{invites}}:by:{inviter}"))]
struct Invite {
    id: String,
    inviter: String,
    #[redis(expires_at)]
    expires_at: i64,
}

/// The id a test gives the entity it calls `name`: `name` itself on one
/// server, and `<test>-<name>` on the cluster, which the tests of this
/// binary share (an id cannot hold the `{…}:` of [`TestRedis::key`]).
fn id(redis: &TestRedis, name: &str) -> String {
    redis.key(name).replace(['{', '}'], "").replace(':', "-")
}

/// A session of `u1`, created now.
async fn create_session(client: &Client, id: &str) -> Session {
    let session = Session {
        id: id.into(),
        user_id: "u1".into(),
        created_at: 1,
    };
    session.create(client).await.expect("create");
    session
}

fn user(id: &str) -> User {
    User {
        id: id.into(),
        email: format!("{id}@example.com"),
        display_name: "Ada Lovelace".into(),
        plan: Plan::ProTeam,
        login_count: 3,
        created_at: 1_700_000_000_000,
        last_login_at: Some(SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_100_000)),
        avatar: Some(String::new()),
        settings: BTreeMap::from([("theme".into(), "dark".into())]),
        cached_score: 0,
        verified: true,
    }
}

async fn raw_hash(client: &Client, key: &str) -> BTreeMap<String, String> {
    raw_query(client, &["HGETALL", key]).await
}

/// The time left of a `ttl()` answer, or a panic saying `why` when it is
/// not an expiry.
fn time_left(ttl: Ttl, why: &str) -> Duration {
    match ttl {
        Ttl::ExpiresIn(left) => left,
        other => panic!("{why}: {other:?}"),
    }
}

/// Asserts `low < left <= high`.
fn assert_left(left: Duration, low: Duration, high: Duration) {
    assert!(left <= high && left > low, "{left:?}");
}

async fn create_get_round_trips_every_field_and_stores_the_documented_layout(redis: TestRedis) {
    let client = redis.client();
    let u1 = id(&redis, "u1");
    let u = user(&u1);
    let outcome = u.create(client).await.expect("create");
    assert!(!outcome.existed);
    assert_eq!(outcome.stream_id, None);

    let loaded = User::get(client, &u1).await.expect("get").expect("present");
    assert_eq!(loaded, u);

    let hash = raw_hash(client, &format!("user:{u1}")).await;
    let email = format!("{u1}@example.com");
    let expected: BTreeMap<String, String> = [
        ("id", u1.as_str()),
        ("email", email.as_str()),
        ("display_name", "Ada Lovelace"),
        ("plan", "pro_team"),
        ("login_count", "3"),
        ("created_at", "1700000000000"),
        ("last_login_at", "1700000100000"),
        ("avatar", ""),
        ("settings", r#"{"theme":"dark"}"#),
        ("verified", "true"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(
        hash, expected,
        "skip fields are not stored; None vs Some(\"\") differ"
    );
}

async fn create_on_an_existing_key_fails_and_writes_nothing(redis: TestRedis) {
    let client = redis.client();
    let u1 = id(&redis, "u1");
    let original = user(&u1);
    original.create(client).await.expect("create");
    let mut other = user(&u1);
    other.display_name = "Impostor".into();
    other.avatar = None;
    let err = other.create(client).await.expect_err("duplicate");
    assert_eq!(err.code(), "ALREADY_EXISTS");
    assert_eq!(User::get(client, &u1).await.expect("get"), Some(original));
}

async fn get_of_a_missing_entity_is_none(redis: TestRedis) {
    let client = redis.client();
    let nobody = id(&redis, "nobody");
    assert_eq!(User::get(client, &nobody).await.expect("get"), None);
    assert!(!User::exists(client, &nobody).await.expect("exists"));
}

async fn update_replaces_declared_fields_and_removes_none_ones(redis: TestRedis) {
    let client = redis.client();
    let u1 = id(&redis, "u1");
    let key = format!("user:{u1}");
    let mut u = user(&u1);
    u.create(client).await.expect("create");
    // A field the struct does not declare (e.g. kept by another service).
    raw_command(client, &["HSET", &key, "legacy_field", "x"]).await;

    u.avatar = None;
    u.display_name = "Ada".into();
    u.update(client).await.expect("update");

    let hash = raw_hash(client, &key).await;
    assert!(!hash.contains_key("avatar"), "None field must be removed");
    assert_eq!(
        hash.get("legacy_field").map(String::as_str),
        Some("x"),
        "a field the type does not declare is left alone"
    );
    assert_eq!(User::get(client, &u1).await.expect("get"), Some(u));
}

async fn update_of_a_missing_entity_is_not_found(redis: TestRedis) {
    let client = redis.client();
    let ghost = id(&redis, "ghost");
    let err = user(&ghost).update(client).await.expect_err("missing");
    assert_eq!(err.code(), "NOT_FOUND");
    assert!(!User::exists(client, &ghost).await.expect("exists"));
}

async fn save_upserts(redis: TestRedis) {
    let client = redis.client();
    let u1 = id(&redis, "u1");
    let mut u = user(&u1);
    assert!(!u.save(client).await.expect("save new").existed);
    u.login_count = 4;
    assert!(u.save(client).await.expect("save again").existed);
    assert_eq!(User::get(client, &u1).await.expect("get"), Some(u));
}

async fn patch_sets_and_clears_chosen_fields_only(redis: TestRedis) {
    let client = redis.client();
    let (u1, nobody) = (id(&redis, "u1"), id(&redis, "nobody"));
    let u = user(&u1);
    u.create(client).await.expect("create");
    User::patch(
        client,
        &u1,
        &UserPatch {
            login_count: Some(10),
            avatar: Some(None),
            last_login_at: Some(Some(SystemTime::UNIX_EPOCH)),
            ..Default::default()
        },
    )
    .await
    .expect("patch");
    let loaded = User::get(client, &u1).await.expect("get").expect("present");
    assert_eq!(loaded.login_count, 10);
    assert_eq!(loaded.avatar, None);
    assert_eq!(loaded.last_login_at, Some(SystemTime::UNIX_EPOCH));
    assert_eq!(loaded.display_name, u.display_name, "untouched field kept");

    let err = User::patch(
        client,
        &nobody,
        &UserPatch {
            login_count: Some(1),
            ..Default::default()
        },
    )
    .await
    .expect_err("missing");
    assert_eq!(err.code(), "NOT_FOUND");
    assert!(
        !User::exists(client, &nobody).await.expect("exists"),
        "patch must not create"
    );
}

async fn delete_reports_whether_it_existed(redis: TestRedis) {
    let client = redis.client();
    let u1 = id(&redis, "u1");
    user(&u1).create(client).await.expect("create");
    assert!(User::delete(client, &u1).await.expect("delete"));
    assert!(!User::delete(client, &u1).await.expect("delete again"));
    assert_eq!(User::get(client, &u1).await.expect("get"), None);
}

async fn get_many_keeps_order_and_reports_missing(redis: TestRedis) {
    let client = redis.client();
    let [a, b, c, missing] = ["a", "b", "c", "missing"].map(|name| id(&redis, name));
    for id in [&a, &b, &c] {
        user(id).create(client).await.expect("create");
    }
    let found = User::get_many(client, [&c, &missing, &a])
        .await
        .expect("get_many");
    let ids: Vec<Option<String>> = found.into_iter().map(|u| u.map(|u| u.id)).collect();
    assert_eq!(ids, vec![Some(c), None, Some(a)]);
    assert!(
        User::get_many(client, Vec::<String>::new())
            .await
            .expect("empty")
            .is_empty()
    );
}

async fn multi_field_keys_and_renamed_fields(redis: TestRedis) {
    let client = redis.client();
    let doc = Doc {
        tenant_id: "acme".into(),
        id: 7,
        title_text: "Plan".into(),
    };
    doc.create(client).await.expect("create");
    assert_eq!(
        Doc::key_for("acme", &7u64).expect("key"),
        "tenant:acme:doc:7"
    );
    let hash = raw_hash(client, "tenant:acme:doc:7").await;
    assert_eq!(hash.get("titleText").map(String::as_str), Some("Plan"));
    assert_eq!(hash.get("tenantId").map(String::as_str), Some("acme"));
    assert_eq!(
        Doc::get(client, "acme", &7u64).await.expect("get"),
        Some(doc)
    );
    let keys = vec![
        Doc::key_for("acme", &7u64).expect("key"),
        Doc::key_for("acme", &8u64).expect("key"),
    ];
    let many = Doc::get_many(client, keys).await.expect("get_many");
    assert_eq!(
        many.iter().map(Option::is_some).collect::<Vec<_>>(),
        vec![true, false]
    );
}

async fn ttl_is_applied_on_create_and_kept_by_update_and_patch(redis: TestRedis) {
    let client = redis.client();
    let (s1, nope) = (id(&redis, "s1"), id(&redis, "nope"));
    let s = create_session(client, &s1).await;
    let left_of_s1 =
        async |why: &str| time_left(Session::ttl(client, &s1).await.expect("ttl"), why);
    let week = Duration::from_secs(7 * 86_400);
    let left = left_of_s1("session must expire").await;
    assert_left(left, week - Duration::from_secs(60), week);

    // Shorten it, then check update and patch keep what is left.
    let hundred = Duration::from_secs(100);
    assert!(Session::expire(client, &s1, hundred).await.expect("expire"));
    s.update(client).await.expect("update");
    let left = left_of_s1("update must keep the TTL").await;
    assert_left(left, Duration::from_secs(90), hundred);
    let patch = SessionPatch {
        created_at: Some(2),
        ..Default::default()
    };
    Session::patch(client, &s1, &patch).await.expect("patch");
    let left = left_of_s1("patch must keep the TTL").await;
    assert!(left <= hundred, "{left:?}");

    // Refresh restarts the declared TTL.
    s.update_refreshing_ttl(client).await.expect("refresh");
    let left = left_of_s1("refresh keeps an expiry").await;
    assert!(left > hundred, "{left:?}");

    assert!(Session::persist(client, &s1).await.expect("persist"));
    let ttl_of = async |id: &str| Session::ttl(client, id).await.expect("ttl");
    assert_eq!(ttl_of(&s1).await, Ttl::Persistent);
    assert_eq!(ttl_of(&nope).await, Ttl::Missing);
    let second = Duration::from_secs(1);
    assert!(
        !Session::expire(client, &nope, second)
            .await
            .expect("expire")
    );
}

async fn expired_entities_are_never_returned(redis: TestRedis) {
    let client = redis.client();
    let short = id(&redis, "short");
    create_session(client, &short).await;
    Session::expire(client, &short, Duration::from_millis(50))
        .await
        .expect("expire");
    eventually(Duration::from_secs(5), "the entity to expire", async || {
        Session::get(client, &short).await.expect("get").is_none()
    })
    .await;
    assert!(!Session::exists(client, &short).await.expect("exists"));
}

async fn expires_at_field_sets_an_absolute_expiry(redis: TestRedis) {
    let client = redis.client();
    let now_ms = redis_runtime::testing::now_ms();
    let t1 = id(&redis, "t1");
    let t = Token {
        id: t1.clone(),
        expires_at: now_ms + 60_000,
    };
    t.create(client).await.expect("create");
    let left_of_t1 = async || {
        time_left(
            Token::ttl(client, &t1).await.expect("ttl"),
            "token must expire",
        )
    };
    let left = left_of_t1().await;
    assert_left(left, Duration::from_secs(50), Duration::from_secs(60));
    let later = TokenPatch {
        expires_at: Some(now_ms + 600_000),
    };
    Token::patch(client, &t1, &later).await.expect("patch");
    let left = left_of_t1().await;
    assert!(left > Duration::from_secs(500), "{left:?}");
}

/// A create whose `expires_at` has already passed writes nothing at all:
/// no hash, no index entry, no stream entry announcing an entity that
/// never lived. It still succeeds, as the entity would have expired anyway.
async fn creating_an_already_expired_entity_writes_nothing(redis: TestRedis) {
    let client = redis.client();
    let now_ms = redis_runtime::testing::now_ms();
    let invite = |id: &str, expires_at| Invite {
        id: id.into(),
        inviter: "u1".into(),
        expires_at,
    };
    let outcome = invite("late", now_ms - 1_000)
        .create(client)
        .await
        .expect("create");
    assert_eq!(outcome.stream_id, None, "no entry announces it");
    let live = invite("live", now_ms + 60_000)
        .create(client)
        .await
        .expect("create");
    assert!(live.stream_id.is_some(), "a live one is announced");
    assert_eq!(Invite::get(client, "late").await.expect("get"), None);
    assert_eq!(
        Invite::by_inviter_ids(client, "u1").await.expect("ids"),
        vec!["live".to_string()]
    );
    let entries: usize = raw_query(client, &["XLEN", "invites:{invites}:stream"]).await;
    assert_eq!(entries, 1, "only the live invite is on the stream");
}

async fn hostile_ids_cannot_reach_other_keys(redis: TestRedis) {
    let client = redis.client();
    let victim = id(&redis, "victim");
    user(&victim).create(client).await.expect("create");
    for hostile in [
        "victim:x",
        "*",
        "vic?im",
        "",
        "a b",
        "{victim}",
        "x\r\nDEL user:victim",
        "[v]",
    ] {
        let err = User::get(client, hostile).await.expect_err("hostile id");
        assert_eq!(err.code(), "INVALID_KEY", "{hostile:?}");
        assert!(
            !err.to_string().contains("DEL user"),
            "error must not echo the value"
        );
        let err = User::delete(client, hostile).await.expect_err("hostile id");
        assert_eq!(err.code(), "INVALID_KEY");
        let mut u = user(&id(&redis, "ok"));
        u.id = hostile.to_string();
        assert_eq!(
            u.create(client).await.expect_err("hostile").code(),
            "INVALID_KEY"
        );
    }
    assert!(User::exists(client, &victim).await.expect("exists"));
}

async fn corrupted_hashes_give_typed_errors_naming_key_and_field(redis: TestRedis) {
    let client = redis.client();
    let u1 = id(&redis, "u1");
    let key = format!("user:{u1}");
    user(&u1).create(client).await.expect("create");

    let hset = async |fields: &[&str]| {
        raw_command(client, &[&["HSET", key.as_str()][..], fields].concat()).await
    };
    hset(&["login_count", "many"]).await;
    let err = User::get(client, &u1).await.expect_err("wrong type");
    assert_eq!(err.code(), "DECODE");
    let text = err.to_string();
    assert!(
        text.contains(&key) && text.contains("login_count"),
        "{text}"
    );

    hset(&["login_count", "1", "plan", "platinum"]).await;
    let err = User::get(client, &u1).await.expect_err("bad enum");
    assert!(err.to_string().contains("plan"), "{err}");

    hset(&["plan", "free", "settings", "{not json"]).await;
    let err = User::get(client, &u1).await.expect_err("bad json");
    assert!(err.to_string().contains("settings"), "{err}");

    hset(&["settings", "{}"]).await;
    raw_command(client, &["HDEL", &key, "email"]).await;
    let err = User::get(client, &u1).await.expect_err("missing field");
    assert!(
        err.to_string().contains("email") && err.to_string().contains("missing"),
        "{err}"
    );

    hset(&["email", "e", "verified", "maybe"]).await;
    assert_eq!(
        User::get(client, &u1).await.expect_err("bad bool").code(),
        "DECODE"
    );

    // `default` fields read as Default when absent; unknown fields are ignored.
    raw_command(client, &["HDEL", &key, "verified"]).await;
    hset(&["unknown", "zzz"]).await;
    let loaded = User::get(client, &u1).await.expect("get").expect("present");
    assert!(!loaded.verified);

    // Bad UTF-8 in a text field.
    let bad = vec![0xffu8, 0xfe];
    let at = key.clone();
    client
        .run(Context::new("test.bad_utf8", ""), |mut conn| async move {
            let _: () = conn.hset(at, "display_name", bad).await?;
            Ok(())
        })
        .await
        .expect("hset");
    let err = User::get(client, &u1).await.expect_err("bad utf8");
    assert!(
        err.to_string().contains("display_name") && err.to_string().contains("UTF-8"),
        "{err}"
    );

    // A key of the wrong Redis type is a typed error, not a panic.
    let str_id = id(&redis, "str");
    raw_command(client, &["SET", &format!("user:{str_id}"), "plain"]).await;
    let err = User::get(client, &str_id)
        .await
        .expect_err("wrong redis type");
    assert_eq!(err.code(), "STORAGE_COMMAND");
}

async fn nan_is_refused_on_write(redis: TestRedis) {
    #[derive(RedisEntity, Debug)]
    #[redis(key = "reading:{id}")]
    struct Reading {
        id: u32,
        value: f64,
    }
    let client = redis.client();
    let err = Reading {
        id: 1,
        value: f64::NAN,
    }
    .create(client)
    .await
    .expect_err("NaN");
    assert_eq!(err.code(), "ENCODE");
    assert!(!Reading::exists(client, &1u32).await.expect("exists"));
}

async fn a_declared_log_appends_reads_and_keeps_its_ttl_fresh(redis: TestRedis) {
    #[derive(RedisEntity, Debug)]
    #[redis(key = "build:{id}")]
    #[redis(log(name = "output", key = "build:{id}:output", ttl = "24h", max_len = 3))]
    struct Build {
        id: String,
    }
    let client = redis.client();
    let output = Build::output_log(client).expect("log");
    for line in ["a", "b", "c", "d"] {
        output
            .append("b1", &line.to_string())
            .await
            .expect("append");
    }
    assert_eq!(
        output.all("b1").await.expect("all"),
        ["b", "c", "d"],
        "capped at max_len"
    );
    let left = time_left(output.ttl("b1").await.expect("ttl"), "the log must expire");
    assert!(left > Duration::from_secs(23 * 3600), "{left:?}");
    assert_eq!(output.key("b1").expect("key"), "build:b1:output");
    assert_eq!(
        output.key("b1:x").expect_err("hostile").code(),
        "INVALID_KEY"
    );
}

on_both_topologies!(
    create_get_round_trips_every_field_and_stores_the_documented_layout,
    create_on_an_existing_key_fails_and_writes_nothing,
    get_of_a_missing_entity_is_none,
    update_replaces_declared_fields_and_removes_none_ones,
    update_of_a_missing_entity_is_not_found,
    save_upserts,
    patch_sets_and_clears_chosen_fields_only,
    delete_reports_whether_it_existed,
    get_many_keeps_order_and_reports_missing,
    multi_field_keys_and_renamed_fields,
    ttl_is_applied_on_create_and_kept_by_update_and_patch,
    expired_entities_are_never_returned,
    expires_at_field_sets_an_absolute_expiry,
    creating_an_already_expired_entity_writes_nothing,
    hostile_ids_cannot_reach_other_keys,
    corrupted_hashes_give_typed_errors_naming_key_and_field,
    nan_is_refused_on_write,
    a_declared_log_appends_reads_and_keeps_its_ttl_fresh,
);

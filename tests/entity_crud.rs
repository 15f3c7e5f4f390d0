//! CRUD, TTL and codec behaviour of `#[derive(RedisEntity)]` against a real,
//! private `redis-server`.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use redis::AsyncCommands;
use redis_runtime::testing::RedisServer;
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
#[redis(key = "session:{id}", ttl = "7d")]
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

async fn setup() -> (RedisServer, Client) {
    let server = RedisServer::start();
    let client = Client::connect(server.config()).await.expect("connect");
    (server, client)
}

async fn raw_hash(client: &Client, key: &str) -> BTreeMap<String, String> {
    let key = key.to_string();
    client
        .run(Context::new("test.hgetall", ""), |mut conn| async move {
            Ok(conn.hgetall(&key).await?)
        })
        .await
        .expect("hgetall")
}

async fn raw(client: &Client, args: &[&str]) -> redis::Value {
    redis_runtime::testing::raw_command(client, args).await
}

#[tokio::test]
async fn create_get_round_trips_every_field_and_stores_the_documented_layout() {
    let (_server, client) = setup().await;
    let u = user("u1");
    let outcome = u.create(&client).await.expect("create");
    assert!(!outcome.existed);
    assert_eq!(outcome.stream_id, None);

    let loaded = User::get(&client, "u1")
        .await
        .expect("get")
        .expect("present");
    assert_eq!(loaded, u);

    let hash = raw_hash(&client, "user:u1").await;
    let expected: BTreeMap<String, String> = [
        ("id", "u1"),
        ("email", "u1@example.com"),
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

#[tokio::test]
async fn create_on_an_existing_key_fails_and_writes_nothing() {
    let (_server, client) = setup().await;
    let original = user("u1");
    original.create(&client).await.expect("create");
    let mut other = user("u1");
    other.display_name = "Impostor".into();
    other.avatar = None;
    let err = other.create(&client).await.expect_err("duplicate");
    assert_eq!(err.code(), "ALREADY_EXISTS");
    assert_eq!(User::get(&client, "u1").await.expect("get"), Some(original));
}

#[tokio::test]
async fn get_of_a_missing_entity_is_none() {
    let (_server, client) = setup().await;
    assert_eq!(User::get(&client, "nobody").await.expect("get"), None);
    assert!(!User::exists(&client, "nobody").await.expect("exists"));
}

#[tokio::test]
async fn update_replaces_fully_and_removes_none_and_unknown_fields() {
    let (_server, client) = setup().await;
    let mut u = user("u1");
    u.create(&client).await.expect("create");
    // A field the struct no longer has (e.g. left by an older version).
    raw(&client, &["HSET", "user:u1", "legacy_field", "x"]).await;

    u.avatar = None;
    u.display_name = "Ada".into();
    u.update(&client).await.expect("update");

    let hash = raw_hash(&client, "user:u1").await;
    assert!(!hash.contains_key("avatar"), "None field must be removed");
    assert!(
        !hash.contains_key("legacy_field"),
        "stale field must be removed"
    );
    assert_eq!(User::get(&client, "u1").await.expect("get"), Some(u));
}

#[tokio::test]
async fn update_of_a_missing_entity_is_not_found() {
    let (_server, client) = setup().await;
    let err = user("ghost").update(&client).await.expect_err("missing");
    assert_eq!(err.code(), "NOT_FOUND");
    assert!(!User::exists(&client, "ghost").await.expect("exists"));
}

#[tokio::test]
async fn save_upserts() {
    let (_server, client) = setup().await;
    let mut u = user("u1");
    assert!(!u.save(&client).await.expect("save new").existed);
    u.login_count = 4;
    assert!(u.save(&client).await.expect("save again").existed);
    assert_eq!(User::get(&client, "u1").await.expect("get"), Some(u));
}

#[tokio::test]
async fn patch_sets_and_clears_chosen_fields_only() {
    let (_server, client) = setup().await;
    let u = user("u1");
    u.create(&client).await.expect("create");
    User::patch(
        &client,
        "u1",
        &UserPatch {
            login_count: Some(10),
            avatar: Some(None),
            last_login_at: Some(Some(SystemTime::UNIX_EPOCH)),
            ..Default::default()
        },
    )
    .await
    .expect("patch");
    let loaded = User::get(&client, "u1")
        .await
        .expect("get")
        .expect("present");
    assert_eq!(loaded.login_count, 10);
    assert_eq!(loaded.avatar, None);
    assert_eq!(loaded.last_login_at, Some(SystemTime::UNIX_EPOCH));
    assert_eq!(loaded.display_name, u.display_name, "untouched field kept");

    let err = User::patch(
        &client,
        "nobody",
        &UserPatch {
            login_count: Some(1),
            ..Default::default()
        },
    )
    .await
    .expect_err("missing");
    assert_eq!(err.code(), "NOT_FOUND");
    assert!(
        !User::exists(&client, "nobody").await.expect("exists"),
        "patch must not create"
    );
}

#[tokio::test]
async fn delete_reports_whether_it_existed() {
    let (_server, client) = setup().await;
    user("u1").create(&client).await.expect("create");
    assert!(User::delete(&client, "u1").await.expect("delete"));
    assert!(!User::delete(&client, "u1").await.expect("delete again"));
    assert_eq!(User::get(&client, "u1").await.expect("get"), None);
}

#[tokio::test]
async fn get_many_keeps_order_and_reports_missing() {
    let (_server, client) = setup().await;
    for id in ["a", "b", "c"] {
        user(id).create(&client).await.expect("create");
    }
    let found = User::get_many(&client, ["c", "missing", "a"])
        .await
        .expect("get_many");
    let ids: Vec<Option<String>> = found.into_iter().map(|u| u.map(|u| u.id)).collect();
    assert_eq!(ids, vec![Some("c".into()), None, Some("a".into())]);
    assert!(
        User::get_many(&client, Vec::<String>::new())
            .await
            .expect("empty")
            .is_empty()
    );
}

#[tokio::test]
async fn multi_field_keys_and_renamed_fields() {
    let (_server, client) = setup().await;
    let doc = Doc {
        tenant_id: "acme".into(),
        id: 7,
        title_text: "Plan".into(),
    };
    doc.create(&client).await.expect("create");
    assert_eq!(
        Doc::key_for("acme", &7u64).expect("key"),
        "tenant:acme:doc:7"
    );
    let hash = raw_hash(&client, "tenant:acme:doc:7").await;
    assert_eq!(hash.get("titleText").map(String::as_str), Some("Plan"));
    assert_eq!(hash.get("tenantId").map(String::as_str), Some("acme"));
    assert_eq!(
        Doc::get(&client, "acme", &7u64).await.expect("get"),
        Some(doc)
    );
    let keys = vec![
        Doc::key_for("acme", &7u64).expect("key"),
        Doc::key_for("acme", &8u64).expect("key"),
    ];
    let many = Doc::get_many(&client, keys).await.expect("get_many");
    assert_eq!(
        many.iter().map(Option::is_some).collect::<Vec<_>>(),
        vec![true, false]
    );
}

#[tokio::test]
async fn ttl_is_applied_on_create_and_kept_by_update_and_patch() {
    let (_server, client) = setup().await;
    let s = Session {
        id: "s1".into(),
        user_id: "u1".into(),
        created_at: 1,
    };
    s.create(&client).await.expect("create");
    let Ttl::ExpiresIn(left) = Session::ttl(&client, "s1").await.expect("ttl") else {
        panic!("session must expire");
    };
    let week = Duration::from_secs(7 * 86_400);
    assert!(
        left <= week && left > week - Duration::from_secs(60),
        "{left:?}"
    );

    // Shorten it, then check update and patch keep what is left.
    assert!(
        Session::expire(&client, "s1", Duration::from_secs(100))
            .await
            .expect("expire")
    );
    s.update(&client).await.expect("update");
    let Ttl::ExpiresIn(left) = Session::ttl(&client, "s1").await.expect("ttl") else {
        panic!("update must keep the TTL");
    };
    assert!(
        left <= Duration::from_secs(100) && left > Duration::from_secs(90),
        "{left:?}"
    );
    Session::patch(
        &client,
        "s1",
        &SessionPatch {
            created_at: Some(2),
            ..Default::default()
        },
    )
    .await
    .expect("patch");
    let Ttl::ExpiresIn(left) = Session::ttl(&client, "s1").await.expect("ttl") else {
        panic!("patch must keep the TTL");
    };
    assert!(left <= Duration::from_secs(100), "{left:?}");

    // Refresh restarts the declared TTL.
    s.update_refreshing_ttl(&client).await.expect("refresh");
    let Ttl::ExpiresIn(left) = Session::ttl(&client, "s1").await.expect("ttl") else {
        panic!("refresh keeps an expiry");
    };
    assert!(left > Duration::from_secs(100), "{left:?}");

    assert!(Session::persist(&client, "s1").await.expect("persist"));
    assert_eq!(
        Session::ttl(&client, "s1").await.expect("ttl"),
        Ttl::Persistent
    );
    assert_eq!(
        Session::ttl(&client, "nope").await.expect("ttl"),
        Ttl::Missing
    );
    assert!(
        !Session::expire(&client, "nope", Duration::from_secs(1))
            .await
            .expect("expire")
    );
}

#[tokio::test]
async fn expired_entities_are_never_returned() {
    let (_server, client) = setup().await;
    let s = Session {
        id: "short".into(),
        user_id: "u1".into(),
        created_at: 1,
    };
    s.create(&client).await.expect("create");
    Session::expire(&client, "short", Duration::from_millis(50))
        .await
        .expect("expire");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while Session::get(&client, "short").await.expect("get").is_some() {
        assert!(std::time::Instant::now() < deadline, "entity never expired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!Session::exists(&client, "short").await.expect("exists"));
}

#[tokio::test]
async fn expires_at_field_sets_an_absolute_expiry() {
    let (_server, client) = setup().await;
    let now_ms = i64::try_from(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("clock")
            .as_millis(),
    )
    .expect("fits");
    let t = Token {
        id: "t1".into(),
        expires_at: now_ms + 60_000,
    };
    t.create(&client).await.expect("create");
    let Ttl::ExpiresIn(left) = Token::ttl(&client, "t1").await.expect("ttl") else {
        panic!("token must expire");
    };
    assert!(
        left <= Duration::from_secs(60) && left > Duration::from_secs(50),
        "{left:?}"
    );
    Token::patch(
        &client,
        "t1",
        &TokenPatch {
            expires_at: Some(now_ms + 600_000),
        },
    )
    .await
    .expect("patch");
    let Ttl::ExpiresIn(left) = Token::ttl(&client, "t1").await.expect("ttl") else {
        panic!("token must expire");
    };
    assert!(left > Duration::from_secs(500), "{left:?}");
}

#[tokio::test]
async fn hostile_ids_cannot_reach_other_keys() {
    let (_server, client) = setup().await;
    user("victim").create(&client).await.expect("create");
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
        let err = User::get(&client, hostile).await.expect_err("hostile id");
        assert_eq!(err.code(), "INVALID_KEY", "{hostile:?}");
        assert!(
            !err.to_string().contains("DEL user"),
            "error must not echo the value"
        );
        let err = User::delete(&client, hostile)
            .await
            .expect_err("hostile id");
        assert_eq!(err.code(), "INVALID_KEY");
        let mut u = user("ok");
        u.id = hostile.to_string();
        assert_eq!(
            u.create(&client).await.expect_err("hostile").code(),
            "INVALID_KEY"
        );
    }
    assert!(User::exists(&client, "victim").await.expect("exists"));
}

#[tokio::test]
async fn corrupted_hashes_give_typed_errors_naming_key_and_field() {
    let (_server, client) = setup().await;
    user("u1").create(&client).await.expect("create");

    raw(&client, &["HSET", "user:u1", "login_count", "many"]).await;
    let err = User::get(&client, "u1").await.expect_err("wrong type");
    assert_eq!(err.code(), "DECODE");
    let text = err.to_string();
    assert!(
        text.contains("user:u1") && text.contains("login_count"),
        "{text}"
    );

    raw(
        &client,
        &["HSET", "user:u1", "login_count", "1", "plan", "platinum"],
    )
    .await;
    let err = User::get(&client, "u1").await.expect_err("bad enum");
    assert!(err.to_string().contains("plan"), "{err}");

    raw(
        &client,
        &["HSET", "user:u1", "plan", "free", "settings", "{not json"],
    )
    .await;
    let err = User::get(&client, "u1").await.expect_err("bad json");
    assert!(err.to_string().contains("settings"), "{err}");

    raw(&client, &["HSET", "user:u1", "settings", "{}"]).await;
    raw(&client, &["HDEL", "user:u1", "email"]).await;
    let err = User::get(&client, "u1").await.expect_err("missing field");
    assert!(
        err.to_string().contains("email") && err.to_string().contains("missing"),
        "{err}"
    );

    raw(
        &client,
        &["HSET", "user:u1", "email", "e", "verified", "maybe"],
    )
    .await;
    assert_eq!(
        User::get(&client, "u1").await.expect_err("bad bool").code(),
        "DECODE"
    );

    // `default` fields read as Default when absent; unknown fields are ignored.
    raw(&client, &["HDEL", "user:u1", "verified"]).await;
    raw(&client, &["HSET", "user:u1", "unknown", "zzz"]).await;
    let loaded = User::get(&client, "u1")
        .await
        .expect("get")
        .expect("present");
    assert!(!loaded.verified);

    // Bad UTF-8 in a text field.
    let bad = vec![0xffu8, 0xfe];
    client
        .run(Context::new("test.bad_utf8", ""), |mut conn| async move {
            let _: () = conn.hset("user:u1", "display_name", bad).await?;
            Ok(())
        })
        .await
        .expect("hset");
    let err = User::get(&client, "u1").await.expect_err("bad utf8");
    assert!(
        err.to_string().contains("display_name") && err.to_string().contains("UTF-8"),
        "{err}"
    );

    // A key of the wrong Redis type is a typed error, not a panic.
    raw(&client, &["SET", "user:str", "plain"]).await;
    let err = User::get(&client, "str")
        .await
        .expect_err("wrong redis type");
    assert_eq!(err.code(), "STORAGE_COMMAND");
}

#[tokio::test]
async fn nan_is_refused_on_write() {
    #[derive(RedisEntity, Debug)]
    #[redis(key = "reading:{id}")]
    struct Reading {
        id: u32,
        value: f64,
    }
    let (_server, client) = setup().await;
    let err = Reading {
        id: 1,
        value: f64::NAN,
    }
    .create(&client)
    .await
    .expect_err("NaN");
    assert_eq!(err.code(), "ENCODE");
    assert!(!Reading::exists(&client, &1u32).await.expect("exists"));
}

#[tokio::test]
async fn a_declared_log_appends_reads_and_keeps_its_ttl_fresh() {
    #[derive(RedisEntity, Debug)]
    #[redis(key = "build:{id}")]
    #[redis(log(name = "output", key = "build:{id}:output", ttl = "24h", max_len = 3))]
    struct Build {
        id: String,
    }
    let (_server, client) = setup().await;
    let output = Build::output_log(&client).expect("log");
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
    let Ttl::ExpiresIn(left) = output.ttl("b1").await.expect("ttl") else {
        panic!("the log must expire");
    };
    assert!(left > Duration::from_secs(23 * 3600), "{left:?}");
    assert_eq!(output.key("b1").expect("key"), "build:b1:output");
    assert_eq!(
        output.key("b1:x").expect_err("hostile").code(),
        "INVALID_KEY"
    );
}

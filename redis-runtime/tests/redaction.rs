//! Secrets never reach logs, `Debug`, `Display` or errors.
//!
//! This test is alone in its binary on purpose: `tracing` caches per
//! call site whether anyone listens, and a test running in parallel on
//! another thread without a subscriber can make a scoped subscriber miss
//! events.

mod common;

use redis_runtime::Config;
use redis_runtime::testing::set_get;

use common::{PASSWORD, SecretLogin, secret_login};

#[tokio::test]
async fn passwords_and_urls_never_reach_logs_debug_or_errors() {
    let SecretLogin {
        mut server,
        url,
        config,
        client,
        logs,
        _admin,
        _guard,
    } = secret_login().await;
    assert_eq!(set_get(&client, "k", "v").await.expect("set/get"), "v");

    // Provoke error, close and reconnect events.
    server.stop();
    let err = set_get(&client, "k", "v").await.expect_err("down");
    let _ = client.health().await;
    server.restart();

    let wrong = Config::from_url("redis://app:wrong-s3cret@127.0.0.1:1/x").expect_err("bad db");
    let mut texts = vec![
        format!("{config:?}"),
        format!("{client:?}"),
        format!("{err:?}"),
        err.to_string(),
        format!("{wrong:?}"),
        wrong.to_string(),
    ];
    texts.push(logs.text());
    let all = texts.join("\n");
    assert!(
        all.contains("redis connected"),
        "connect event expected:\n{all}"
    );
    assert!(all.contains("redis error"), "error event expected:\n{all}");
    assert!(
        all.contains("connection closed"),
        "close event expected:\n{all}"
    );
    assert!(
        all.contains("reconnecting (attempt 1)"),
        "reconnect event expected:\n{all}"
    );
    assert!(!all.contains(PASSWORD), "a password leaked:\n{all}");
    assert!(!all.contains(&url), "the URL leaked:\n{all}");
}

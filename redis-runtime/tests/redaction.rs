//! Secrets never reach logs, `Debug`, `Display` or errors.
//!
//! This test is alone in its binary on purpose: `tracing` caches per
//! call site whether anyone listens, and a test running in parallel on
//! another thread without a subscriber can make a scoped subscriber miss
//! events.

use std::io::Write;
use std::sync::{Arc, Mutex};

use redis::AsyncCommands;
use redis_runtime::testing::RedisServer;
use redis_runtime::{Client, Config, Context};

async fn set_get(client: &Client, key: &str, value: &str) -> redis_runtime::Result<String> {
    let (key, value) = (key.to_string(), value.to_string());
    client
        .run(
            Context::new("test.set_get", "test:{k}"),
            |mut conn| async move {
                let _: () = conn.set(&key, &value).await?;
                Ok(conn.get(&key).await?)
            },
        )
        .await
}

/// Collects everything `tracing` writes, to search it for secrets.
#[derive(Clone, Default)]
struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn passwords_and_urls_never_reach_logs_debug_or_errors() {
    let mut server = RedisServer::start();
    // An ACL user, so the credentials are real and used.
    let admin = Client::connect(server.config()).await.expect("admin");
    admin
        .run(Context::new("acl", ""), |mut conn| async move {
            let _: () = redis::cmd("ACL")
                .arg(&["SETUSER", "app", "on", ">s3cret", "~*", "&*", "+@all"])
                .query_async(&mut conn)
                .await?;
            Ok(())
        })
        .await
        .expect("acl setuser");
    let url = format!("redis://app:s3cret@127.0.0.1:{}/0", server.port());

    let logs = CapturedLogs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let config = Config::builder(url.clone())
        .lazy_connect(false)
        .build()
        .expect("config");
    let client = Client::connect(config.clone())
        .await
        .expect("ACL login works");
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
    texts.push(String::from_utf8_lossy(&logs.0.lock().expect("lock")).into_owned());
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
    assert!(!all.contains("s3cret"), "a password leaked:\n{all}");
    assert!(!all.contains(&url), "the URL leaked:\n{all}");
}

//! The main example: the seeds' application flow, end to end.
//!
//! Runs against `REDIS_URL` when it is set; otherwise it starts a throwaway
//! `redis-server` on a free loopback port and stops it at the end.
//!
//! ```text
//! cargo run --example app
//! ```

use redis::AsyncCommands;
use redis_runtime::testing::RedisServer;
use redis_runtime::{Client, Config, Context};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "redis_runtime=info".into()),
        )
        .init();

    // Keep the throwaway server alive until the end of main.
    let (config, _server) = match std::env::var("REDIS_URL") {
        Ok(url) if !url.trim().is_empty() => (Config::from_env()?, None),
        _ => {
            let server = RedisServer::try_start()?;
            println!(
                "REDIS_URL is unset: started a throwaway redis-server on port {}",
                server.port()
            );
            (server.config(), Some(server))
        }
    };
    println!("connecting to {}", config.endpoint());
    let client = Client::connect(config).await?;

    let health = client.health().await;
    println!(
        "health: ok={} latency={:.2} ms",
        health.ok, health.latency_ms
    );
    if !health.ok {
        return Err(format!("Redis is not healthy: {:?}", health.error).into());
    }

    let visits: i64 = client
        .run(
            Context::new("example.visits", "example:visits"),
            |mut conn| async move { Ok(conn.incr("example:visits", 1).await?) },
        )
        .await?;
    println!("example:visits = {visits}");

    client.shutdown().await;
    println!("shut down cleanly");
    Ok(())
}

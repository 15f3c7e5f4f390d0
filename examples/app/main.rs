//! The main example: a job-running web application's data flow, end to end.
//!
//! Users, sessions (with a TTL) and git providers are stored entities; jobs
//! are enqueued on `jobs:stream` in the same atomic step as their creation,
//! a worker consumes them, appends output lines to `job:{id}:output`,
//! publishes status changes that a subscriber prints, and everything shuts
//! down cleanly. The user's job history comes from a generated index query.
//!
//! Runs against `REDIS_URL` when it is set; otherwise it starts a throwaway
//! `redis-server` on a free loopback port and stops it at the end.
//!
//! ```text
//! cargo run --example app
//! ```

use redis_runtime::testing::RedisServer;
use redis_runtime::{Client, Config};

mod flow;
mod model;

use model::{GitProvider, Job, Session, User};

type AnyError = Box<dyn std::error::Error + Send + Sync>;

/// Runs the flow; a failure is printed as its message (not its `Debug`
/// form) and exits 1.
#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), AnyError> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "redis_runtime=warn".into()),
        )
        .init();

    // Every key these types can touch, checked once at start-up: two
    // patterns that could produce the same key stop the program here.
    let keyspace = redis_runtime::keyspace!(User, Session, GitProvider, Job)?;
    println!(
        "keyspace: {} entity types, no two keys can collide",
        keyspace.entities().len()
    );

    // Keep the throwaway server alive until the end of main.
    let (config, _server) = match std::env::var("REDIS_URL") {
        Ok(url) if !url.trim().is_empty() => (Config::from_env()?, None),
        _ => {
            let server = RedisServer::try_start().map_err(|e| {
                format!("{e}; or set REDIS_URL to the Redis this example should use")
            })?;
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

    flow::run(&client).await?;
    client.shutdown().await;
    println!("shut down cleanly");
    Ok(())
}

//! Runtime for `#[derive(RedisEntity)]`.
//!
//! Applications depend on this crate only. It owns the connection
//! ([`Client`], configured by [`Config`]), the error type ([`Error`], with
//! stable [`Error::code`]s) and the metrics hook ([`metrics::Metrics`]).
//! With the `testing` feature it also provides [`testing::RedisServer`], a
//! throwaway `redis-server` for integration tests and examples.

pub mod client;
pub mod config;
pub mod error;
pub mod metrics;
#[cfg(feature = "testing")]
pub mod testing;

pub use client::{Client, Health};
pub use config::{Config, ConfigBuilder, RetryPolicy};
pub use error::{Context, Error, Result};

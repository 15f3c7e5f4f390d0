//! Runtime for `#[derive(RedisEntity)]`.
//!
//! Applications depend on this crate only. It owns the connection
//! ([`Client`], configured by [`Config`]), the error type ([`Error`], with
//! stable [`Error::code`]s), the metrics hook ([`metrics::Metrics`]), the
//! field codec ([`codec`]) and the atomic entity operations ([`entity`]).
//! With the `testing` feature it also provides `testing::RedisServer`, a
//! throwaway `redis-server` for integration tests and examples.

// Lets the derives, which name `::redis_runtime`, be used in this crate's own tests.
extern crate self as redis_runtime;

/// Target of every tracing event this crate emits.
pub(crate) const TRACE_TARGET: &str = "redis_runtime";

#[cfg(feature = "admin")]
pub mod admin;
pub mod applog;
mod blocking;
pub mod client;
pub mod codec;
pub mod config;
mod cross_slot;
pub mod entity;
pub mod error;
#[cfg(any(doc, test))]
pub mod example_generated;
mod identity;
pub mod index;
pub mod json;
pub mod keyspace;
pub mod metrics;
pub mod migrate;
pub mod pubsub;
pub mod queue;
mod reply;
mod scan;
mod script;
mod sentinel;
pub mod server;
pub mod stream;
#[cfg(feature = "testing")]
pub mod testing;
pub mod transport;
pub mod worker;

pub use applog::AppendLog;
pub use client::{Client, Connection, Health};
pub use codec::{FieldValue, KeyPart, Record};
pub use config::{AckReplicas, Config, ConfigBuilder, ReplicaAcks, RetryPolicy};
pub use entity::{Conditional, Entity, Patch, Ttl, TtlChange, WriteOutcome};
pub use error::{Context, Error, Result, Unavailability};
pub use index::{Order, Page, ScoreRange};
pub use json::Json;
pub use pubsub::{Channel, Subscription};
pub use queue::{ListQueue, ReliableQueue};
pub use redis_derive::{RedisEntity, RedisRecord, RedisValue};
/// The keyspace model the derive and the runtime share: key patterns and
/// the descriptors every entity type's storage is described by (e.g.
/// `User::descriptor().indexes`).
pub use redis_schema as schema;
pub use stream::{ConsumerGroup, Entry, ReadBatch, Stream};
pub use transport::{Effect, Payload, Request};
pub use worker::{Worker, WorkerReport};

/// What generated code refers to, by absolute path. Not a public API: it
/// changes without notice.
#[doc(hidden)]
pub mod __private {
    pub use crate::applog::AppendLog;
    pub use crate::client::Client;
    pub use crate::codec::{
        ExpiryValue, FieldCodec, FieldSink, FieldValue, KeyBuilder, KeyPart, RawFields, Record,
        ScoreValue, decode_json, decode_optional, decode_or_default, decode_required, encode_field,
        encode_json_field, expiry_of, field_codec, json_codec, missing_field, unknown_variant,
    };
    pub use crate::entity::{
        self, Conditional, Entity, IndexKind, Patch, Ttl, TtlChange, WriteOutcome,
    };
    pub use crate::error::{Context, Error, Result};
    pub use crate::index::{self, Page, ScoreRange};
    pub use redis_schema::{
        EntityDescriptor, FieldDescriptor, FieldEncoding, IndexDescriptor, LogDescriptor,
        PatternPart, StreamDescriptor,
    };
    pub use std::borrow::Cow;
    pub use std::num::NonZeroU64;
    pub use std::time::Duration;
}

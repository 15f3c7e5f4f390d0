//! The main example's data model: the entity types a job-running web
//! application stores, and the status message its worker publishes. Kept in
//! its own file so that the keyspace test can check exactly these types.
//!
//! Every type is declared for Redis Cluster too (`cluster`), keeping the
//! layout the other services share: each entity in its own hash slot, and
//! the global index keys, the users' unique email hash and the jobs stream
//! kept in step around each write (`cross_slot`, `stream_cross_slot`): a
//! new email is claimed in `users:by_email` before the user is written and
//! the old one released just after. On one server or through Sentinel that
//! changes nothing: every write is one atomic script there.

use redis_runtime::{RedisEntity, RedisValue};
use serde::{Deserialize, Serialize};

#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[redis(cluster, key = "user:{id}")]
#[redis(unique(key = "users:by_email", field = "email", cross_slot))]
pub(crate) struct User {
    pub(crate) id: String,
    pub(crate) email: String,
    pub(crate) display_name: String,
    pub(crate) created_at: i64,
    pub(crate) last_login_at: Option<i64>,
}

#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[redis(cluster, key = "session:{id}", ttl = "7d")]
pub(crate) struct Session {
    pub(crate) id: String,
    pub(crate) user_id: String,
    pub(crate) created_at: i64,
}

#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[redis(cluster, key = "git_provider:{id}")]
#[redis(index(key = "git_providers:{user_id}", cross_slot))]
pub(crate) struct GitProvider {
    pub(crate) id: String,
    pub(crate) user_id: String,
    pub(crate) kind: String,
    #[redis(rename = "access_token_ref")]
    pub(crate) token_ref: String,
}

#[derive(RedisValue, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum JobStatus {
    Queued,
    Running,
    Completed,
    Failed,
}

#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[redis(cluster, key = "job:{id}")]
#[redis(stream = "jobs:stream", stream_maxlen = 10000, stream_cross_slot)]
#[redis(sorted_index(key = "jobs:user:{user_id}", score = "created_at", cross_slot))]
#[redis(index(key = "jobs:status:{status}", cross_slot))]
#[redis(log(name = "output", key = "job:{id}:output", ttl = "24h"))]
pub(crate) struct Job {
    pub(crate) id: String,
    pub(crate) user_id: String,
    pub(crate) repo: String,
    pub(crate) command: String,
    pub(crate) status: JobStatus,
    pub(crate) created_at: i64,
    /// How many times a worker has started it (`Job::incr_attempts`);
    /// hashes written before the field existed read as 0.
    #[redis(default)]
    pub(crate) attempts: u32,
    pub(crate) error: Option<String>,
}

/// What the worker publishes on `job_updates`: the camelCase JSON shape the
/// TypeScript web app sharing this keyspace subscribes to.
#[derive(Serialize, Deserialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub(crate) struct JobUpdate {
    pub(crate) tenant_id: String,
    pub(crate) job_id: String,
    pub(crate) status: JobStatus,
    pub(crate) error: Option<String>,
}

//! What `#[derive(RedisEntity)]` generates, shown on an example entity.
//!
//! This module exists for the documentation only (it is compiled for
//! rustdoc and the tests, not into applications): [`Job`] is declared as
//! below, and everything else on this page was generated from that
//! declaration — the inherent methods on [`Job`] (CRUD, TTL, index queries,
//! the append log), the [`JobPatch`] type, and the trait impls. Your own
//! entities get the same methods, named after your indexes and logs.
//!
//! ```
//! use redis_runtime::{RedisEntity, RedisValue};
//!
//! #[derive(RedisValue, Debug, Clone, Copy, PartialEq, Eq)]
//! pub enum JobStatus { Queued, Running, Completed, Failed }
//!
//! #[derive(RedisEntity, Debug, Clone, PartialEq)]
//! #[redis(key = "job:{id}", stream = "jobs:stream", stream_maxlen = 10000)]
//! #[redis(sorted_index(key = "jobs:user:{user_id}", score = "created_at"))]
//! #[redis(index(key = "jobs:status:{status}"))]
//! #[redis(unique(key = "jobs:by_slug", field = "slug"))]
//! #[redis(log(name = "output", key = "job:{id}:output", ttl = "24h"))]
//! pub struct Job {
//!     pub id: String,
//!     pub user_id: String,
//!     pub slug: String,
//!     pub status: JobStatus,
//!     pub created_at: i64,
//!     pub attempts: u32,
//!     pub error: Option<String>,
//!     #[redis(version)]
//!     pub version: u64,
//! }
//! ```
//!
//! | generated | from |
//! | --- | --- |
//! | `create`, `save`, `update`, `update_refreshing_ttl`, `delete`, `get`, `get_many`, `exists`, `ttl`, `expire`, `persist`, `key_for` | `key = "job:{id}"` |
//! | `patch`, `patch_refreshing_ttl`, `patch_if` and [`JobPatch`] | every entity |
//! | `incr_created_at`, `incr_attempts` | every integer field outside the key (not the version) |
//! | `update_if_version`, `patch_if_version`, `modify` | `#[redis(version)]` |
//! | `by_user_id`, `by_user_id_in_range`, `by_user_id_ids_in_range`, `by_user_id_count` (and `by_user_id_ids`, its deprecated old name); cursor pages `by_user_id_after`, `by_user_id_ids_after`; `delete_by_user_id` | `sorted_index(key = "jobs:user:{user_id}", …)` |
//! | `by_status`, `by_status_ids`, `by_status_count`; cursor pages `by_status_after`, `by_status_ids_after`; `delete_by_status` | `index(key = "jobs:status:{status}")` |
//! | `by_user_id_where`, `by_user_id_where_count` and [`JobFilter`] | a sorted index and set indexes keyed by one field |
//! | `by_slug` | `unique(key = "jobs:by_slug", field = "slug")` |
//! | `output_log` | `log(name = "output", …)` |

use crate::{RedisEntity, RedisValue};

/// A job's state, stored as `queued`, `running`, `completed`, `failed`.
#[derive(RedisValue, Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    /// Waiting for a worker.
    Queued,
    /// A worker runs it.
    Running,
    /// Finished successfully.
    Completed,
    /// Finished with an error.
    Failed,
}

/// The example entity; see the [module docs](self) for its declaration.
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[redis(key = "job:{id}", stream = "jobs:stream", stream_maxlen = 10000)]
#[redis(sorted_index(key = "jobs:user:{user_id}", score = "created_at"))]
#[redis(index(key = "jobs:status:{status}"))]
#[redis(unique(key = "jobs:by_slug", field = "slug"))]
#[redis(log(name = "output", key = "job:{id}:output", ttl = "24h"))]
pub struct Job {
    /// The job's id: the key's placeholder.
    pub id: String,
    /// Who started it: the sorted index's key.
    pub user_id: String,
    /// A unique, human-readable name.
    pub slug: String,
    /// Where it is: the set index's key.
    pub status: JobStatus,
    /// Epoch milliseconds: the sorted index's score.
    pub created_at: i64,
    /// How many times a worker started it: a counter (`incr_attempts`).
    pub attempts: u32,
    /// Why it failed; `None` is no hash field.
    pub error: Option<String>,
    /// Stored version, plus one on every write: optimistic concurrency.
    #[redis(version)]
    pub version: u64,
}

//! Entities and helpers shared by the index suites (`indexes.rs` and
//! `regressions.rs`): a job indexed three ways with no TTL, and a lease
//! indexed three ways with a short TTL.

use std::time::Duration;

use redis_runtime::index;
use redis_runtime::testing::eventually;
use redis_runtime::{Client, Entity, Page, RedisEntity, RedisValue, entity};

#[derive(RedisValue, Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum JobStatus {
    Queued,
    Running,
    Completed,
    Failed,
}

/// Indexed, no TTL: sorted first, then set, then unique.
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[redis(key = "job:{id}")]
#[redis(sorted_index(key = "jobs:user:{user_id}", score = "created_at"))]
#[redis(index(key = "jobs:status:{status}"))]
#[redis(unique(key = "jobs:by_slug", field = "slug"))]
pub(crate) struct Job {
    pub(crate) id: String,
    pub(crate) user_id: String,
    pub(crate) status: JobStatus,
    pub(crate) slug: String,
    pub(crate) created_at: i64,
    pub(crate) error: Option<String>,
}

/// Indexed, with a short declared TTL.
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[redis(key = "lease:{id}", ttl = "1s")]
#[redis(sorted_index(key = "leases:owner:{owner}", score = "taken_at"))]
#[redis(index(key = "leases:kind:{kind}"))]
#[redis(unique(key = "leases:by_resource", field = "resource"))]
pub(crate) struct Lease {
    pub(crate) id: String,
    pub(crate) owner: String,
    pub(crate) kind: String,
    pub(crate) resource: String,
    pub(crate) taken_at: i64,
}

/// A job with the slug `slug-{id}` and no error.
pub(crate) fn job(id: &str, user: &str, status: JobStatus, created_at: i64) -> Job {
    Job {
        id: id.into(),
        user_id: user.into(),
        status,
        slug: format!("slug-{id}"),
        created_at,
        error: None,
    }
}

/// One operation of the random write load the fault tests run under:
/// advances the generator state `n` and creates, patches, increments or
/// deletes one of 200 jobs. `ALREADY_EXISTS` and `NOT_FOUND` are ordinary
/// outcomes of it.
pub(crate) async fn random_write(client: &Client, n: &mut u64) -> redis_runtime::Result<()> {
    let statuses = [JobStatus::Queued, JobStatus::Running, JobStatus::Failed];
    *n = n
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let n = *n;
    let id = format!("j{}", (n >> 33) % 200);
    let status = statuses[((n >> 20) % 3) as usize];
    match (n >> 40) % 4 {
        0 => job(&id, "u1", status, (n % 1000) as i64)
            .create(client)
            .await
            .map(drop),
        1 => {
            let patch = JobPatch {
                status: Some(status),
                ..Default::default()
            };
            Job::patch(client, &id, &patch).await
        }
        2 => Job::incr_created_at(client, &id, 1).await.map(drop),
        _ => Job::delete(client, &id).await.map(drop),
    }
}

/// A lease of kind `k` on the resource `r-{id}`.
pub(crate) fn lease(id: &str, owner: &str, taken_at: i64) -> Lease {
    Lease {
        id: id.into(),
        owner: owner.into(),
        kind: "k".into(),
        resource: format!("r-{id}"),
        taken_at,
    }
}

/// The ids of one page of `owner`'s leases.
pub(crate) async fn owner_page(client: &Client, owner: &str, page: Page) -> Vec<String> {
    let leases = Lease::by_owner(client, owner, page).await.expect("page");
    leases.into_iter().map(|l| l.id).collect()
}

/// Waits until the lease `id` has expired (its hash is gone).
pub(crate) async fn wait_expired(client: &Client, id: &str) {
    eventually(
        Duration::from_secs(10),
        &format!("{id} to expire"),
        async || !Lease::exists(client, id).await.expect("exists"),
    )
    .await;
}

/// Creates each entity, in order, failing the test on any error.
pub(crate) async fn create_all<E: Entity>(client: &Client, entities: impl IntoIterator<Item = E>) {
    for e in entities {
        entity::create(client, &e).await.expect("create");
    }
}

/// Asserts that `verify` finds no drift in any index of `E`.
pub(crate) async fn assert_no_drift<E: Entity>(client: &Client) {
    let report = index::verify::<E>(client).await.expect("verify");
    assert!(report.drift.is_empty(), "drift: {:#?}", report.drift);
}

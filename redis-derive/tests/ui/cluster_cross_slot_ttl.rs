use redis_runtime::RedisEntity;

// Expiry runs no script: entries in other slots would outlive the entity.
// Reported at each `cross_slot`, for a `ttl` and for an `expires_at` field.
#[derive(RedisEntity)]
#[redis(cluster, key = "job:{id}", ttl = "1h")]
#[redis(index(key = "jobs:status:{status}", cross_slot))]
struct Job {
    id: String,
    status: String,
}

#[derive(RedisEntity)]
#[redis(cluster, key = "run:{{{user_id}}}:{id}")]
#[redis(sorted_index(key = "runs:by_time", score = "created_at", name = "by_time", cross_slot))]
struct Run {
    user_id: String,
    id: String,
    created_at: i64,
    #[redis(expires_at)]
    deadline: i64,
}

fn main() {}

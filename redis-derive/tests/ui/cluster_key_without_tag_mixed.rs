use redis_runtime::RedisEntity;

// No tag: every index must be `cross_slot`. One is, the other is not.
#[derive(RedisEntity)]
#[redis(cluster, key = "job:{id}")]
#[redis(index(key = "jobs:status:{status}", cross_slot))]
#[redis(sorted_index(key = "jobs:user:{user_id}", score = "created_at"))]
struct Job {
    id: String,
    status: String,
    user_id: String,
    created_at: i64,
}

fn main() {}

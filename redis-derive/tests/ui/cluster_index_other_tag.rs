use redis_runtime::RedisEntity;

// A type pinned to one slot, with a sorted index tagged by a field instead.
#[derive(RedisEntity)]
#[redis(cluster, key = "job:{{jobs}}:{id}")]
#[redis(sorted_index(key = "jobs:{{{user_id}}}:by_user", score = "created_at"))]
struct Job {
    id: String,
    user_id: String,
    created_at: i64,
}

fn main() {}

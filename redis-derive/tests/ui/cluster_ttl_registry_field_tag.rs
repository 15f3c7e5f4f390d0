use redis_runtime::RedisEntity;

// The index shares the entity's slot; the TTL registry, one key for every
// user's jobs, cannot.
#[derive(RedisEntity)]
#[redis(cluster, key = "job:{{{user_id}}}:{id}", ttl = "1h")]
#[redis(index(key = "jobs:{{{user_id}}}:status:{status}"))]
struct Job {
    user_id: String,
    id: String,
    status: String,
}

fn main() {}

use redis_runtime::RedisEntity;

// Tagged by user, with an index outside that tag: the index and the TTL
// registry are both reported, and both fixes name the same pinned tag.
#[derive(RedisEntity)]
#[redis(cluster, key = "job:{{{user_id}}}:{id}")]
#[redis(index(key = "jobs:status:{status}"))]
struct Job {
    user_id: String,
    id: String,
    status: String,
}

fn main() {}

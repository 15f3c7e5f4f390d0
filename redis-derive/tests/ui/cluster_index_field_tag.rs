use redis_runtime::RedisEntity;

// Tagged by user, with an index outside that tag: the fix puts the user's
// tag in the index key, or pins the type.
#[derive(RedisEntity)]
#[redis(cluster, key = "job:{{{user_id}}}:{id}")]
#[redis(index(key = "jobs:status:{status}"))]
struct Job {
    user_id: String,
    id: String,
    status: String,
}

fn main() {}

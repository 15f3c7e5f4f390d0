use redis_runtime::RedisEntity;

// One stream for all jobs cannot be in the slot of every user's jobs.
#[derive(RedisEntity)]
#[redis(cluster, key = "job:{{{user_id}}}:{id}", stream = "jobs:stream")]
struct Job {
    user_id: String,
    id: String,
}

fn main() {}

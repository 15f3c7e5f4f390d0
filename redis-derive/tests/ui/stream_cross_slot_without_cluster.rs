use redis_runtime::RedisEntity;

// Without `cluster` the entry is appended in the create: nothing to defer.
#[derive(RedisEntity)]
#[redis(key = "job:{id}", stream = "jobs:stream", stream_cross_slot)]
struct Job {
    id: String,
}

fn main() {}

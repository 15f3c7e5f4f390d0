use redis_runtime::RedisEntity;

// Without `cluster` every index is written in the write's own step.
#[derive(RedisEntity)]
#[redis(key = "job:{id}")]
#[redis(index(key = "jobs:status:{status}", cross_slot))]
struct Job {
    id: String,
    status: String,
}

fn main() {}

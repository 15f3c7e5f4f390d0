use redis_runtime::RedisEntity;

// The index carries the entity's tag already: `cross_slot` is not needed.
#[derive(RedisEntity)]
#[redis(cluster, key = "job:{{jobs}}:{id}")]
#[redis(index(key = "jobs:{{jobs}}:status:{status}", cross_slot))]
struct Job {
    id: String,
    status: String,
}

fn main() {}

use redis_runtime::RedisEntity;

// The stream carries the type's tag already: nothing to defer.
#[derive(RedisEntity)]
#[redis(key = "job:{{jobs}}:{id}", cluster, stream = "jobs:{{jobs}}:stream", stream_cross_slot)]
struct Job {
    id: String,
}

fn main() {}

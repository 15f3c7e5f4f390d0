use redis_runtime::RedisEntity;

#[derive(RedisEntity)]
#[redis(key = "job:{id}", cluster, stream = "jobs:stream", stream_cross_slot = true)]
struct Job {
    id: String,
}

fn main() {}

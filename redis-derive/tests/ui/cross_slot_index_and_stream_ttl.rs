// A type that expires cannot keep a `cross_slot` index or a
// `stream_cross_slot` stream: both mistakes are reported in one compile.
use redis_runtime::RedisEntity;

#[derive(RedisEntity)]
#[redis(cluster, key = "job:{id}", ttl = "1d", stream = "jobs:stream", stream_cross_slot)]
#[redis(index(key = "jobs:status:{status}", cross_slot))]
struct Job {
    id: String,
    status: String,
}

fn main() {}

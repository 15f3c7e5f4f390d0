use redis_runtime::RedisEntity;

// No tag: the stream is `stream_cross_slot`, but an index is still in the
// write, so the key needs a tag (the stream is no longer among the keys).
#[derive(RedisEntity)]
#[redis(cluster, key = "job:{id}", stream = "jobs:stream", stream_cross_slot)]
#[redis(index(key = "jobs:status:{status}"))]
struct Job {
    id: String,
    status: String,
}

// No tag, every index `cross_slot`, but the stream in the write.
#[derive(RedisEntity)]
#[redis(cluster, key = "run:{id}", stream = "runs:stream")]
#[redis(index(key = "runs:status:{status}", cross_slot))]
struct Run {
    id: String,
    status: String,
}

// No tag, an index and the stream both in the write: both can move out.
#[derive(RedisEntity)]
#[redis(cluster, key = "task:{id}", stream = "tasks:stream")]
#[redis(index(key = "tasks:status:{status}"))]
struct Task {
    id: String,
    status: String,
}

fn main() {}

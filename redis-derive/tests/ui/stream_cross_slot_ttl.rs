use redis_runtime::RedisEntity;

// A write that defers the entry keeps no TTL registry: the type cannot
// expire. Reported for a `ttl` and for an `expires_at` field.
#[derive(RedisEntity)]
#[redis(key = "job:{id}", cluster, ttl = "1h", stream = "jobs:stream", stream_cross_slot)]
struct Job {
    id: String,
}

#[derive(RedisEntity)]
#[redis(key = "run:{{runs}}:{id}", cluster, stream = "runs:stream", stream_cross_slot)]
struct Run {
    id: String,
    #[redis(expires_at)]
    deadline: i64,
}

fn main() {}

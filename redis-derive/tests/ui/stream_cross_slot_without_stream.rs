use redis_runtime::RedisEntity;

// No stream to append to: reported at the flag, with or without `cluster`,
// together with the other mistakes of the type (here `stream_maxlen`).
#[derive(RedisEntity)]
#[redis(key = "job:{id}", cluster, stream_cross_slot, stream_maxlen = 100)]
struct Job {
    id: String,
}

#[derive(RedisEntity)]
#[redis(key = "run:{id}", stream_cross_slot)]
struct Run {
    id: String,
}

fn main() {}

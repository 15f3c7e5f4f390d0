use redis_runtime::RedisEntity;

// A set index without a hash tag: Redis Cluster hashes the whole key.
#[derive(RedisEntity)]
#[redis(cluster, key = "job:{{jobs}}:{id}")]
#[redis(index(key = "jobs:status:{status}"))]
struct Job {
    id: String,
    status: String,
}

fn main() {}

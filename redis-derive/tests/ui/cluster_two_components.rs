use redis_runtime::RedisEntity;

// Both keys outside the pinned slot are reported in one compile.
#[derive(RedisEntity)]
#[redis(cluster, key = "job:{{jobs}}:{id}", stream = "jobs:stream")]
#[redis(index(key = "jobs:status:{status}"))]
struct Job {
    id: String,
    status: String,
}

fn main() {}

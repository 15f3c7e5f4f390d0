use redis_runtime::RedisEntity;

#[derive(RedisEntity)]
#[redis(cluster, key = "job:{id}")]
#[redis(index(key = "jobs:status:{status}", cross_slot = true))]
struct Job {
    id: String,
    status: String,
}

fn main() {}

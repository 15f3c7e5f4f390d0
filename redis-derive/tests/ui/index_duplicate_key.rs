use redis_runtime::RedisEntity;

#[derive(RedisEntity)]
#[redis(key = "job:{id}")]
#[redis(index(key = "jobs:status:{status}"))]
#[redis(index(key = "jobs:status:{status}", name = "by_state"))]
struct Job {
    id: String,
    status: String,
}

fn main() {}

use redis_runtime::RedisEntity;

#[derive(RedisEntity)]
#[redis(key = "job:{id}", index(key = "jobs:owner:{owner}"))]
struct Job {
    id: String,
    owner: Option<String>,
}

fn main() {}

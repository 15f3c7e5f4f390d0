use redis_runtime::RedisEntity;

#[derive(RedisEntity)]
#[redis(key = "job:{id}", index(key = "jobs:state:{state}"))]
struct Job {
    id: String,
    status: String,
}

fn main() {}

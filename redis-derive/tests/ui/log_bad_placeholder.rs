use redis_runtime::RedisEntity;

#[derive(RedisEntity)]
#[redis(key = "job:{id}")]
#[redis(log(name = "output", key = "job:{user_id}:output"))]
struct Job {
    id: String,
    user_id: String,
}

fn main() {}

use redis_runtime::RedisEntity;

#[derive(RedisEntity)]
#[redis(key = "job:{id}")]
#[redis(log(key = "job:{id}:output"))]
#[redis(log(name = "output"))]
struct Job {
    id: String,
}

fn main() {}

use redis_runtime::RedisEntity;

#[derive(RedisEntity)]
#[redis(key = "job:{id}")]
#[redis(log(name = "output", key = "job:{id}", ttl = "24h"))]
struct Job {
    id: String,
    command: String,
}

fn main() {}

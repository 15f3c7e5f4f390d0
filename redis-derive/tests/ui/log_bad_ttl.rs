use redis_runtime::RedisEntity;

#[derive(RedisEntity)]
#[redis(key = "job:{id}")]
#[redis(log(name = "output", key = "job:{id}:output", ttl = "one day", max_len = 0, color = "red"))]
struct Job {
    id: String,
}

fn main() {}

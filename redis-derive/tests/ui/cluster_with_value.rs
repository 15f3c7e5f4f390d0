use redis_runtime::RedisEntity;

#[derive(RedisEntity)]
#[redis(cluster = true, key = "job:{{jobs}}:{id}")]
struct Job {
    id: String,
}

fn main() {}

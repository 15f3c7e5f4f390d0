use redis_runtime::RedisEntity;

#[derive(RedisEntity)]
#[redis(key = "job:{id}", stream_maxlen = 1000)]
struct Job {
    id: String,
}

fn main() {}

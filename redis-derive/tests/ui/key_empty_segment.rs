use redis_runtime::RedisEntity;

#[derive(RedisEntity)]
#[redis(key = "m32:{id}:")]
struct Measurement {
    id: String,
}

fn main() {}

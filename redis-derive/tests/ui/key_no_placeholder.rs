use redis_runtime::RedisEntity;

#[derive(RedisEntity)]
#[redis(key = "user")]
struct User {
    id: String,
}

fn main() {}

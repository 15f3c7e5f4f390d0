use redis_runtime::RedisEntity;

#[derive(RedisEntity)]
#[redis(key = "")]
struct User {
    id: String,
}

fn main() {}

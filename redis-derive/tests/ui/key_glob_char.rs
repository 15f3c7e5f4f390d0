use redis_runtime::RedisEntity;

#[derive(RedisEntity)]
#[redis(key = "user*:{id}")]
struct User {
    id: String,
}

fn main() {}

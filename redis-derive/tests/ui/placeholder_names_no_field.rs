use redis_runtime::RedisEntity;

#[derive(RedisEntity)]
#[redis(key = "user:{user_id}")]
struct User {
    id: String,
    name: String,
}

fn main() {}

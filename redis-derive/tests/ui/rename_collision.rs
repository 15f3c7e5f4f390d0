use redis_runtime::RedisEntity;

#[derive(RedisEntity)]
#[redis(key = "user:{id}")]
struct User {
    id: String,
    email: String,
    #[redis(rename = "email")]
    contact: String,
}

fn main() {}

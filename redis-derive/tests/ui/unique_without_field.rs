use redis_runtime::RedisEntity;

#[derive(RedisEntity)]
#[redis(key = "user:{id}", unique(key = "users:by_email"))]
struct User {
    id: String,
    email: String,
}

fn main() {}

use redis_runtime::RedisEntity;

#[derive(RedisEntity)]
#[redis(key = "user:{id}", rename_all = "camel_case")]
struct User {
    id: String,
    created_at: i64,
}

fn main() {}

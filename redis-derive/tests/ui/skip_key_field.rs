use redis_runtime::RedisEntity;

#[derive(RedisEntity)]
#[redis(key = "user:{id}")]
struct User {
    #[redis(skip)]
    id: String,
    name: String,
}

fn main() {}

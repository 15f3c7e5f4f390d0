use redis_runtime::RedisEntity;

#[derive(RedisEntity)]
#[redis(key = "user:{id}")]
struct User {
    id: String,
    #[redis(skip = true)]
    cache: u32,
}

fn main() {}

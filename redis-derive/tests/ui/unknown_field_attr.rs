use redis_runtime::RedisEntity;

#[derive(RedisEntity)]
#[redis(key = "user:{id}")]
struct User {
    id: String,
    #[redis(serde)]
    tags: String,
}

fn main() {}

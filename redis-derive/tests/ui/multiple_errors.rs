use redis_runtime::RedisEntity;

#[derive(RedisEntity)]
#[redis(key = "user:{uid}", ttl = "forever", rename_all = "camel")]
struct User {
    id: String,
    #[redis(rename = "")]
    name: String,
    #[redis(skip = true)]
    cache: u32,
}

fn main() {}

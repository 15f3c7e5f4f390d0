use redis_runtime::RedisEntity;

#[derive(RedisEntity)]
#[redis(key = "token:{id}", ttl = "1h")]
struct Token {
    id: String,
    #[redis(expires_at)]
    expires_at: i64,
}

fn main() {}

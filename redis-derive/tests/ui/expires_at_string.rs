use redis_runtime::RedisEntity;

#[derive(RedisEntity)]
#[redis(key = "token:{id}")]
struct Token {
    id: String,
    #[redis(expires_at)]
    valid_until: String,
}

fn main() {}

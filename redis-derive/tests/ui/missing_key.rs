use redis_runtime::RedisEntity;

#[derive(RedisEntity)]
#[redis(ttl = "1h")]
struct Session {
    id: String,
}

fn main() {}

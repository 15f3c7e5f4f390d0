use redis_runtime::RedisEntity;

#[derive(RedisEntity)]
#[redis(key = "session:{id}", ttl = "0s")]
struct Session {
    id: String,
}

fn main() {}

use redis_runtime::RedisEntity;

#[derive(RedisEntity)]
#[redis(key = "session:{id}", ttl = "1h")]
#[redis(ttl = "2h")]
struct Session {
    id: String,
}

fn main() {}

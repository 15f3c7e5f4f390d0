use redis_runtime::RedisEntity;

#[derive(RedisEntity)]
#[redis(key = "session:{id}", ttl = 5)]
struct Session {
    id: String,
}

fn main() {}

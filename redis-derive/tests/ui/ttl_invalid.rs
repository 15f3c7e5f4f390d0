use redis_runtime::RedisEntity;

#[derive(RedisEntity)]
#[redis(key = "session:{id}", ttl = "a week")]
struct Session {
    id: String,
}

fn main() {}

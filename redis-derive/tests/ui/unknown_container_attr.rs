use redis_runtime::RedisEntity;

#[derive(RedisEntity)]
#[redis(key = "session:{id}", expire = "7d")]
struct Session {
    id: String,
}

fn main() {}

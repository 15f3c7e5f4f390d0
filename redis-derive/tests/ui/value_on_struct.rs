use redis_runtime::RedisValue;

#[derive(RedisValue)]
struct Status {
    name: String,
}

fn main() {}

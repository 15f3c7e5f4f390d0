use redis_runtime::RedisValue;

#[derive(RedisValue)]
enum Status {
    Active,
    Failed(String),
}

fn main() {}

use redis_runtime::RedisValue;

#[derive(RedisValue)]
enum Status {
    Active,
    #[redis(rename = "on hold")]
    OnHold,
}

fn main() {}

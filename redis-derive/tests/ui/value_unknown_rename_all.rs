use redis_runtime::RedisValue;

#[derive(RedisValue)]
#[redis(rename_all = "Title Case")]
enum Status {
    Active,
    Disabled,
}

fn main() {}

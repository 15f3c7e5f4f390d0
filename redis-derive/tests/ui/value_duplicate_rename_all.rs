use redis_runtime::RedisValue;

#[derive(RedisValue)]
#[redis(rename_all = "snake_case", rename_all = "kebab-case")]
enum Status {
    Active,
    Disabled,
}

fn main() {}

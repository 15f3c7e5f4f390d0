use redis_runtime::RedisValue;

#[derive(RedisValue)]
#[redis(key = "status:{id}", rename_all = "snake_case")]
enum Status {
    Active,
    Disabled,
}

fn main() {}

use redis_runtime::RedisValue;

#[derive(RedisValue)]
enum Status {
    Active,
    #[redis(rename = done)]
    Finished,
}

fn main() {}

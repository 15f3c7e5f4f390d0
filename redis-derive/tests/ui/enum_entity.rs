use redis_runtime::RedisEntity;

#[derive(RedisEntity)]
#[redis(key = "status:{id}")]
enum Status {
    Active,
    Disabled,
}

fn main() {}

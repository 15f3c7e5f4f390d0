use redis_runtime::RedisEntity;

#[derive(RedisEntity)]
#[redis(key = "config:{id}")]
struct Config;

fn main() {}

use redis_runtime::RedisEntity;

#[derive(RedisEntity)]
#[redis(key = "reading:{value}")]
struct Reading {
    value: f64,
}

fn main() {}

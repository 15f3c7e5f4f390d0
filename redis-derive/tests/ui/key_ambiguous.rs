use redis_runtime::RedisEntity;

#[derive(RedisEntity)]
#[redis(key = "name:{a}-{b}")]
struct Name {
    a: String,
    b: String,
}

fn main() {}

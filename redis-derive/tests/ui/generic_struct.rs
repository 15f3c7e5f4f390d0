use redis_runtime::RedisEntity;

#[derive(RedisEntity)]
#[redis(key = "user:{id}")]
struct User<T> {
    id: String,
    extra: T,
}

fn main() {}

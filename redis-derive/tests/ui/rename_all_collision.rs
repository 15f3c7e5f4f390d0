use redis_runtime::RedisEntity;

#[derive(RedisEntity)]
#[redis(key = "user:{id}", rename_all = "camelCase")]
struct User {
    id: String,
    phone_2: String,
    phone2: String,
}

fn main() {}

use redis_runtime::RedisEntity;

#[derive(RedisEntity)]
#[redis(key = "user:{id}")]
struct User {
    id: String,
    #[redis(alias = "")]
    email: String,
    #[redis(alias = "nick")]
    #[redis(skip)]
    nickname: String,
}

fn main() {}

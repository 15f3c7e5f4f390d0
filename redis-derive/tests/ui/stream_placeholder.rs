use redis_runtime::RedisEntity;

#[derive(RedisEntity)]
#[redis(key = "job:{id}", stream = "jobs:{user_id}:stream")]
struct Job {
    id: String,
    user_id: String,
}

fn main() {}

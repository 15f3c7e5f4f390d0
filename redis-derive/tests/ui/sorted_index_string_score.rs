use redis_runtime::RedisEntity;

#[derive(RedisEntity)]
#[redis(key = "job:{id}", sorted_index(key = "jobs:user:{user_id}", score = "created_at"))]
struct Job {
    id: String,
    user_id: String,
    created_at: String,
}

fn main() {}

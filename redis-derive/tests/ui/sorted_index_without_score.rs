use redis_runtime::RedisEntity;

#[derive(RedisEntity)]
#[redis(key = "job:{id}", sorted_index(key = "jobs:user:{user_id}"))]
struct Job {
    id: String,
    user_id: String,
    created_at: i64,
}

fn main() {}

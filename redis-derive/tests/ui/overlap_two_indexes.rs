use redis_runtime::RedisEntity;

#[derive(RedisEntity)]
#[redis(key = "task:{id}")]
#[redis(index(key = "tasks:{owner}"))]
#[redis(index(key = "tasks:{queue}"))]
struct Task {
    id: String,
    owner: String,
    queue: String,
}

fn main() {}

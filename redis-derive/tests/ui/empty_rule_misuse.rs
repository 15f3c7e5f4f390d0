use redis_runtime::RedisEntity;

#[derive(RedisEntity)]
#[redis(key = "job:{id}")]
struct Job {
    id: String,
    // Only an Option has a `None` to read an empty value as.
    #[redis(empty_is_none)]
    attempts: i64,
    // One rule or the other.
    #[redis(empty_is_none, empty_is_some)]
    note: Option<String>,
    #[redis(empty_is_some = true)]
    finished_at: Option<i64>,
}

fn main() {}

use redis_runtime::RedisValue;

// Reads ignore ASCII case, so names and aliases must differ in more than case.
#[derive(RedisValue)]
enum Status {
    Pending,
    #[redis(alias = "done", alias = "finished")]
    Completed,
    #[redis(alias = "DONE")]
    Failed,
    #[redis(alias = "completed")]
    Archived,
    #[redis(rename = "PENDING")]
    Waiting,
}

fn main() {}

use redis_runtime::RedisValue;

#[derive(RedisValue)]
enum Status {
    Done,
    #[redis(rename = "done")]
    Finished,
}

fn main() {}

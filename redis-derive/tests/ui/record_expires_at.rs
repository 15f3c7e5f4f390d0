use redis_runtime::RedisRecord;

#[derive(RedisRecord)]
struct Event {
    kind: String,
    #[redis(expires_at)]
    at: i64,
}

fn main() {}

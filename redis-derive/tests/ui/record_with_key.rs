use redis_runtime::RedisRecord;

#[derive(RedisRecord)]
#[redis(key = "event:{id}")]
struct Event {
    id: String,
    kind: String,
}

fn main() {}

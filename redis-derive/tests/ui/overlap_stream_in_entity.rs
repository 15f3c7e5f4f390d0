use redis_runtime::RedisEntity;

#[derive(RedisEntity)]
#[redis(key = "ev:{id}", stream = "ev:stream")]
struct Event {
    id: String,
    kind: String,
}

fn main() {}

use redis_runtime::RedisEntity;

// A field used in an index key (checked by the entity and by its patch) is
// reported once, on its type.
#[derive(RedisEntity)]
#[redis(key = "reading:{id}", index(key = "readings:by_value:{value}"))]
struct Reading {
    id: String,
    value: f32,
}

fn main() {}

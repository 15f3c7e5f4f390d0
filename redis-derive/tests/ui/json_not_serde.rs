use redis_runtime::RedisEntity;

struct Settings {
    theme: String,
}

// Written by the entity and by its patch, read back: reported once per
// missing serde trait, on the field's type.
#[derive(RedisEntity)]
#[redis(key = "user:{id}")]
struct User {
    id: String,
    #[redis(json)]
    settings: Settings,
}

fn main() {}

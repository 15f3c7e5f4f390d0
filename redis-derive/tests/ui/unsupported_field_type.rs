use std::collections::HashMap;

use redis_runtime::RedisEntity;

#[derive(RedisEntity)]
#[redis(key = "user:{id}")]
struct User {
    id: String,
    settings: HashMap<String, String>,
}

fn main() {}

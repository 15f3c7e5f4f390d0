use redis_runtime::{RedisEntity, RedisRecord};

// Every way to misplace `version`, reported in one compile.
#[derive(RedisEntity)]
#[redis(key = "doc:{id}")]
struct Doc {
    id: String,
    #[redis(version)]
    version: u64,
    #[redis(version)]
    revision: u64,
}

#[derive(RedisEntity)]
#[redis(key = "page:{id}")]
struct Page {
    #[redis(version)]
    id: u64,
}

#[derive(RedisEntity)]
#[redis(key = "note:{id}")]
struct Note {
    id: String,
    #[redis(version)]
    version: Option<u64>,
}

#[derive(RedisEntity)]
#[redis(key = "tag:{id}")]
struct Tag {
    id: String,
    #[redis(version)]
    version: String,
}

#[derive(RedisEntity)]
#[redis(key = "draft:{id}")]
struct Draft {
    id: String,
    #[redis(version, skip)]
    version: u64,
}

#[derive(RedisRecord)]
struct Event {
    #[redis(version)]
    version: u64,
}

fn main() {}

use std::collections::BTreeSet;

use redis_runtime::RedisEntity;

// Stored, patched, read and used for unique lookups: reported once.
#[derive(RedisEntity)]
#[redis(key = "team:{id}", unique(key = "teams:by_members", field = "members"))]
struct Team {
    id: String,
    members: BTreeSet<String>,
}

fn main() {}

use redis_runtime::RedisEntity;

// A unique value is checked and claimed in the write itself, so a unique
// index cannot leave the entity's slot: pinned to one slot, or tagged by a
// field.
#[derive(RedisEntity)]
#[redis(cluster, key = "user:{{users}}:{id}")]
#[redis(unique(key = "users:by_email", field = "email", cross_slot))]
struct User {
    id: String,
    email: String,
}

#[derive(RedisEntity)]
#[redis(cluster, key = "member:{{{org_id}}}:{id}")]
#[redis(unique(key = "members:by_email", field = "email", cross_slot))]
struct Member {
    org_id: String,
    id: String,
    email: String,
}

fn main() {}

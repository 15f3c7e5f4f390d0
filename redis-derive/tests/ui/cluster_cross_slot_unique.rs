use redis_runtime::RedisEntity;

// A cross-slot unique value is claimed in one hash for the whole type, so
// a `cross_slot` unique key must be constant: a key with a placeholder
// would need a claim in each hash it renders.
#[derive(RedisEntity)]
#[redis(cluster, key = "member:{{{org_id}}}:{id}")]
#[redis(unique(key = "members:{org_id}:by_email", field = "email", cross_slot))]
struct Member {
    org_id: String,
    id: String,
    email: String,
}

// A constant key hashed whole that holds a brace: its claims hash cannot
// be put in its slot.
#[derive(RedisEntity)]
#[redis(cluster, key = "user:{{users}}:{id}")]
#[redis(unique(key = "users:{{}}:by_email", field = "email", cross_slot))]
struct User {
    id: String,
    email: String,
}

// On a type that expires a constant key would be refused too: not offered.
#[derive(RedisEntity)]
#[redis(cluster, key = "team:{{{org_id}}}:{id}", ttl = "1h")]
#[redis(unique(key = "teams:{org_id}:by_slug", field = "slug", cross_slot))]
struct Team {
    org_id: String,
    id: String,
    slug: String,
}

fn main() {}

use redis_runtime::RedisEntity;

// No tag, and neither index is `cross_slot`: both may be, the unique one
// because its key is constant; each costs something else.
#[derive(RedisEntity)]
#[redis(cluster, key = "user:{id}")]
#[redis(index(key = "users:team:{team}"))]
#[redis(unique(key = "users:by_email", field = "email"))]
struct User {
    id: String,
    team: String,
    email: String,
}

fn main() {}

use redis_runtime::RedisEntity;

#[derive(RedisEntity)]
#[redis(cluster, key = "user:{{users}}:{id}")]
#[redis(unique(key = "users:by_email", field = "email"))]
struct User {
    id: String,
    email: String,
}

fn main() {}

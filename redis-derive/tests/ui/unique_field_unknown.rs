use redis_runtime::RedisEntity;

// A misspelled `field`: the error names the setting and lists the fields.
#[derive(RedisEntity)]
#[redis(key = "user:{id}", unique(key = "users:by_email", field = "emial"))]
struct User {
    id: String,
    email: String,
}

fn main() {}

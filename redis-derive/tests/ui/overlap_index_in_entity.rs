use redis_runtime::RedisEntity;

#[derive(RedisEntity)]
#[redis(key = "acct:{id}")]
#[redis(index(key = "acct:{team}"))]
struct Account {
    id: String,
    team: String,
}

fn main() {}

use redis_runtime::RedisEntity;

#[derive(RedisEntity)]
#[redis(key = "cj:{id}")]
#[redis(unique(key = "cj:by_slot", field = "slot"))]
struct CronJob {
    id: String,
    slot: String,
}

fn main() {}

use redis_runtime::RedisEntity;

// `by_team` (a set index) generates the cursor page `by_team_after`.
#[derive(RedisEntity)]
#[redis(key = "member:{id}")]
#[redis(index(key = "members:team:{team}"))]
#[redis(index(key = "members:size:{size}", name = "by_team_after"))]
struct Member {
    id: String,
    team: String,
    size: u32,
}

// `by_owner` (a sorted index) generates the filtered query `by_owner_where`.
#[derive(RedisEntity)]
#[redis(key = "task:{id}")]
#[redis(sorted_index(key = "tasks:owner:{owner}", score = "at"))]
#[redis(index(key = "tasks:state:{state}", name = "by_owner_where"))]
struct Task {
    id: String,
    owner: String,
    state: String,
    at: i64,
}

fn main() {}

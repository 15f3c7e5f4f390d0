use redis_runtime::RedisEntity;

// `get` is a method every entity has.
#[derive(RedisEntity)]
#[redis(key = "user:{id}", index(key = "users:team:{team}", name = "get"))]
struct User {
    id: String,
    team: String,
}

// `by_team` generates `by_team_count`, which the second index is named.
#[derive(RedisEntity)]
#[redis(key = "member:{id}")]
#[redis(index(key = "members:team:{team}"))]
#[redis(index(key = "members:size:{size}", name = "by_team_count"))]
struct Member {
    id: String,
    team: String,
    size: u32,
}

// A default name (`by_team_count`, from the field) is caught too, as is an
// index method that is a log's accessor.
#[derive(RedisEntity)]
#[redis(key = "squad:{id}")]
#[redis(sorted_index(key = "squads:team:{team}", score = "size"))]
#[redis(index(key = "squads:count:{team_count}"))]
#[redis(log(name = "output", key = "squad:{id}:output"))]
#[redis(unique(key = "squads:by_slug", field = "slug", name = "output_log"))]
struct Squad {
    id: String,
    team: String,
    team_count: u32,
    size: u32,
    slug: String,
}

fn main() {}

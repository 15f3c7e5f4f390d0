use redis_runtime::RedisEntity;

// A type pinned to `{carts}` whose index misspells the tag as `{cart}`:
// the suggestion replaces the tag rather than keeping `cart` in the key.
#[derive(RedisEntity)]
#[redis(cluster, key = "cart:{{carts}}:{id}")]
#[redis(index(key = "carts:{{cart}}:user:{user_id}"))]
struct Cart {
    id: String,
    user_id: String,
}

fn main() {}

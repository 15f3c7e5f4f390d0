use redis_runtime::RedisEntity;

// A unique float: `0.0` and `-0.0` would be two values.
#[derive(RedisEntity)]
#[redis(key = "product:{id}", unique(key = "products:by_price", field = "price"))]
struct Product {
    id: String,
    price: f64,
}

fn main() {}

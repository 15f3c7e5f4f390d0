use redis_runtime::RedisEntity;

// An alias is read as the field: it cannot be another field's name or alias.
#[derive(RedisEntity)]
#[redis(key = "user:{id}", rename_all = "camelCase")]
struct User {
    id: String,
    display_name: String,
    #[redis(alias = "displayName")]
    nickname: Option<String>,
    #[redis(alias = "mail", alias = "e_mail")]
    email: String,
    #[redis(alias = "mail")]
    backup_email: Option<String>,
}

fn main() {}

//! The operator command for the main example's entity types:
//!
//! ```text
//! REDIS_URL=redis://127.0.0.1:6379 cargo run --bin keyspace -- verify
//! cargo run --bin keyspace -- --help
//! ```

#[allow(dead_code)]
#[path = "model.rs"]
mod model;

use model::{GitProvider, Job, Session, User};

fn main() -> std::process::ExitCode {
    redis_runtime::admin::main(redis_runtime::keyspace_ops!(
        User,
        Session,
        GitProvider,
        Job
    ))
}

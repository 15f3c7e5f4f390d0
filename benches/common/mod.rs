//! The timing harness the side-by-side benches share: run a workload
//! sequentially or over many tasks, and take medians over rounds.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

/// Runs `op(i)` for `i` in `0..total`: sequentially (`tasks` = 1), or
/// spread over `tasks` tasks taking every `tasks`-th `i`; returns ops/s.
pub(crate) async fn measure<F, Fut>(tasks: u64, total: u64, op: F) -> f64
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut i = t;
                while i < total {
                    op(i).await;
                    i += tasks;
                }
            })
        })
        .collect();
    for h in handles {
        h.await.expect("bench task");
    }
    total as f64 / started.elapsed().as_secs_f64()
}

/// One workload: called with the iteration number.
pub(crate) type Op = Arc<dyn Fn(u64) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// A workload from `f`, which gets its own clone of `conn` (a client or a
/// connection) and the iteration number on every call.
pub(crate) fn op<C, F, Fut>(conn: &C, f: F) -> Op
where
    C: Clone + Send + Sync + 'static,
    F: Fn(C, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let conn = conn.clone();
    Arc::new(move |i| Box::pin(f(conn.clone(), i)))
}

/// The median (the mean of the middle two for an even count; NaN for none).
pub(crate) fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        len if len % 2 == 1 => values[len / 2],
        len => (values[len / 2 - 1] + values[len / 2]) / 2.0,
    }
}

/// The number in environment variable `name`, or `default` when unset;
/// panics naming the variable when it is not a whole number.
// Not every bench takes its size from the environment.
#[allow(dead_code)]
pub(crate) fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v}: not a whole number")),
        Err(_) => default,
    }
}

//! A hook that sees every operation: its name, key *pattern*, duration and
//! outcome. Wire it to Prometheus, StatsD or logs; the default does nothing.

use std::time::Duration;

/// How an operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It succeeded.
    Success,
    /// It failed with the error of this [`crate::Error::code`].
    Failure {
        /// The stable error code, e.g. `"STORAGE_TIMEOUT"`.
        code: &'static str,
    },
}

/// One finished operation, as reported to a [`Metrics`] hook.
///
/// Only the key *pattern* is reported (`user:{id}`, never `user:42`), so
/// label cardinality stays bounded and no user data leaks into metrics.
#[derive(Debug, Clone, Copy)]
pub struct OperationEvent<'a> {
    /// The operation, e.g. `"user.create"`.
    pub operation: &'a str,
    /// The key pattern it worked on, e.g. `"user:{id}"` (empty if none).
    pub key_pattern: &'a str,
    /// Wall time from start to result, including any wait for a reconnect.
    pub duration: Duration,
    /// Success or the error code.
    pub outcome: Outcome,
}

/// Receives an [`OperationEvent`] after every operation. Implementations
/// must be cheap and must not block: they run on the caller's task.
///
/// Any `Fn(&OperationEvent)` closure is a `Metrics`:
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use std::sync::Arc;
/// use redis_runtime::metrics::{Metrics, OperationEvent};
///
/// let calls = Arc::new(AtomicU64::new(0));
/// let counter = calls.clone();
/// let hook = move |_event: &OperationEvent<'_>| {
///     counter.fetch_add(1, Ordering::Relaxed);
/// };
/// let _boxed: Arc<dyn Metrics> = Arc::new(hook);
/// ```
pub trait Metrics: Send + Sync + 'static {
    /// Called once per finished operation.
    fn record(&self, event: &OperationEvent<'_>);
}

impl<F> Metrics for F
where
    F: Fn(&OperationEvent<'_>) + Send + Sync + 'static,
{
    fn record(&self, event: &OperationEvent<'_>) {
        self(event)
    }
}

/// The default hook: records nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoMetrics;

impl Metrics for NoMetrics {
    fn record(&self, _event: &OperationEvent<'_>) {}
}

//! Waiting on a multi-process test topology (a cluster, a Sentinel
//! topology): the limits both give their processes and the one poll loop.

use std::time::{Duration, Instant};

/// How long a topology gets to come together (nodes meet, replicas sync,
/// every node agrees).
pub(super) const CONVERGE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a failover (manual or after a crash) gets to complete.
pub(super) const FAILOVER_WAIT: Duration = Duration::from_secs(20);
/// How often a wait looks again.
const POLL: Duration = Duration::from_millis(25);

/// A topology a test waits on, and what a timeout's message says of it.
pub(super) trait Awaited {
    /// What names it (`cluster [7001, …]`, `master "m"`).
    fn name(&self) -> String;

    /// The end of every process's log.
    fn log_tails(&self) -> String;

    /// Polls `check` until it succeeds, panicking after `limit` with
    /// `what`, the last thing `check` saw and every process's log tail.
    fn wait_until<T>(
        &self,
        limit: Duration,
        what: &str,
        check: impl FnMut() -> Result<T, String>,
    ) -> T {
        poll_until(limit, check).unwrap_or_else(|seen| {
            panic!(
                "timed out after {limit:?} waiting for {what} ({}); last seen: {seen}; logs: {}",
                self.name(),
                self.log_tails()
            )
        })
    }
}

/// Calls `check` until it succeeds; after `limit`, the last thing it saw.
fn poll_until<T>(
    limit: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> Result<T, String> {
    let deadline = Instant::now() + limit;
    loop {
        let seen = match check() {
            Ok(value) => return Ok(value),
            Err(seen) => seen,
        };
        if Instant::now() > deadline {
            return Err(seen);
        }
        std::thread::sleep(POLL);
    }
}

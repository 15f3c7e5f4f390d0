//! The one token format of the protocol: a lease holder's and a unique
//! claim's token, unique across processes and calls.

/// A token no other lease or claim shares: this process (`host-pid`) and
/// a counter.
pub(crate) fn fresh() -> String {
    format!("{}-{}", crate::identity::process_name(), next())
}

#[cfg(not(test))]
fn next() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// In unit tests, counted per thread (each test has its own), so a test
/// knows the tokens its calls carry: the first is `0`.
#[cfg(test)]
fn next() -> u64 {
    thread_local! {
        static NEXT: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }
    NEXT.with(|next| next.replace(next.get() + 1))
}

/// The `n`th token this thread made (from 0), for tests.
#[cfg(test)]
pub(crate) fn nth(n: u64) -> String {
    format!("{}-{n}", crate::identity::process_name())
}

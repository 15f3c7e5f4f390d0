//! The one token format of the protocol: a lease holder's and a unique
//! claim's token, unique across processes and calls.

use std::sync::atomic::{AtomicU64, Ordering};

/// A token no other lease or claim shares: this process (`host-pid`) and
/// a counter.
pub(crate) fn fresh() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        crate::identity::process_name(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

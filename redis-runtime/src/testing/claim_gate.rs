//! Gates that hold one entity's write at a chosen step on a Redis Cluster,
//! so that a test can act in exactly that window: between claiming its
//! `cross_slot` unique values and writing them (see
//! `cross_slot::unique_claims`), or between claiming its pending index moves
//! and applying them (see `cross_slot::pending`).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use tokio::sync::Notify;

/// The gates set, by step and member id.
type Gates = HashMap<(Step, String), Arc<Shared>>;

static GATES: LazyLock<Mutex<Gates>> = LazyLock::new(|| Mutex::new(HashMap::new()));

/// Where a gate holds a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Step {
    /// After its `cross_slot` unique claims, before the write itself.
    Claimed,
    /// After the claim of its pending index moves, before the moves.
    Moving,
}

#[derive(Default)]
struct Shared {
    claimed: Notify,
    resume: Notify,
}

/// Holds the next write of the entity `member` (its id, as in its index
/// entries) that claims `cross_slot` unique values on a Redis Cluster,
/// after its claims and before it sends the write again with them, until
/// [`ClaimGate::open`]. For tests of what happens when a claim is taken
/// back in that window; one gate per member at a time.
///
/// ```no_run
/// # async fn demo(client: &redis_runtime::Client) {
/// use redis_runtime::testing::ClaimGate;
///
/// let gate = ClaimGate::hold("u1");
/// // ... start a write of u1 that sets a new email, in a task ...
/// gate.claimed().await;
/// // ... take the email from u1 with another entity's write ...
/// gate.open();
/// # }
/// ```
pub struct ClaimGate {
    at: (Step, String),
    shared: Arc<Shared>,
}

impl ClaimGate {
    /// Sets the gate for `member`'s next claiming write.
    pub fn hold(member: &str) -> ClaimGate {
        Self::set(Step::Claimed, member)
    }

    /// Sets a gate for the next client that claims `member`'s pending
    /// index moves (the writer, or `index::settle`): it stops after the
    /// claim (the lease taken, the record and hash read) and before the
    /// moves. [`claimed`](Self::claimed) waits until it is there.
    pub fn hold_moves(member: &str) -> ClaimGate {
        Self::set(Step::Moving, member)
    }

    fn set(step: Step, member: &str) -> ClaimGate {
        let shared = Arc::new(Shared::default());
        let at = (step, member.to_string());
        lock().insert(at.clone(), shared.clone());
        ClaimGate { at, shared }
    }

    /// Waits until the write has claimed and stopped here.
    pub async fn claimed(&self) {
        self.shared.claimed.notified().await;
    }

    /// Lets the write go on.
    pub fn open(self) {
        lock().remove(&self.at);
        self.shared.resume.notify_one();
    }
}

fn lock() -> std::sync::MutexGuard<'static, Gates> {
    GATES.lock().unwrap_or_else(|e| e.into_inner())
}

/// Called by a write of `member` at `step`: waits at the gate, if one is
/// set.
pub(crate) async fn pass(step: Step, member: &str) {
    // One write stops at a gate: the next one passes.
    let shared = lock().remove(&(step, member.to_string()));
    if let Some(shared) = shared {
        shared.claimed.notify_one();
        shared.resume.notified().await;
    }
}

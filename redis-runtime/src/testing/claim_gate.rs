//! A gate that holds one entity's write between claiming its `cross_slot`
//! unique values and writing them, so that a test can take a value back
//! from the entity in exactly that window (see `index::unique_claims`).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use tokio::sync::Notify;

/// The gates set, by member id.
static GATES: LazyLock<Mutex<HashMap<String, Arc<Shared>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

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
    member: String,
    shared: Arc<Shared>,
}

impl ClaimGate {
    /// Sets the gate for `member`'s next claiming write.
    pub fn hold(member: &str) -> ClaimGate {
        let shared = Arc::new(Shared::default());
        lock().insert(member.to_string(), shared.clone());
        ClaimGate {
            member: member.to_string(),
            shared,
        }
    }

    /// Waits until the write has claimed its values and stopped here.
    pub async fn claimed(&self) {
        self.shared.claimed.notified().await;
    }

    /// Lets the write go on.
    pub fn open(self) {
        lock().remove(&self.member);
        self.shared.resume.notify_one();
    }
}

fn lock() -> std::sync::MutexGuard<'static, HashMap<String, Arc<Shared>>> {
    GATES.lock().unwrap_or_else(|e| e.into_inner())
}

/// Called by a write of `member` after its claims: waits at the gate, if
/// one is set.
pub(crate) async fn pass(member: &str) {
    let shared = lock().get(member).cloned();
    if let Some(shared) = shared {
        shared.claimed.notify_one();
        shared.resume.notified().await;
    }
}

//! How a request reaches Redis and when it is sent again: the owner of
//! the guarantee *once or unknown* (ARCHITECTURE.md). Its rules are
//! stated here and enforced by the types of this module and
//! `Client::run_retrying`, the one loop every request goes through.
//!
//! Every request says what it does where it is built ([`Request`], its
//! [`Effect`]), and one policy applies on one server, behind Sentinel
//! and on a Redis Cluster:
//!
//! 1. **A read** is sent again after any transient failure (a server
//!    state that refused it, a redirect, a refused, dropped or timed-out
//!    connection), with backoff, within the operation deadline. It never
//!    waits for replica acknowledgements.
//! 2. **A write** is sent again only when the server provably did not run
//!    it: `LOADING`, `BUSY`, `MASTERDOWN`, `READONLY`, `TRYAGAIN`,
//!    `CLUSTERDOWN`, `NOREPLICAS`, a `MOVED`/`ASK` redirect, a `NOSCRIPT` of a
//!    just-promoted cluster primary, a connection that was refused or
//!    never found. After it was sent, a dropped connection or a reply that
//!    did not come in time fails the call with
//!    [`Error::outcome_unknown`](crate::Error::outcome_unknown) set; the
//!    caller re-reads.
//! 3. **An idempotent write** is sent again like a read and acknowledged
//!    like a write.
//! 4. **Acknowledged means acknowledged.** With
//!    [`Config::replica_acks`](crate::Config) set, every write and
//!    idempotent write waits for that many replicas (`WAIT`, shared by
//!    the writes that finish together: `acks.rs`) before its call returns; a short count is
//!    `STORAGE_NOT_REPLICATED`. A step that later steps build on (a
//!    `cross_slot` move, a claim, a stream append) is its own request, so
//!    it is acknowledged before the next one is sent, and a record is
//!    released only after what it recorded was acknowledged.
//! 5. **No library below resends.** redis-rs's single-server connection
//!    (`ConnectionManager`) reconnects but never sends a request again;
//!    its cluster connection is built without retries, and `Redirecting`
//!    (`cluster.rs`) follows the redirects itself.

pub(crate) mod acks;
pub(crate) mod cluster;
pub(crate) mod connection;
mod request;

pub use request::{Effect, Payload, Request};

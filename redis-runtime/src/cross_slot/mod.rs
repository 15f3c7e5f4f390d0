//! The `cross_slot` protocol: on a Redis Cluster, index entries, stream
//! entries and unique values kept in step with a write from outside its
//! hash slot. This module owns it; every other doc links here.
//!
//! An index, a stream or a unique hash declared `cross_slot` (or
//! `stream_cross_slot`) may live in another hash slot than its entity,
//! where the entity's write script cannot reach it. The write stays one
//! atomic script in the entity's slot; what it cannot do there it records
//! there, and the client does it just after. On one server and under
//! Sentinel every write is one script and nothing here runs.
//!
//! # Glossary
//!
//! - **pending record** ([`redis_schema::pending_index_key`], a hash in
//!   the entity's slot): what the entity's writes left to do elsewhere:
//!   each index key that may still hold the entity, the stream entries to
//!   append ([`redis_schema::PENDING_STREAM_ENTRY`]), the unique values to
//!   release ([`redis_schema::PENDING_UNIQUE_VALUE`]), and the count of
//!   writes ([`redis_schema::PENDING_WRITES`]).
//! - **lease** ([`redis_schema::pending_index_lease_key`], in the entity's
//!   slot, [`LEASE`](crate::script::LEASE) long): one client at a time
//!   applies an entity's record. Held under a token of the protocol's one
//!   format (`token::fresh`, this process and a counter), which the client
//!   makes whether the write script or the lease script takes the lease.
//! - **round**: take the lease and read the record with the hash, move
//!   the entries, release; repeated while writes came in between. Every
//!   loop of the protocol that can lose a race runs a bounded number of
//!   rounds ([`Retry`]): applying a record, claiming or releasing a value,
//!   sending a write with its claim token.
//! - **move**: `SADD`/`ZADD`/`SREM`/`ZREM` of one index entry, idempotent.
//! - **settle** (`index::settle`): finds records with `SCAN` on every
//!   primary and applies them; for records whose client died.
//! - **unique hash**: the `cross_slot` unique index's one hash (value →
//!   id), the shared layout other services read.
//! - **claims hash** ([`redis_schema::unique_claims_key`], in the unique
//!   hash's slot): a fresh token for each value claimed.
//! - **fence** ([`redis_schema::unique_fence_key`], in the entity's slot):
//!   a counter a write must find unchanged since it read it; raised when
//!   a value is taken from the entity.
//! - **claim token**: the token a write carries to set a value it claimed.
//! - **claim** means only this: taking a unique value for an entity. The
//!   pending record is *leased*, not claimed; `XCLAIM` is the streams'.
//!
//! # The pending record
//!
//! An index key declared `cross_slot` may live in another hash slot than
//! its entity (`jobs:status:queued` beside `job:j7`), where no script of
//! the entity's slot can reach it. So on a cluster the write script
//! records, in the same atomic step as the entity, which entries the write
//! moves: the entity's *pending index key*
//! ([`redis_schema::pending_index_key`], in the entity's slot) lists each
//! index key that may still hold the entity and counts the writes. The
//! record is durable before the write returns; the moves follow:
//!
//! 1. **lease** (one script in the entity's slot): take the record's lease
//!    ([`redis_schema::pending_index_lease_key`], so one client at a time
//!    applies an entity's moves) and read the record and the entity's hash
//!    together;
//! 2. **move**: add the entity to the index keys its hash renders now
//!    (`SADD`/`ZADD` with its current score), remove it from every listed
//!    key it no longer renders (`SREM`/`ZREM`): idempotent commands, one
//!    pipeline per slot;
//! 3. **release** (one script in the entity's slot): if no write was
//!    counted since the lease was taken, the moves applied are the last
//!    ones and the record goes; otherwise take it again (a write that came in between
//!    listed the key it left, so the next round removes that too).
//!
//! The write script itself takes the first lease when it records moves
//! (saving a round trip), and the writing client goes on from there
//! ([`pending::apply_leased`]); a write that finds the lease held leaves its moves
//! to the holder, whose release then fails and who takes the lease again. A client
//! that dies first leaves the record to [`settle`](pending::settle), which finds records
//! with `SCAN` on every primary and applies them ([`pending::apply`]).
//!
//! Until the moves are applied a query may miss the entity at its new
//! key or meet it at its old one; queries of a
//! `cross_slot` index check every entity they read against the key they
//! came from (`fetch::belongs`) and pass over those that do not belong, so
//! a listing never holds an entity whose current values do not match.
//!
//! A type whose stream is `stream_cross_slot` records a new entity's
//! stream entry in the same record (see [`redis_schema::PENDING_STREAM_ENTRY`]);
//! the applying client appends the recorded entries after the moves, in
//! the order of the writes, and its release removes them from the record
//! whatever came since. An entry appended whose release is lost (the
//! client died, the connection dropped) is appended again by the next
//! holder: the stream gets it at least once.
//!
//! A type with a `cross_slot` unique index records each value a write
//! leaves ([`redis_schema::PENDING_UNIQUE_VALUE`]); the applying client
//! releases it from the unique hash unless the entity holds it again, and
//! after a reindex maps the values the entity holds (see
//! [Unique values](#unique-values)).
//!
//! # Unique values
//!
//! A unique hash declared `cross_slot` (`users:by_email`, one hash for the
//! whole type) is in another hash slot than most of its entities, where
//! the entity's write script cannot check or update it. So on a cluster:
//!
//! 1. **claim**: the write script refuses to set a value the entity does
//!    not hold yet unless the call carries a *claim token* (code -5, see
//!    the prelude's `claim_first`, called by `script::write`): the entity's *unique fence*
//!    ([`redis_schema::unique_fence_key`], read by that refused call) and
//!    the values to claim. The client claims each value in the unique
//!    hash's slot (`scripts/unique_claim.lua`): the hash maps it to the
//!    entity at once, and the *claims hash*
//!    ([`redis_schema::unique_claims_key`]) records a fresh token for it.
//!    Then it sends the write again with the token. The refused call
//!    records the values it asks for in the entity's pending record
//!    (above), and the write removes them: the claims of a
//!    client that dies before its write are released by `settle`.
//! 2. **take**: a value mapped to another entity is that entity's unless
//!    it does not hold it (a claim whose write failed, or a value left
//!    but not yet released). Then the client raises the holder's fence,
//!    in the holder's slot and in one step with checking that it does not
//!    hold the value (`scripts/unique_fence.lua`), and takes the value
//!    with a compare-and-set on its holder and token. A write the holder
//!    had in flight with a claim of the value carries the old fence and is
//!    refused: no two entities ever hold one value.
//! 3. **release**: a write that leaves a value (a new value, a delete)
//!    records it in the entity's pending record (above), and the
//!    client that applies the record takes the value from the entity the
//!    same way, giving it to no one. A value the entity holds again by
//!    then is kept.
//!
//! Until a value is released, the unique hash still maps it to the entity
//! that left it: lookups ([`unique_claims::lookup`]) check that the entity holds it, and
//! a claim of it takes it over. The hash keeps the shared layout (value →
//! id), so other services read it as before.
//!
//! # What holds, and the two known holes
//!
//! 1. A write is one atomic script in its entity's slot; its record is
//!    durable before it returns.
//! 2. Every record is applied: by the writing client just after, by the
//!    next writer of the entity, or by `settle`.
//! 3. Listings never return an entity that does not match the key it came
//!    from; lookups never return an entity that does not hold the value.
//! 4. No two entities hold one unique value.
//! 5. Stream entries of a `stream_cross_slot` type are appended at least
//!    once, in the order of the writes.
//!
//! Holes: a client that stalls longer than the lease between taking it
//! and its moves may re-add an entry the next holder removed (`verify`
//! reports it, `rebuild` removes it); a fence lives
//! [`FENCE_LIFETIME`](unique_claims::FENCE_LIFETIME) after it was last
//! raised, so a write that stalls longer than that between reading it and
//! writing could meet a fence that expired and was raised again to the
//! same count.

pub(crate) mod pending;
mod record;
mod rounds;
mod token;
#[cfg(test)]
mod transitions;
pub(crate) use rounds::Retry;

/// A fresh token for a write to take an entity's pending record's lease
/// with (the protocol's one token format).
pub(crate) fn lease_token() -> String {
    token::fresh()
}
pub(crate) mod unique_claims;

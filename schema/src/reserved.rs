//! The key names this library reserves, in one place: every key it writes
//! beside an application's own starts with [`RESERVED`] and one of the
//! prefixes here. The functions that build each key from an entity's key
//! live with what decides its slot ([`crate::slot`]) or with the
//! descriptor ([`crate::descriptor`]).

/// What every reserved key starts with.
pub const RESERVED: &str = "__";

/// The TTL registry of an entity type (see
/// [`ttl_registry_key`](crate::ttl_registry_key)).
pub const TTL_REGISTRY_PREFIX: &str = "__ttl:";

/// A slot's guard (see [`slot_guard_key`](crate::slot_guard_key)).
pub const SLOT_GUARD_PREFIX: &str = "__slot_guard:";

/// An entity's pending record (see
/// [`pending_index_key`](crate::pending_index_key)).
pub const PENDING_INDEX_PREFIX: &str = "__pending_index:";

/// A pending record's lease (see
/// [`pending_index_lease_key`](crate::pending_index_lease_key)).
pub const PENDING_INDEX_LEASE_PREFIX: &str = "__pending_index_lease:";

/// A `cross_slot` unique index's claims hash (see
/// [`unique_claims_key`](crate::unique_claims_key)).
pub const UNIQUE_CLAIMS_PREFIX: &str = "__unique_claims:";

/// An entity's unique fence (see
/// [`unique_fence_key`](crate::unique_fence_key)).
pub const UNIQUE_FENCE_PREFIX: &str = "__unique_fence:";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_prefix_is_reserved_and_none_is_a_prefix_of_another_by_accident() {
        let prefixes = [
            TTL_REGISTRY_PREFIX,
            SLOT_GUARD_PREFIX,
            PENDING_INDEX_PREFIX,
            PENDING_INDEX_LEASE_PREFIX,
            UNIQUE_CLAIMS_PREFIX,
            UNIQUE_FENCE_PREFIX,
        ];
        for prefix in prefixes {
            assert!(
                prefix.starts_with(RESERVED) && prefix.ends_with(':'),
                "{prefix}"
            );
        }
        for a in prefixes {
            for b in prefixes {
                assert!(a == b || !b.starts_with(a), "{a} is a prefix of {b}");
            }
        }
    }
}

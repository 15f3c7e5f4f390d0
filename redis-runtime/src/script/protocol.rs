//! The write script's calling convention, defined once for both sides:
//! `entity::invocation` builds calls from these types and
//! [`write`](super::write) generates the Lua that reads them, so a mode, a
//! TTL action, an argument's position or a reply code cannot mean one
//! thing in Rust and another in Lua.
//!
//! A call's keys: [`key::HASH`], then for a type that defers moves on a
//! cluster [`key::PENDING`] and [`key::LEASE`], then for a type with a
//! `cross_slot` unique index [`key::FENCE`], then (on a cluster) every
//! other key the call touches, declared. Its arguments: [`arg::MODE`],
//! [`arg::TTL_ACTION`], [`arg::TTL_MS`], [`arg::MEMBER`], for a type with
//! a `cross_slot` unique index [`arg::CLAIM_TOKEN`], for a type that defers
//! moves the lease token ([`arg::lease_token`]), then the fields to set
//! (a count and name/value pairs), the fields to remove (a count and
//! names), and for a conditional write the conditions (see `write`). The
//! reply is a bare [`WriteCode`], a bare stream entry id (meaning
//! [`WriteCode::Created`]), or `{code, detail}`.

use std::fmt;

/// An argument the script branches on: a one-letter code the invocation
/// sends and the script's local compares.
pub(crate) trait Switch: Copy {
    /// The script's local holding the argument.
    const LOCAL: &'static str;

    /// The code sent for this value.
    fn code(self) -> &'static str;

    /// The code as a Lua string literal.
    fn lua(self) -> String {
        format!("'{}'", self.code())
    }

    /// The Lua test `<local> == '<code>'`.
    fn is(self) -> String {
        format!("{} == {}", Self::LOCAL, self.lua())
    }

    /// The Lua test `<local> ~= '<code>'`.
    fn is_not(self) -> String {
        format!("{} ~= {}", Self::LOCAL, self.lua())
    }
}

/// The first element of a write's reply when the write also took the
/// lease on the moves it recorded (`{ LEASED_TAG, reply, token, lease
/// reply }`; see `cross_slot::pending`).
pub(crate) const LEASED_TAG: &str = "leased";

/// What a write call does: its first argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// A new entity; `ALREADY_EXISTS` if its key exists.
    Create,
    /// Create or replace.
    Save,
    /// Replace an existing entity.
    Update,
    /// Set and remove some fields of an existing entity.
    Patch,
    /// Delete the entity and its index entries.
    Delete,
    /// Write the index entries of the stored entity again.
    Reindex,
    /// Add to one integer field.
    Increment,
}

impl Mode {
    /// Every mode.
    #[cfg(test)]
    pub(crate) const ALL: [Mode; 7] = [
        Mode::Create,
        Mode::Save,
        Mode::Update,
        Mode::Patch,
        Mode::Delete,
        Mode::Reindex,
        Mode::Increment,
    ];

    /// The operation's name in error contexts.
    pub(crate) const fn verb(self) -> &'static str {
        match self {
            Mode::Create => "create",
            Mode::Save => "save",
            Mode::Update => "update",
            Mode::Patch => "patch",
            Mode::Delete => "delete",
            Mode::Reindex => "reindex",
            Mode::Increment => "increment",
        }
    }
}

impl Switch for Mode {
    const LOCAL: &'static str = "mode";

    fn code(self) -> &'static str {
        match self {
            Mode::Create => "c",
            Mode::Save => "s",
            Mode::Update => "u",
            Mode::Patch => "p",
            Mode::Delete => "d",
            Mode::Reindex => "x",
            Mode::Increment => "i",
        }
    }
}

/// What a write does to the entity's TTL: its second argument, with the
/// milliseconds as the third.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TtlAction {
    /// Keep whatever time is left.
    Keep,
    /// Expire this many milliseconds from now (`PEXPIRE`).
    Relative,
    /// Expire at this epoch millisecond (`PEXPIREAT`); in the past, the
    /// write is a delete.
    Absolute,
    /// Never expire (`PERSIST` an existing entity).
    None,
}

impl TtlAction {
    /// Every action.
    #[cfg(test)]
    pub(crate) const ALL: [TtlAction; 4] = [
        TtlAction::Keep,
        TtlAction::Relative,
        TtlAction::Absolute,
        TtlAction::None,
    ];
}

impl Switch for TtlAction {
    const LOCAL: &'static str = "ttl_action";

    fn code(self) -> &'static str {
        match self {
            TtlAction::Keep => "k",
            TtlAction::Relative => "s",
            TtlAction::Absolute => "a",
            TtlAction::None => "n",
        }
    }
}

/// The code a write script replies with, alone or with a detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteCode {
    /// A create found the key: nothing written.
    Exists,
    /// Written; the entity is new (the detail: its stream entry id).
    Created,
    /// Written over an existing entity (an increment's detail: the new
    /// value).
    Overwritten,
    /// The entity is missing: nothing written.
    Missing,
    /// A unique index holds the value for another entity (the detail: the
    /// index's name).
    UniqueViolation,
    /// A condition did not hold (the detail: the stored hash).
    ConditionFailed,
    /// An increment left its field's range (the detail: the stored value).
    OutOfRange,
    /// Values of a `cross_slot` unique index must be claimed first (the
    /// detail: the fence and the values).
    ClaimFirst,
}

impl WriteCode {
    /// Every code.
    pub(crate) const ALL: [WriteCode; 8] = [
        WriteCode::Exists,
        WriteCode::Created,
        WriteCode::Overwritten,
        WriteCode::Missing,
        WriteCode::UniqueViolation,
        WriteCode::ConditionFailed,
        WriteCode::OutOfRange,
        WriteCode::ClaimFirst,
    ];

    /// The integer the script returns.
    pub(crate) const fn value(self) -> i64 {
        match self {
            WriteCode::Exists => 0,
            WriteCode::Created => 1,
            WriteCode::Overwritten => 2,
            WriteCode::Missing => -1,
            WriteCode::UniqueViolation => -2,
            WriteCode::ConditionFailed => -3,
            WriteCode::OutOfRange => -4,
            WriteCode::ClaimFirst => -5,
        }
    }

    /// The code the script returned as `value`, if it is one.
    pub(crate) fn from_value(value: i64) -> Option<WriteCode> {
        WriteCode::ALL
            .into_iter()
            .find(|code| code.value() == value)
    }
}

/// Formats as the integer, for the generated Lua.
impl fmt::Display for WriteCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.value())
    }
}

/// Positions in `KEYS` (1-based, as Lua counts; on a cluster after the
/// slot guard and registry the prelude takes off).
pub(crate) mod key {
    /// The entity's hash.
    pub(crate) const HASH: usize = 1;
    /// The entity's pending record (`cross_slot`).
    pub(crate) const PENDING: usize = 2;
    /// The pending record's lease.
    pub(crate) const LEASE: usize = 3;
    /// The entity's unique fence.
    pub(crate) const FENCE: usize = 4;
}

/// Positions in `ARGV` (1-based).
pub(crate) mod arg {
    /// The [`Mode`](super::Mode).
    pub(crate) const MODE: usize = 1;
    /// The [`TtlAction`](super::TtlAction).
    pub(crate) const TTL_ACTION: usize = 2;
    /// The TTL's milliseconds.
    pub(crate) const TTL_MS: usize = 3;
    /// The entity's member id.
    pub(crate) const MEMBER: usize = 4;
    /// The claim token (only for a type with a `cross_slot` unique index).
    pub(crate) const CLAIM_TOKEN: usize = 5;

    /// The token the write takes the pending record's lease with (only for
    /// a type that defers moves on a cluster): after the claim token, if
    /// the type sends one.
    pub(crate) const fn lease_token(fences: bool) -> usize {
        if fences { CLAIM_TOKEN + 1 } else { MEMBER + 1 }
    }

    /// The count of fields set, which the fields follow.
    pub(crate) const fn first_field(fences: bool, defers: bool) -> usize {
        lease_token(fences) + defers as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn codes_are_distinct_and_round_trip() {
        let modes: BTreeSet<_> = Mode::ALL.iter().map(|m| m.code()).collect();
        assert_eq!(modes.len(), Mode::ALL.len());
        let actions: BTreeSet<_> = TtlAction::ALL.iter().map(|a| a.code()).collect();
        assert_eq!(actions.len(), TtlAction::ALL.len());
        for code in WriteCode::ALL {
            assert_eq!(WriteCode::from_value(code.value()), Some(code));
        }
        assert_eq!(WriteCode::from_value(7), None);
    }

    #[test]
    fn the_bulk_delete_script_calls_the_write_script_as_a_delete() {
        let body = include_str!("../scripts/bulk_delete.lua");
        let call = format!(
            "write_one({{ key }}, {{ {}, '{}', '0', m, '0', '0' }})",
            Mode::Delete.lua(),
            TtlAction::None.code()
        );
        assert!(body.contains(&call), "{call} not in bulk_delete.lua");
    }
}

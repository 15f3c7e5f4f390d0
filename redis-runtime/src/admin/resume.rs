//! Resume tokens: where an interrupted `verify` or `repair` stopped, and
//! what it had counted, as one line of URL-safe text to pass back with
//! `--resume`.
//!
//! A token names the subcommand, the `--entity` selection and the entity
//! types of the binary that printed it, so it is refused by another
//! subcommand or another keyspace instead of resuming the wrong walk. It
//! holds key names of the keyspace (an index key the walk stopped in) and
//! counts, never the connection URL.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::index::pass::{Checkpoint, Tally};

/// The prefix of tokens of this layout.
const PREFIX: &str = "ks1.";

/// What one entity type's walk counted, across its runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Counts {
    /// The pass's counts.
    pub(super) tally: Tally,
    /// Expired registry entries swept before the pass.
    pub(super) swept: u64,
    /// Dry run: distinct entities a repair would reindex.
    pub(super) would_reindex: u64,
    /// Dry run: stale entries a repair would remove.
    pub(super) would_remove: u64,
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, other: Counts) {
        self.tally += other.tally;
        self.swept += other.swept;
        self.would_reindex += other.would_reindex;
        self.would_remove += other.would_remove;
    }
}

/// An entity type whose walk is finished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Done {
    /// The entity type.
    pub(super) name: String,
    /// What it counted.
    pub(super) counts: Counts,
}

/// The entity type the walk stopped in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct At {
    /// The entity type.
    pub(super) name: String,
    /// Where its pass continues.
    pub(super) checkpoint: Checkpoint,
    /// What it counted before the stop.
    pub(super) counts: Counts,
}

/// The state of a walk over the selected entity types.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct State {
    /// `verify`, `repair` or `repair --dry-run`.
    pub(super) command: String,
    /// The `--entity` selection.
    pub(super) entity: Option<String>,
    /// The entity types of the keyspace, in order.
    pub(super) types: Vec<String>,
    /// Entity types finished.
    pub(super) done: Vec<Done>,
    /// The entity type in progress, if any.
    pub(super) at: Option<At>,
}

impl State {
    /// The token of this state.
    pub(super) fn token(&self) -> String {
        // Serializing plain data cannot fail.
        let json = serde_json::to_vec(self).unwrap_or_default();
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(json))
    }

    /// The state in `token`, checked against the run it is passed to.
    pub(super) fn from_token(
        token: &str,
        command: &str,
        entity: Option<&str>,
        types: &[String],
    ) -> Result<State, String> {
        let bad = |why: &str| format!("--resume: not a resume token of this command ({why})");
        let body = token
            .trim()
            .strip_prefix(PREFIX)
            .ok_or_else(|| bad("prefix"))?;
        let json = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| bad("not base64"))?;
        let state: State = serde_json::from_slice(&json).map_err(|_| bad("content"))?;
        if state.command != command {
            return Err(format!(
                "--resume: this token continues `{}`, not `{command}`",
                state.command
            ));
        }
        if entity.is_some() && state.entity.as_deref() != entity {
            return Err(format!(
                "--resume: this token continues the run over {}; drop --entity",
                state.entity.as_deref().unwrap_or("every entity type")
            ));
        }
        if state.types != types {
            return Err(format!(
                "--resume: this token is from a keyspace of other entity types ({})",
                state.types.join(", ")
            ));
        }
        Ok(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::pass::Phase;

    fn state() -> State {
        State {
            command: "repair".into(),
            entity: None,
            types: vec!["User".into(), "Job".into()],
            done: vec![Done {
                name: "User".into(),
                counts: Counts::default(),
            }],
            at: Some(At {
                name: "Job".into(),
                checkpoint: Checkpoint {
                    phase: Phase::Entries(1),
                    cursor: 12345,
                    key: Some("jobs:status:queued".into()),
                    key_cursor: 77,
                },
                counts: Counts {
                    swept: 3,
                    ..Counts::default()
                },
            }),
        }
    }

    #[test]
    fn a_token_round_trips() {
        let types = ["User".to_owned(), "Job".to_owned()];
        let token = state().token();
        assert!(token.starts_with(PREFIX));
        assert!(
            token
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        );
        let back = State::from_token(&token, "repair", None, &types).expect("decodes");
        assert_eq!(back, state());
    }

    #[test]
    fn a_token_of_another_command_or_keyspace_is_refused() {
        let types = ["User".to_owned(), "Job".to_owned()];
        let token = state().token();
        let err = State::from_token(&token, "verify", None, &types).expect_err("other command");
        assert!(err.contains("continues `repair`"), "{err}");
        let err = State::from_token(&token, "repair", Some("Job"), &types).expect_err("entity");
        assert!(err.contains("drop --entity"), "{err}");
        let err = State::from_token(&token, "repair", None, &types[..1]).expect_err("types");
        assert!(err.contains("other entity types"), "{err}");
        let err = State::from_token("ks1.!!", "repair", None, &types).expect_err("garbage");
        assert!(err.contains("not a resume token"), "{err}");
    }
}

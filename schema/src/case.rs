//! Rename rules: how Rust field and variant names become hash field names
//! and stored enum values.
//!
//! The spellings match serde's `rename_all`, so users do not learn a second
//! vocabulary. Word splitting is heck's.
//!
//! ```
//! use redis_schema::RenameRule;
//!
//! let rule = RenameRule::from_name("camelCase").unwrap_or_default();
//! assert_eq!(rule.apply("created_at"), "createdAt");
//! assert_eq!(RenameRule::default().apply("InProgress"), "in_progress");
//! ```

use std::fmt;
use std::str::FromStr;

use heck::{ToKebabCase, ToLowerCamelCase, ToShoutySnakeCase, ToSnakeCase, ToUpperCamelCase};

/// Every accepted rename rule name; the same list as
/// [`RenameRule::ALL_NAMES`], here for callers that only import the module.
pub const ALL_NAMES: &[&str] = RenameRule::ALL_NAMES;

/// A naming convention to convert identifiers into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RenameRule {
    /// `created_at`. The default: Redis tooling and the existing data layers
    /// this replaces use snake_case hash fields.
    #[default]
    SnakeCase,
    /// `createdAt`.
    CamelCase,
    /// `CreatedAt`.
    PascalCase,
    /// `created-at`.
    KebabCase,
    /// `CREATED_AT`.
    ScreamingSnakeCase,
    /// `createdat` for `createdAt`, `created_at` for `created_at`: the
    /// identifier lowercased, without re-splitting words.
    LowerCase,
    /// `CREATED_AT` for `created_at`: the identifier uppercased, without
    /// re-splitting words.
    UpperCase,
    /// The identifier unchanged (minus any `r#` prefix).
    Verbatim,
}

impl RenameRule {
    /// Every accepted rule name, in the order of [`RenameRule`]'s variants,
    /// for "expected one of ..." messages.
    pub const ALL_NAMES: &[&str] = &[
        "snake_case",
        "camelCase",
        "PascalCase",
        "kebab-case",
        "SCREAMING_SNAKE_CASE",
        "lowercase",
        "UPPERCASE",
        "verbatim",
    ];

    /// Every rule, in the same order as [`ALL_NAMES`](Self::ALL_NAMES).
    pub const ALL: &[RenameRule] = &[
        RenameRule::SnakeCase,
        RenameRule::CamelCase,
        RenameRule::PascalCase,
        RenameRule::KebabCase,
        RenameRule::ScreamingSnakeCase,
        RenameRule::LowerCase,
        RenameRule::UpperCase,
        RenameRule::Verbatim,
    ];

    /// Looks a rule up by its exact (case-sensitive) name, as written in an
    /// attribute such as `rename_all = "camelCase"`.
    ///
    /// ```
    /// use redis_schema::RenameRule;
    ///
    /// assert_eq!(RenameRule::from_name("kebab-case"), Some(RenameRule::KebabCase));
    /// assert_eq!(RenameRule::from_name("Snake_Case"), None);
    /// ```
    pub fn from_name(name: &str) -> Option<RenameRule> {
        RenameRule::ALL
            .iter()
            .copied()
            .find(|rule| rule.name() == name)
    }

    /// The rule's name as accepted by [`from_name`](Self::from_name).
    pub fn name(&self) -> &'static str {
        match self {
            RenameRule::SnakeCase => "snake_case",
            RenameRule::CamelCase => "camelCase",
            RenameRule::PascalCase => "PascalCase",
            RenameRule::KebabCase => "kebab-case",
            RenameRule::ScreamingSnakeCase => "SCREAMING_SNAKE_CASE",
            RenameRule::LowerCase => "lowercase",
            RenameRule::UpperCase => "UPPERCASE",
            RenameRule::Verbatim => "verbatim",
        }
    }

    /// Converts an identifier. A leading `r#` is stripped first: `r#type` is
    /// the field `type`, and the prefix is Rust syntax, not part of the name.
    ///
    /// ```
    /// use redis_schema::RenameRule;
    ///
    /// assert_eq!(RenameRule::SnakeCase.apply("userId"), "user_id");
    /// assert_eq!(RenameRule::PascalCase.apply("user_id"), "UserId");
    /// assert_eq!(RenameRule::ScreamingSnakeCase.apply("InProgress"), "IN_PROGRESS");
    /// assert_eq!(RenameRule::Verbatim.apply("r#type"), "type");
    /// ```
    pub fn apply(&self, ident: &str) -> String {
        let ident = ident.strip_prefix("r#").unwrap_or(ident);
        match self {
            RenameRule::SnakeCase => ident.to_snake_case(),
            RenameRule::CamelCase => ident.to_lower_camel_case(),
            RenameRule::PascalCase => ident.to_upper_camel_case(),
            RenameRule::KebabCase => ident.to_kebab_case(),
            RenameRule::ScreamingSnakeCase => ident.to_shouty_snake_case(),
            RenameRule::LowerCase => ident.to_lowercase(),
            RenameRule::UpperCase => ident.to_uppercase(),
            RenameRule::Verbatim => ident.to_owned(),
        }
    }
}

impl fmt::Display for RenameRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown rename rule name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown rename rule; expected one of \"snake_case\", \"camelCase\", \"PascalCase\", \"kebab-case\", \"SCREAMING_SNAKE_CASE\", \"lowercase\", \"UPPERCASE\", \"verbatim\""
)]
pub struct UnknownRenameRule;

impl FromStr for RenameRule {
    type Err = UnknownRenameRule;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        RenameRule::from_name(name).ok_or(UnknownRenameRule)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(RenameRule::ALL.len(), RenameRule::ALL_NAMES.len());
        for (rule, name) in RenameRule::ALL.iter().zip(RenameRule::ALL_NAMES) {
            assert_eq!(rule.name(), *name);
            assert_eq!(RenameRule::from_name(name), Some(*rule));
            assert_eq!(name.parse::<RenameRule>(), Ok(*rule));
            assert_eq!(rule.to_string(), *name);
        }
    }

    #[test]
    fn unknown_names() {
        for name in [
            "",
            "snake",
            "SnakeCase",
            "camelcase",
            "lowerCase",
            " snake_case",
        ] {
            assert_eq!(RenameRule::from_name(name), None, "{name:?}");
        }
        let message = "nope"
            .parse::<RenameRule>()
            .map(|_| ())
            .map_err(|e| e.to_string());
        assert!(
            message
                .as_ref()
                .is_err_and(|m| m.contains("\"SCREAMING_SNAKE_CASE\"")),
            "{message:?}"
        );
        // The hand-written list in the message stays in sync with ALL_NAMES.
        let text = UnknownRenameRule.to_string();
        for name in RenameRule::ALL_NAMES {
            assert!(text.contains(&format!("\"{name}\"")), "{name}");
        }
    }

    #[test]
    fn default_is_snake_case() {
        assert_eq!(RenameRule::default(), RenameRule::SnakeCase);
    }

    #[test]
    fn applies_each_rule() {
        let cases: &[(RenameRule, &str, &str)] = &[
            (RenameRule::SnakeCase, "created_at", "created_at"),
            (RenameRule::SnakeCase, "InProgress", "in_progress"),
            (RenameRule::SnakeCase, "userID", "user_id"),
            (RenameRule::CamelCase, "created_at", "createdAt"),
            (RenameRule::CamelCase, "InProgress", "inProgress"),
            (RenameRule::PascalCase, "created_at", "CreatedAt"),
            (RenameRule::KebabCase, "created_at", "created-at"),
            (RenameRule::KebabCase, "InProgress", "in-progress"),
            (RenameRule::ScreamingSnakeCase, "created_at", "CREATED_AT"),
            (RenameRule::ScreamingSnakeCase, "InProgress", "IN_PROGRESS"),
            (RenameRule::LowerCase, "InProgress", "inprogress"),
            (RenameRule::LowerCase, "created_at", "created_at"),
            (RenameRule::UpperCase, "created_at", "CREATED_AT"),
            (RenameRule::UpperCase, "InProgress", "INPROGRESS"),
            (RenameRule::Verbatim, "InProgress", "InProgress"),
            (RenameRule::Verbatim, "created_at", "created_at"),
        ];
        for (rule, input, expected) in cases {
            assert_eq!(rule.apply(input), *expected, "{rule} {input}");
        }
    }

    #[test]
    fn strips_raw_identifier_prefix() {
        for rule in RenameRule::ALL {
            assert_eq!(rule.apply("r#type"), rule.apply("type"), "{rule}");
        }
        assert_eq!(RenameRule::SnakeCase.apply("r#type"), "type");
        assert_eq!(RenameRule::PascalCase.apply("r#match_arm"), "MatchArm");
    }
}

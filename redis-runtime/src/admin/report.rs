//! How `verify`, `repair` and `repair --dry-run` print what they found, per
//! entity type: text for people, JSON (`--json`) for tools.

use serde_json::{Value, json};

use super::output::Out;
use super::resume::Counts;
use crate::index::{Drift, DriftKind, SkipReason, Skipped};

/// Which report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// `verify`: the drift found.
    Verify,
    /// `repair`: what was fixed and what is left.
    Repair,
    /// `repair --dry-run`: what a repair would change.
    DryRun,
}

impl Mode {
    /// The subcommand as typed, for tokens and messages.
    pub(super) fn command(self) -> &'static str {
        match self {
            Mode::Verify => "verify",
            Mode::Repair => "repair",
            Mode::DryRun => "repair --dry-run",
        }
    }
}

/// One entity type's outcome: its counts and the first `--examples` items.
#[derive(Debug, Clone, Default)]
pub(super) struct EntityResult {
    /// The entity type.
    pub(super) name: String,
    /// Everything counted (across resumed runs).
    pub(super) counts: Counts,
    /// Drift found, the first few.
    pub(super) found: Vec<Drift>,
    /// Drift left after a repair, the first few.
    pub(super) left: Vec<Drift>,
    /// Keys passed over, the first few.
    pub(super) skipped: Vec<Skipped>,
    /// On a Redis Cluster, the entities whose `cross_slot` index moves or
    /// `stream_cross_slot` entries are still recorded, not applied
    /// (`verify` and `repair --dry-run`; a repair applies them first).
    pub(super) pending: u64,
    /// Finished in an earlier run (resumed): counts only, no examples.
    pub(super) earlier: bool,
}

impl EntityResult {
    /// Whether this result is a problem (exit code 1).
    pub(super) fn problems(&self, mode: Mode) -> bool {
        match mode {
            Mode::Verify | Mode::DryRun => self.counts.tally.drift > 0,
            Mode::Repair => self.counts.tally.remaining > 0,
        }
    }
}

/// Prints `result` as text.
pub(super) fn text(out: &mut Out, mode: Mode, result: &EntityResult) {
    let t = &result.counts.tally;
    let name = &result.name;
    match mode {
        Mode::Verify => {
            let status = if t.drift == 0 {
                "ok".to_owned()
            } else {
                format!("{} drift entries", t.drift)
            };
            out.line(format_args!(
                "{name}: {status} ({} entities, {} index entries)",
                t.entities, t.entries
            ));
            drift_lines(out, &result.found, t.drift, |d| problem_text(&d.problem));
        }
        Mode::DryRun => {
            out.line(format_args!(
                "{name}: would reindex {} entities and remove {} stale entries \
                 ({} drift entries; {} entities, {} index entries; nothing written)",
                result.counts.would_reindex,
                result.counts.would_remove,
                t.drift,
                t.entities,
                t.entries
            ));
            drift_lines(out, &result.found, t.drift, action_text);
        }
        Mode::Repair => {
            out.line(format_args!(
                "{name}: reindexed {} entities, removed {} stale entries, moved {} legacy TTL \
                 registry entries ({} drift entries found; {} entities, {} index entries)",
                t.reindexed, t.removed, t.registry_entries_moved, t.drift, t.entities, t.entries
            ));
            if t.remaining > 0 {
                out.line(format_args!("  {} drift entries left:", t.remaining));
                drift_lines(out, &result.left, t.remaining, |d| problem_text(&d.problem));
            }
        }
    }
    if result.pending > 0 {
        out.line(format_args!(
            "  {} entities with cross_slot moves or stream entries still pending \
             (written, not applied yet: drift on them may be those moves; `repair` applies them)",
            result.pending
        ));
    }
    if result.earlier {
        out.line("  (finished before the resume: counts only)");
    }
    if t.skipped > 0 {
        out.line(format_args!(
            "  skipped {} keys (foreign data or refused repairs):",
            t.skipped
        ));
        for s in &result.skipped {
            out.line(format_args!("    `{}`: {}", s.key, reason_text(&s.reason)));
        }
        more(out, t.skipped, result.skipped.len());
    }
}

/// `result` as JSON.
pub(super) fn json(mode: Mode, result: &EntityResult, examples: usize) -> Value {
    let t = &result.counts.tally;
    let mut entry = json!({
        "entity": result.name,
        "entities": t.entities,
        "entries": t.entries,
        "skipped_total": t.skipped,
        "skipped": skipped_json(&result.skipped),
        "swept": result.counts.swept,
    });
    let drift = |items: &[Drift]| {
        items
            .iter()
            .take(examples)
            .map(|d| drift_json(d, mode))
            .collect::<Vec<_>>()
    };
    match mode {
        Mode::Verify | Mode::DryRun => {
            entry["pending"] = json!(result.pending);
            entry["drift_total"] = json!(t.drift);
            entry["drift"] = json!(drift(&result.found));
            if mode == Mode::DryRun {
                entry["would_reindex"] = json!(result.counts.would_reindex);
                entry["would_remove"] = json!(result.counts.would_remove);
            }
        }
        Mode::Repair => {
            entry["drift_found"] = json!(t.drift);
            entry["reindexed"] = json!(t.reindexed);
            entry["removed"] = json!(t.removed);
            entry["registry_entries_moved"] = json!(t.registry_entries_moved);
            entry["remaining_total"] = json!(t.remaining);
            entry["remaining"] = json!(drift(&result.left));
        }
    }
    if result.earlier {
        entry["finished_before_resume"] = json!(true);
    }
    entry
}

/// Up to the examples kept, then how many more there are.
fn drift_lines(out: &mut Out, shown: &[Drift], total: u64, what: impl Fn(&Drift) -> String) {
    for d in shown {
        let value = d
            .value
            .as_ref()
            .map(|v| format!(" (value {v:?})"))
            .unwrap_or_default();
        out.line(format_args!(
            "    {} `{}` member {}{value}: {}",
            d.index,
            d.index_key,
            d.member,
            what(d)
        ));
    }
    more(out, total, shown.len());
}

fn more(out: &mut Out, total: u64, shown: usize) {
    let shown = shown as u64;
    if total > shown {
        out.line(format_args!(
            "    ... and {} more (--examples N shows more)",
            total - shown
        ));
    }
}

fn problem_text(problem: &DriftKind) -> String {
    match problem {
        DriftKind::Orphan => "orphan entry".to_owned(),
        DriftKind::Missing => "missing entry".to_owned(),
        DriftKind::WrongScore { expected, actual } => {
            format!("wrong score {actual} (expected {expected})")
        }
    }
}

/// What a repair would do about `drift`.
fn action_text(drift: &Drift) -> String {
    match &drift.problem {
        DriftKind::Orphan => "orphan entry: would remove it (re-checked first)".to_owned(),
        DriftKind::Missing => format!("missing entry: would reindex entity {}", drift.member),
        DriftKind::WrongScore { expected, actual } => format!(
            "wrong score {actual} (expected {expected}): would reindex entity {}",
            drift.member
        ),
    }
}

/// The repair's action for `drift`, as JSON names it.
fn action(drift: &Drift) -> &'static str {
    match drift.problem {
        DriftKind::Orphan => "remove",
        DriftKind::Missing | DriftKind::WrongScore { .. } => "reindex",
    }
}

fn drift_json(drift: &Drift, mode: Mode) -> Value {
    let mut entry = json!({
        "index": drift.index,
        "index_key": drift.index_key,
        "member": drift.member,
        "value": drift.value,
    });
    let problem = match &drift.problem {
        DriftKind::Orphan => "orphan",
        DriftKind::Missing => "missing",
        DriftKind::WrongScore { expected, actual } => {
            entry["expected"] = json!(expected);
            entry["actual"] = json!(actual);
            "wrong_score"
        }
    };
    entry["problem"] = json!(problem);
    if mode == Mode::DryRun {
        entry["action"] = json!(action(drift));
    }
    entry
}

fn reason_text(reason: &SkipReason) -> String {
    match reason {
        SkipReason::NotAHash { found } => format!("not a hash (a {found})"),
        SkipReason::Undecodable { field, reason } => {
            format!("does not decode: field {field}: {reason}")
        }
        SkipReason::WrongIndexType {
            index,
            expected,
            found,
        } => format!("index {index} should be a {expected}, holds a {found}"),
        SkipReason::RepairRefused { reason } => format!("repair refused: {reason}"),
    }
}

fn skipped_json(skipped: &[Skipped]) -> Vec<Value> {
    skipped
        .iter()
        .map(|s| json!({ "key": s.key, "reason": reason_text(&s.reason) }))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drift a verify finds on a cluster may be moves still recorded: the
    /// report says how many entities have some, in text and in JSON.
    #[test]
    fn pending_records_are_reported_beside_the_drift() {
        let mut result = EntityResult {
            name: "Order".into(),
            pending: 3,
            ..EntityResult::default()
        };
        result.counts.tally.entities = 40;
        let mut out = Out::default();
        text(&mut out, Mode::Verify, &result);
        let mut printed = String::new();
        out.text_into(&mut printed);
        assert!(
            printed.contains("Order: ok (40 entities, 0 index entries)\n  3 entities with cross_slot moves or stream entries still pending"),
            "{printed}"
        );
        assert_eq!(json(Mode::Verify, &result, 5)["pending"], 3);
        assert_eq!(json(Mode::DryRun, &result, 5)["pending"], 3);
        assert!(json(Mode::Repair, &result, 5).get("pending").is_none());

        result.pending = 0;
        let mut out = Out::default();
        text(&mut out, Mode::Verify, &result);
        let mut printed = String::new();
        out.text_into(&mut printed);
        assert!(!printed.contains("pending"), "{printed}");
    }
}

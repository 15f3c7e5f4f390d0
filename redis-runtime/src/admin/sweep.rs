//! `sweep`, and the paced sweep that starts each `verify` and `repair`:
//! index entries of expired entities removed through the TTL registry, a
//! bounded step at a time.

use super::output::Out;
use super::progress::Update;
use super::session::Session;
use crate::index::pass::Flow;
use crate::keyspace::EntityOps;

/// Registry entries looked at per sweep step.
const SWEEP_BUDGET: u64 = 1000;

/// Sweeps `entity` until nothing is due or Ctrl-C; returns the registry
/// entries looked at and whether to go on.
pub(super) async fn sweep_entity(
    session: &Session,
    entity: &EntityOps,
    command: &str,
) -> crate::Result<(u64, Flow)> {
    let mut looked_at = 0;
    loop {
        let step = entity.sweep(&session.client, SWEEP_BUDGET).await?;
        looked_at += step;
        let counts = format!("{looked_at} expired registry entries");
        session.show(&Update {
            command,
            entity: entity.name(),
            phase: "sweep",
            fraction: if step < SWEEP_BUDGET { 1.0 } else { 0.0 },
            counts: &counts,
            rate: session.rate(),
            cursor: 0,
        });
        // A step is one script call that handles up to the budget.
        let flow = session.pace(1 + step).await;
        if step < SWEEP_BUDGET {
            return Ok((looked_at, Flow::Continue));
        }
        if flow == Flow::Stop {
            return Ok((looked_at, Flow::Stop));
        }
    }
}

/// The `sweep` subcommand over `entities`: whether it was interrupted.
pub(super) async fn sweep(
    session: &Session,
    entities: &[&EntityOps],
    out: &mut Out,
) -> crate::Result<bool> {
    for entity in entities {
        if entity.descriptor.ttl_registry.is_none() {
            out.line(format_args!(
                "{}: no TTL registry, nothing to sweep",
                entity.name()
            ));
            continue;
        }
        let (looked_at, flow) = sweep_entity(session, entity, "sweep").await?;
        out.line(format_args!(
            "{}: swept {looked_at} expired registry entries",
            entity.name()
        ));
        if flow == Flow::Stop {
            return Ok(true);
        }
    }
    Ok(false)
}

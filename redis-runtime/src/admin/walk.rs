//! `verify`, `repair` and `repair --dry-run` over the selected entity
//! types: for each, a paced sweep, then the batched pass of
//! [`crate::index::pass`] under a control that paces it, shows progress,
//! keeps the first `--examples` items and counts the rest, and stops it
//! between batches on Ctrl-C, leaving a resume token.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::json;

use super::output::{Out, warn};
use super::progress::Update;
use super::report::{self, EntityResult, Mode};
use super::resume::{At, Counts, Done, State};
use super::session::Session;
use super::sweep::sweep_entity;
use super::{Fatal, ReportArgs, selected};
use crate::index::pass::{self, Checkpoint, Flow, Pause, Phase, Step, Tally};
use crate::index::{Drift, DriftKind, Skipped};
use crate::keyspace::{EntityOps, KeyspaceOps};
use redis_schema::EntityDescriptor;

/// How a walk ended.
pub(super) enum Ended {
    /// Every selected type done; whether problems were found.
    Finished { problems: bool },
    /// Stopped by Ctrl-C (the resume token is printed).
    Interrupted,
}

/// Runs `mode` over the entity types `args` selects (or the token's) and
/// prints the report into `out`.
pub(super) async fn walk(
    ops: &KeyspaceOps,
    session: &Arc<Session>,
    mode: Mode,
    args: &ReportArgs,
    resume: Option<&str>,
    out: &mut Out,
) -> Result<Ended, Fatal> {
    let types: Vec<String> = ops.entities().iter().map(|e| e.name().to_owned()).collect();
    let mut state = match resume {
        Some(token) => State::from_token(token, mode.command(), args.entity.as_deref(), &types)
            .map_err(Fatal::usage)?,
        None => State {
            command: mode.command().to_owned(),
            entity: args.entity.clone(),
            types,
            done: Vec::new(),
            at: None,
        },
    };
    let entities = selected(ops, state.entity.as_deref())?;
    let mut results: Vec<EntityResult> = state
        .done
        .iter()
        .map(|done| EntityResult {
            name: done.name.clone(),
            counts: done.counts,
            earlier: true,
            ..EntityResult::default()
        })
        .collect();
    let mut interrupted = false;
    for entity in entities {
        if state.done.iter().any(|d| d.name == entity.name()) {
            continue;
        }
        let (start, base) = match state.at.take() {
            Some(at) if at.name == entity.name() => (at.checkpoint, at.counts),
            other => {
                state.at = other;
                (Checkpoint::default(), Counts::default())
            }
        };
        let (result, next) = walk_entity(session, entity, mode, args.examples, start, base)
            .await
            .map_err(|(e, at)| {
                // What was done is done: say where to pick it up (on a
                // line of its own, so the token copies cleanly).
                state.at = Some(at);
                warn(format_args!(
                    "stopped by the error below; {}",
                    resume_hint(session.program, mode, &state.token())
                ));
                Fatal::from(e)
            })?;
        match next {
            None => {
                state.done.push(Done {
                    name: result.name.clone(),
                    counts: result.counts,
                });
                results.push(result);
            }
            Some(at) => {
                state.at = Some(at);
                results.push(result);
                interrupted = true;
                break;
            }
        }
    }
    session.finish();
    print(
        out,
        mode,
        args,
        &results,
        session,
        interrupted.then_some(&state),
    );
    if interrupted {
        if let Some(at) = &state.at {
            warn(format_args!(
                "interrupted: {} stopped in {} at {}\n{}",
                mode.command(),
                at.name,
                describe(at, ops),
                resume_hint(session.program, mode, &state.token())
            ));
        }
        return Ok(Ended::Interrupted);
    }
    let problems = results.iter().any(|r| r.problems(mode));
    Ok(Ended::Finished { problems })
}

fn resume_hint(program: &str, mode: Mode, token: &str) -> String {
    format!("resume with: {program} {} --resume {token}", mode.command())
}

/// Where `at` (of the entity type `name`) is, for people: the phase and
/// its SCAN cursor.
fn describe(at: &At, ops: &KeyspaceOps) -> String {
    let checkpoint = &at.checkpoint;
    let phase = match ops.entities().iter().find(|e| e.name() == at.name) {
        Some(entity) => phase_name(entity.descriptor, checkpoint.phase),
        None => format!("{:?}", checkpoint.phase),
    };
    match &checkpoint.key {
        Some(key) => format!(
            "{phase}, SCAN cursor {}, inside `{key}` at cursor {}",
            checkpoint.cursor, checkpoint.key_cursor
        ),
        None => format!("{phase}, SCAN cursor {}", checkpoint.cursor),
    }
}

/// Sweeps and walks one entity type from `start`. Returns its result and,
/// if it was stopped, where to resume; on an error, the error and where
/// to resume.
async fn walk_entity(
    session: &Arc<Session>,
    entity: &EntityOps,
    mode: Mode,
    examples: usize,
    start: Checkpoint,
    base: Counts,
) -> Result<(EntityResult, Option<At>), (crate::Error, At)> {
    let name = entity.name();
    let at = |checkpoint: Checkpoint, counts: Counts| At {
        name: name.to_owned(),
        checkpoint,
        counts,
    };
    let mut counts = base;
    if start.phase == Phase::Start && entity.descriptor.ttl_registry.is_some() {
        let swept = sweep_entity(session, entity, mode.command()).await;
        let (swept, flow) = swept.map_err(|e| (e, at(start.clone(), counts)))?;
        counts.swept += swept;
        if flow == Flow::Stop {
            let result = EntityResult {
                name: name.to_owned(),
                counts,
                ..EntityResult::default()
            };
            return Ok((result, Some(at(start, counts))));
        }
    }
    let control = Arc::new(EntityRun {
        session: Arc::clone(session),
        descriptor: entity.descriptor,
        mode,
        examples,
        start: start.clone(),
        base: counts,
        record: Mutex::new(Record {
            next: start,
            ..Record::default()
        }),
    });
    let client = &session.client;
    let repair = matches!(mode, Mode::Repair);
    let outcome = entity.pass(client, repair, &*control).await.map(drop);
    let record = std::mem::take(
        &mut *control
            .record
            .lock()
            .unwrap_or_else(PoisonError::into_inner),
    );
    counts += record.counts();
    // A repair applied the records first (its pass settles); drift a
    // verify or a dry run finds may be their moves, not applied yet.
    let pending = if outcome.is_ok() && !repair {
        let ctx = crate::Context::new(format!("admin.{}", mode.command()), name.to_owned());
        let pending = crate::cross_slot::pending::count(client, entity.descriptor, &ctx).await;
        pending.map_err(|e| (e, at(record.next.clone(), counts)))?
    } else {
        0
    };
    let result = EntityResult {
        name: name.to_owned(),
        counts,
        found: record.found,
        left: record.left,
        skipped: record.skipped,
        pending,
        earlier: false,
    };
    match outcome {
        Err(e) => Err((e, at(record.next, counts))),
        Ok(()) if record.stopped => Ok((result, Some(at(record.next, counts)))),
        Ok(()) => Ok((result, None)),
    }
}

/// The control of one entity type's pass.
struct EntityRun {
    session: Arc<Session>,
    descriptor: &'static EntityDescriptor,
    mode: Mode,
    examples: usize,
    start: Checkpoint,
    /// Counted before this pass (earlier runs, the sweep).
    base: Counts,
    record: Mutex<Record>,
}

/// What one pass reported.
#[derive(Default)]
struct Record {
    tally: Tally,
    next: Checkpoint,
    stopped: bool,
    found: Vec<Drift>,
    left: Vec<Drift>,
    skipped: Vec<Skipped>,
    /// Dry run: hashes of the members a repair would reindex.
    reindex: HashSet<u64>,
    orphans: u64,
}

impl Record {
    fn counts(&self) -> Counts {
        Counts {
            tally: self.tally,
            swept: 0,
            would_reindex: self.reindex.len() as u64,
            would_remove: self.orphans,
        }
    }
}

impl EntityRun {
    fn record(&self) -> std::sync::MutexGuard<'_, Record> {
        self.record.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn keep<T>(items: &mut Vec<T>, item: T, cap: usize) {
    if items.len() < cap {
        items.push(item);
    }
}

impl pass::Control for EntityRun {
    fn scan_count(&self) -> usize {
        self.session.scan_count
    }

    fn start(&self, _entity: &'static str) -> Checkpoint {
        self.start.clone()
    }

    fn found(&self, drift: &Drift) {
        let mut record = self.record();
        keep(&mut record.found, drift.clone(), self.examples);
        match drift.problem {
            DriftKind::Orphan => record.orphans += 1,
            DriftKind::Missing | DriftKind::WrongScore { .. } => {
                let mut hasher = DefaultHasher::new();
                drift.member.hash(&mut hasher);
                record.reindex.insert(hasher.finish());
            }
        }
    }

    fn left(&self, drift: &Drift) {
        keep(&mut self.record().left, drift.clone(), self.examples);
    }

    fn skipped(&self, skipped: Skipped) {
        keep(&mut self.record().skipped, skipped, self.examples);
    }

    fn step<'a>(&'a self, step: Step<'a>) -> Pause<'a> {
        let done = step.next.phase == Phase::Done;
        let (phase, counts) = {
            let mut record = self.record();
            record.tally = *step.tally;
            record.next = step.next.clone();
            let mut counts = self.base;
            counts += record.counts();
            (
                phase_name(self.descriptor, step.phase),
                progress_counts(self.mode, &counts),
            )
        };
        if !done {
            self.session.show(&Update {
                command: self.mode.command(),
                entity: step.entity,
                phase: &phase,
                fraction: step.fraction,
                counts: &counts,
                rate: self.session.rate(),
                cursor: step.next.cursor,
            });
        }
        Box::pin(async move {
            let flow = self.session.pace(step.ops).await;
            // Once done there is nothing left to stop.
            if flow == Flow::Stop && !done {
                self.record().stopped = true;
                return Flow::Stop;
            }
            Flow::Continue
        })
    }
}

/// The name of `phase`, for people.
fn phase_name(descriptor: &EntityDescriptor, phase: Phase) -> String {
    match phase {
        Phase::Start => "sweep".to_owned(),
        Phase::Entities => "entities".to_owned(),
        Phase::Entries(position) => match descriptor.indexes.get(position) {
            Some(index) => format!("index {}", index.name),
            None => format!("index #{}", position + 1),
        },
        Phase::Done => "done".to_owned(),
    }
}

fn progress_counts(mode: Mode, counts: &Counts) -> String {
    let t = &counts.tally;
    let mut text = format!(
        "{} entities, {} entries, {} drift",
        t.entities, t.entries, t.drift
    );
    if mode == Mode::Repair {
        text.push_str(&format!(
            ", {} reindexed, {} removed",
            t.reindexed, t.removed
        ));
    }
    text
}

fn print(
    out: &mut Out,
    mode: Mode,
    args: &ReportArgs,
    results: &[EntityResult],
    session: &Session,
    interrupted: Option<&State>,
) {
    let problems = results.iter().any(|r| r.problems(mode));
    if args.json {
        let mut value = json!({
            "clean": !problems && interrupted.is_none(),
            "entities": results
                .iter()
                .map(|r| report::json(mode, r, args.examples))
                .collect::<Vec<_>>(),
            "run": session.summary_json(),
        });
        if let Some(state) = interrupted {
            value["interrupted"] = json!({
                "entity": state.at.as_ref().map(|at| at.name.clone()),
                "checkpoint": state.at.as_ref().map(|at| at.checkpoint.clone()),
                "resume": state.token(),
            });
        }
        out.json(&value);
        return;
    }
    for result in results {
        report::text(out, mode, result);
    }
    if interrupted.is_some() {
        out.line("interrupted: the counts above are partial (see stderr to resume)");
    }
    out.line(session.summary());
}

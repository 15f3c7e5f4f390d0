//! An operator command for an application's keyspace (feature `admin`).
//!
//! An application gets it in a few lines, as its own binary:
//!
//! ```ignore
//! // src/bin/keyspace.rs
//! fn main() -> std::process::ExitCode {
//!     redis_runtime::admin::main(redis_runtime::keyspace_ops!(User, Session, Job))
//! }
//! ```
//!
//! Subcommands: `describe` (the manifest), `check` (the static overlap
//! check, no Redis), `verify` (index drift per entity type), `repair`
//! (rebuilds drifted indexes; `--dry-run` only reports) and `sweep`
//! (removes index entries of expired entities now). The connection is
//! configured like the library's: [`Config::from_env`] (`REDIS_URL` and
//! the `REDIS_*` knobs). Only [`Config::endpoint`] is ever printed.
//!
//! Exit codes: 0 clean or done, 1 problems found (drift, overlap, or drift
//! left after a repair), 2 usage or connection error.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use serde_json::{Value, json};

use crate::index::{Drift, DriftKind, RebuildReport, SkipReason, Skipped, VerifyReport};
use crate::keyspace::{EntityOps, KeyspaceOps};
use crate::{Client, Config};

/// Registry entries looked at per sweep step.
const SWEEP_BUDGET: u64 = 1000;

/// Inspect, check and repair the Redis keyspace of this application's
/// entity types.
///
/// The connection is read from the environment like the application's
/// own: REDIS_URL (e.g. redis://user:password@host:6379/0) and the
/// optional REDIS_CONNECT_TIMEOUT, REDIS_RESPONSE_TIMEOUT,
/// REDIS_OPERATION_TIMEOUT, REDIS_MAX_RETRIES, REDIS_RETRY_MIN_DELAY,
/// REDIS_RETRY_MAX_DELAY, REDIS_LAZY_CONNECT and REDIS_TLS_CA_FILE.
///
/// Exit codes: 0 clean or done; 1 problems found (index drift, colliding
/// key patterns, or drift left after a repair); 2 usage or connection
/// error.
#[derive(Debug, Parser)]
#[command(disable_version_flag = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the keyspace manifest: every key pattern, its Redis type, TTL,
    /// indexes, stream and field encodings (no Redis needed).
    Describe {
        /// Print JSON instead of Markdown.
        #[arg(long)]
        json: bool,
    },
    /// Check that no two key patterns of these entity types can be the same
    /// Redis key (no Redis needed). Exits 1 if two can.
    Check,
    /// Compare every index with the entities' hashes and report drift:
    /// orphan entries, missing entries, wrong scores, and keys passed over
    /// because they hold foreign data. Exits 1 if there is drift.
    Verify {
        #[command(flatten)]
        report: ReportArgs,
    },
    /// Rebuild drifted index entries from the entities' hashes and report
    /// what was fixed. Exits 1 if drift is left (e.g. two entities claim
    /// one unique value).
    Repair {
        /// Only report what would be repaired (runs verify); write nothing.
        /// Exits 1 if there is something to repair.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        report: ReportArgs,
    },
    /// Remove the index entries of expired entities now, instead of on the
    /// next index query.
    Sweep {
        /// Only this entity type (by its Rust name, e.g. Job).
        #[arg(long, value_name = "NAME")]
        entity: Option<String>,
    },
}

#[derive(Debug, clap::Args)]
struct ReportArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Only this entity type (by its Rust name, e.g. Job).
    #[arg(long, value_name = "NAME")]
    entity: Option<String>,
    /// Show at most N drift entries per entity type.
    #[arg(long, value_name = "N", default_value_t = 10)]
    examples: usize,
}

/// The command's name: the file name it was run as, e.g. `keyspace`.
fn command_name() -> String {
    std::env::args_os()
        .next()
        .and_then(|arg| {
            std::path::Path::new(&arg)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "keyspace".to_owned())
}

/// Runs the command on `ops` with the process's arguments and environment,
/// and returns its exit code (see the [module docs](self)).
pub fn main(ops: KeyspaceOps) -> ExitCode {
    // Once per process: clap wants the name for as long as it runs.
    let name: &'static str = Box::leak(command_name().into_boxed_str());
    let matches = Cli::command().name(name).bin_name(name).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    ExitCode::from(run(&ops, cli.command))
}

/// A failure that ends the command with exit code 2.
struct Fatal(String);

impl From<crate::Error> for Fatal {
    fn from(e: crate::Error) -> Self {
        Fatal(format!("{}: {e}", e.code()))
    }
}

fn run(ops: &KeyspaceOps, command: Command) -> u8 {
    let outcome = match command {
        Command::Describe { json } => Ok(describe(ops, json)),
        Command::Check => Ok(check(ops)),
        Command::Verify { report } => online(|client| verify(ops, client, &report)),
        Command::Repair { dry_run, report } => online(|client| async move {
            if dry_run {
                verify(ops, client, &report).await
            } else {
                repair(ops, client, &report).await
            }
        }),
        Command::Sweep { entity } => online(|client| sweep(ops, client, entity)),
    };
    match outcome {
        Ok(code) => code,
        Err(Fatal(message)) => {
            eprintln!("error: {message}");
            2
        }
    }
}

/// Connects with [`Config::from_env`] on a new runtime and runs `f`.
fn online<F, Fut>(f: F) -> Result<u8, Fatal>
where
    F: FnOnce(Client) -> Fut,
    Fut: std::future::Future<Output = Result<u8, Fatal>>,
{
    let config = Config::from_env()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Fatal(format!("cannot start the async runtime: {e}")))?;
    let endpoint = config.endpoint().to_owned();
    runtime.block_on(async move {
        let client = Client::connect(config)
            .await
            .map_err(|e| with_endpoint(e.into(), &endpoint))?;
        f(client).await.map_err(|e| with_endpoint(e, &endpoint))
    })
}

fn with_endpoint(Fatal(message): Fatal, endpoint: &str) -> Fatal {
    Fatal(format!("{message} (Redis at {endpoint})"))
}

fn describe(ops: &KeyspaceOps, json: bool) -> u8 {
    let keyspace = ops.manifest_keyspace();
    if json {
        println!("{}", keyspace.to_json());
    } else {
        print!("{}", keyspace.to_markdown());
    }
    0
}

fn check(ops: &KeyspaceOps) -> u8 {
    match ops.keyspace() {
        Ok(keyspace) => {
            println!(
                "ok: {} entity types, no two of their key patterns can be the same key",
                keyspace.entities().len()
            );
            0
        }
        Err(e) => {
            println!("{e}");
            1
        }
    }
}

/// The entity types selected by `--entity`, or all of them.
fn selected<'a>(ops: &'a KeyspaceOps, entity: Option<&str>) -> Result<Vec<&'a EntityOps>, Fatal> {
    let all = ops.entities();
    let Some(name) = entity else {
        return Ok(all.iter().collect());
    };
    match all.iter().find(|e| e.name() == name) {
        Some(found) => Ok(vec![found]),
        None => {
            let names: Vec<&str> = all.iter().map(|e| e.name()).collect();
            Err(Fatal(format!(
                "unknown entity type `{name}`; known: {}",
                names.join(", ")
            )))
        }
    }
}

/// How `verify` and `repair` run one report-producing operation over the
/// selected entity types and print it.
struct Reporting<R> {
    /// Whether the report shows problems (exit code 1).
    problems: fn(&R) -> bool,
    json: fn(&str, &R, usize) -> Value,
    text: fn(&str, &R, usize),
}

async fn report_each<R>(
    ops: &KeyspaceOps,
    args: &ReportArgs,
    run: impl AsyncFn(&EntityOps) -> crate::Result<R>,
    how: Reporting<R>,
) -> Result<u8, Fatal> {
    let mut problems = false;
    let mut out = Vec::new();
    for entity in selected(ops, args.entity.as_deref())? {
        let report = run(entity).await?;
        problems |= (how.problems)(&report);
        if args.json {
            out.push((how.json)(entity.name(), &report, args.examples));
        } else {
            (how.text)(entity.name(), &report, args.examples);
        }
    }
    if args.json {
        print_json(&json!({ "clean": !problems, "entities": out }));
    }
    Ok(u8::from(problems))
}

const VERIFYING: Reporting<VerifyReport> = Reporting {
    problems: |report| !report.drift.is_empty(),
    json: verify_json,
    text: print_verify,
};

const REPAIRING: Reporting<RebuildReport> = Reporting {
    problems: |report| !report.remaining.is_empty(),
    json: repair_json,
    text: print_repair,
};

async fn verify(ops: &KeyspaceOps, client: Client, args: &ReportArgs) -> Result<u8, Fatal> {
    report_each(
        ops,
        args,
        async |e: &EntityOps| e.verify(&client).await,
        VERIFYING,
    )
    .await
}

async fn repair(ops: &KeyspaceOps, client: Client, args: &ReportArgs) -> Result<u8, Fatal> {
    report_each(
        ops,
        args,
        async |e: &EntityOps| e.rebuild(&client).await,
        REPAIRING,
    )
    .await
}

async fn sweep(ops: &KeyspaceOps, client: Client, entity: Option<String>) -> Result<u8, Fatal> {
    for entity in selected(ops, entity.as_deref())? {
        if entity.descriptor.ttl_registry.is_none() {
            println!("{}: no TTL registry, nothing to sweep", entity.name());
            continue;
        }
        let mut looked_at = 0;
        loop {
            let step = entity.sweep(&client, SWEEP_BUDGET).await?;
            looked_at += step;
            if step < SWEEP_BUDGET {
                break;
            }
        }
        println!(
            "{}: swept {looked_at} expired registry entries",
            entity.name()
        );
    }
    Ok(0)
}

fn print_json(value: &Value) {
    // Serializing a `Value` cannot fail.
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
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

fn drift_json(drift: &Drift) -> Value {
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

fn print_drift(drift: &[Drift], examples: usize) {
    for d in drift.iter().take(examples) {
        let value = d
            .value
            .as_ref()
            .map(|v| format!(" (value {v:?})"))
            .unwrap_or_default();
        println!(
            "    {} `{}` member {}{value}: {}",
            d.index,
            d.index_key,
            d.member,
            problem_text(&d.problem)
        );
    }
    if drift.len() > examples {
        println!(
            "    ... and {} more (--examples N shows more)",
            drift.len() - examples
        );
    }
}

fn print_skipped(skipped: &[Skipped]) {
    if skipped.is_empty() {
        return;
    }
    println!("  skipped {} keys holding foreign data:", skipped.len());
    for s in skipped {
        println!("    `{}`: {}", s.key, reason_text(&s.reason));
    }
}

fn verify_json(name: &str, report: &VerifyReport, examples: usize) -> Value {
    json!({
        "entity": name,
        "entities": report.entities,
        "entries": report.entries,
        "drift_total": report.drift.len(),
        "drift": report.drift.iter().take(examples).map(drift_json).collect::<Vec<_>>(),
        "skipped": skipped_json(&report.skipped),
    })
}

fn print_verify(name: &str, report: &VerifyReport, examples: usize) {
    let status = if report.drift.is_empty() {
        "ok".to_owned()
    } else {
        format!("{} drift entries", report.drift.len())
    };
    println!(
        "{name}: {status} ({} entities, {} index entries)",
        report.entities, report.entries
    );
    print_drift(&report.drift, examples);
    print_skipped(&report.skipped);
}

fn repair_json(name: &str, report: &RebuildReport, examples: usize) -> Value {
    json!({
        "entity": name,
        "reindexed": report.reindexed,
        "removed": report.removed,
        "registry_entries_moved": report.registry_entries_moved,
        "remaining_total": report.remaining.len(),
        "remaining": report.remaining.iter().take(examples).map(drift_json).collect::<Vec<_>>(),
        "skipped": skipped_json(&report.skipped),
    })
}

fn print_repair(name: &str, report: &RebuildReport, examples: usize) {
    println!(
        "{name}: reindexed {} entities, removed {} stale entries, moved {} legacy TTL registry entries",
        report.reindexed, report.removed, report.registry_entries_moved
    );
    if !report.remaining.is_empty() {
        println!("  {} drift entries left:", report.remaining.len());
        print_drift(&report.remaining, examples);
    }
    print_skipped(&report.skipped);
}

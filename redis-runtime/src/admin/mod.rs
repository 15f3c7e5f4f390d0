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
//! check, no Redis), `stats` (counts, sampled memory and TTLs, index sizes,
//! stream lag), `verify` (index drift per entity type), `repair` (rebuilds
//! drifted indexes; `--dry-run` says what it would change) and `sweep`
//! (removes index entries of expired entities now). The connection is
//! configured like the library's: [`Config::from_env`] (`REDIS_URL` and
//! the `REDIS_*` knobs). Only [`Config::endpoint`] is ever printed.
//!
//! The commands that read Redis are safe on a live keyspace: they walk it
//! a `SCAN` step at a time (`--scan-count`, default 500), hold one batch
//! in memory, and wait between batches so as to send at most
//! `--max-ops-per-sec` commands per second (default 5000; 0 is unlimited).
//! They show progress on stderr. Ctrl-C stops `verify` and `repair`
//! between two batches, prints a resume token and exits 130; the same
//! subcommand with `--resume TOKEN` continues where it stopped, with the
//! counts of both runs.
//!
//! Exit codes: 0 clean or done, 1 problems found (drift, overlap, or drift
//! left after a repair), 2 usage or connection error, 130 interrupted by
//! Ctrl-C.

use std::process::ExitCode;
use std::sync::Arc;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::keyspace::{EntityOps, KeyspaceOps};
use crate::{Client, Config};

mod interrupt;
mod output;
mod pace;
mod progress;
mod report;
mod resume;
mod session;
mod stats;
mod sweep;
mod walk;

use interrupt::EXIT_INTERRUPTED;
use output::{Out, warn};
use report::Mode;
use session::Session;
use walk::Ended;

/// Inspect, check and repair the Redis keyspace of this application's
/// entity types.
///
/// The connection is read from the environment like the application's
/// own: REDIS_URL (e.g. redis://user:password@host:6379/0, or
/// redis+sentinel://:password@sentinel1,sentinel2/mymaster/0) and the
/// optional REDIS_CONNECT_TIMEOUT, REDIS_RESPONSE_TIMEOUT,
/// REDIS_OPERATION_TIMEOUT, REDIS_MAX_RETRIES, REDIS_RETRY_MIN_DELAY,
/// REDIS_RETRY_MAX_DELAY, REDIS_LAZY_CONNECT, REDIS_TLS_CA_FILE,
/// REDIS_SENTINEL_USERNAME, REDIS_SENTINEL_PASSWORD, REDIS_WAIT_REPLICAS,
/// REDIS_WAIT_TIMEOUT and REDIS_REFUSE_EVICTION.
///
/// Commands that read Redis walk the keyspace a SCAN step at a time,
/// paced by --max-ops-per-sec (default 5000 commands per second, 0 for no
/// limit), with progress on stderr. Ctrl-C stops verify and repair between
/// two batches and prints a token: run the same subcommand with
/// --resume TOKEN to continue.
///
/// Exit codes: 0 clean or done; 1 problems found (index drift, colliding
/// key patterns, or drift left after a repair); 2 usage or connection
/// error; 130 interrupted by Ctrl-C.
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
    /// Per entity type: how many entities, memory and TTLs of a sample,
    /// index keys and entries, stream length and consumer-group lag.
    Stats {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Only this entity type (by its Rust name, e.g. Job).
        #[arg(long, value_name = "NAME")]
        entity: Option<String>,
        /// Read the memory and TTL of up to N entities per type.
        #[arg(long, value_name = "N", default_value_t = stats::DEFAULT_SAMPLE)]
        sample: usize,
        #[command(flatten)]
        pace: PaceArgs,
    },
    /// Compare every index with the entities' hashes and report drift:
    /// orphan entries, missing entries, wrong scores, and keys passed over
    /// because they hold foreign data. Exits 1 if there is drift.
    Verify {
        #[command(flatten)]
        walk: WalkArgs,
    },
    /// Rebuild drifted index entries from the entities' hashes and report
    /// what was fixed; also builds a new index for existing data (its
    /// entries are all missing). Exits 1 if drift is left (e.g. two
    /// entities claim one unique value).
    #[command(visible_alias = "reindex")]
    Repair {
        /// Only report what a repair would change, per drift entry (reindex
        /// the entity, or remove the entry); write nothing. Exits 1 if
        /// there is something to repair.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        walk: WalkArgs,
    },
    /// Remove the index entries of expired entities now, instead of on the
    /// next index query.
    Sweep {
        /// Only this entity type (by its Rust name, e.g. Job).
        #[arg(long, value_name = "NAME")]
        entity: Option<String>,
        #[command(flatten)]
        pace: PaceArgs,
    },
}

/// The arguments of a walk over every entity and index (`verify`,
/// `repair`).
#[derive(Debug, clap::Args)]
struct WalkArgs {
    #[command(flatten)]
    report: ReportArgs,
    #[command(flatten)]
    pace: PaceArgs,
    /// Continue an interrupted run of this subcommand from the token it
    /// printed.
    #[arg(long, value_name = "TOKEN")]
    resume: Option<String>,
}

#[derive(Debug, clap::Args)]
struct ReportArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Only this entity type (by its Rust name, e.g. Job).
    #[arg(long, value_name = "NAME")]
    entity: Option<String>,
    /// Show at most N drift entries (and skipped keys) per entity type;
    /// all are counted.
    #[arg(long, value_name = "N", default_value_t = 10)]
    examples: usize,
}

/// How fast a command may read and write.
#[derive(Debug, clap::Args)]
struct PaceArgs {
    /// Send at most N Redis commands per second, on average (0: no limit).
    #[arg(long, value_name = "N", default_value_t = pace::DEFAULT_MAX_OPS_PER_SEC)]
    max_ops_per_sec: u64,
    /// Keys per SCAN step and entries per index-scan step: the batch size.
    #[arg(
        long,
        value_name = "N",
        default_value_t = crate::index::pass::DEFAULT_SCAN_COUNT as u64,
        value_parser = clap::value_parser!(u64).range(1..=10_000),
    )]
    scan_count: u64,
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
    ExitCode::from(run(&ops, name, cli.command))
}

/// A failure that ends the command with exit code 2.
struct Fatal(String);

impl Fatal {
    /// A usage error, as the message says it.
    fn usage(message: String) -> Self {
        Fatal(message)
    }
}

impl From<crate::Error> for Fatal {
    fn from(e: crate::Error) -> Self {
        Fatal(format!("{}: {e}", e.code()))
    }
}

fn run(ops: &KeyspaceOps, program: &'static str, command: Command) -> u8 {
    let mut out = Out::default();
    let outcome = match command {
        Command::Describe { json } => Ok(describe(ops, json, &mut out)),
        Command::Check => Ok(check(ops, &mut out)),
        Command::Stats {
            json,
            entity,
            sample,
            pace,
        } => online(program, &pace, |session| {
            let out = &mut out;
            async move {
                let entities = selected(ops, entity.as_deref())?;
                let interrupted = stats::stats(&session, &entities, sample, json, out).await?;
                Ok(if interrupted { EXIT_INTERRUPTED } else { 0 })
            }
        }),
        Command::Verify { walk } => walk_command(ops, program, Mode::Verify, walk, &mut out),
        Command::Repair { dry_run, walk } => {
            let mode = if dry_run { Mode::DryRun } else { Mode::Repair };
            walk_command(ops, program, mode, walk, &mut out)
        }
        Command::Sweep { entity, pace } => online(program, &pace, |session| {
            let out = &mut out;
            async move {
                let entities = selected(ops, entity.as_deref())?;
                let interrupted = sweep::sweep(&session, &entities, out).await?;
                session.finish();
                out.line(session.summary());
                if interrupted {
                    warn("interrupted: run sweep again to continue (it has no position to keep)");
                    return Ok(EXIT_INTERRUPTED);
                }
                Ok(0)
            }
        }),
    };
    out.flush();
    match outcome {
        Ok(code) => code,
        Err(Fatal(message)) => {
            warn(format_args!("error: {message}"));
            2
        }
    }
}

/// Runs `verify` or `repair` (`mode`) online.
fn walk_command(
    ops: &KeyspaceOps,
    program: &'static str,
    mode: Mode,
    args: WalkArgs,
    out: &mut Out,
) -> Result<u8, Fatal> {
    let WalkArgs {
        report,
        pace,
        resume,
    } = args;
    online(program, &pace, |session| async move {
        match walk::walk(ops, &session, mode, &report, resume.as_deref(), out).await? {
            Ended::Finished { problems } => Ok(u8::from(problems)),
            Ended::Interrupted => Ok(EXIT_INTERRUPTED),
        }
    })
}

/// Connects with [`Config::from_env`] on a new runtime, watches for
/// Ctrl-C, and runs `f` with the session.
fn online<F, Fut>(program: &'static str, pace: &PaceArgs, f: F) -> Result<u8, Fatal>
where
    F: FnOnce(Arc<Session>) -> Fut,
    Fut: std::future::Future<Output = Result<u8, Fatal>>,
{
    let config = Config::from_env()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Fatal(format!("cannot start the async runtime: {e}")))?;
    let endpoint = config.endpoint().to_owned();
    let scan_count =
        usize::try_from(pace.scan_count).unwrap_or(crate::index::pass::DEFAULT_SCAN_COUNT);
    let max_ops_per_sec = pace.max_ops_per_sec;
    runtime.block_on(async move {
        let stop =
            interrupt::watch().map_err(|e| Fatal(format!("cannot watch for Ctrl-C: {e}")))?;
        let client = Client::connect(config)
            .await
            .map_err(|e| with_endpoint(e.into(), &endpoint))?;
        let session = Arc::new(Session::new(
            client,
            program,
            max_ops_per_sec,
            scan_count,
            stop,
        ));
        f(session).await.map_err(|e| with_endpoint(e, &endpoint))
    })
}

fn with_endpoint(Fatal(message): Fatal, endpoint: &str) -> Fatal {
    Fatal(format!("{message} (Redis at {endpoint})"))
}

fn describe(ops: &KeyspaceOps, json: bool, out: &mut Out) -> u8 {
    let keyspace = ops.manifest_keyspace();
    if json {
        out.line(keyspace.to_json());
    } else {
        out.text(&keyspace.to_markdown());
    }
    0
}

fn check(ops: &KeyspaceOps, out: &mut Out) -> u8 {
    match ops.keyspace() {
        Ok(keyspace) => {
            out.line(format_args!(
                "ok: {} entity types, no two of their key patterns can be the same key",
                keyspace.entities().len()
            ));
            // The Redis Cluster slot plan: informational until the client
            // runs on a cluster, so it does not change the exit code.
            for entity in keyspace.manifest().entities {
                let elsewhere: Vec<&str> = entity
                    .keys
                    .iter()
                    .filter(|k| !k.in_entity_slot)
                    .map(|k| k.pattern.as_str())
                    .collect();
                let hashed = entity.keys.first().map_or("", |k| k.slot.as_str());
                if elsewhere.is_empty() {
                    out.line(format_args!(
                        "cluster: {} keeps every key in its slot ({hashed})",
                        entity.name
                    ));
                } else {
                    out.line(format_args!(
                        "cluster: {} hashes {hashed}; not always in its slot: {}",
                        entity.name,
                        elsewhere.join(", ")
                    ));
                }
            }
            0
        }
        Err(e) => {
            out.line(e);
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

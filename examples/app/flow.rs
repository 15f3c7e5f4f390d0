//! The main example's data flow, against any client: one server, Sentinel
//! or a Redis Cluster (`main.rs` picks the server; `tests/cluster.rs` runs
//! this same flow on a cluster).

use std::time::{Duration, Instant, SystemTime};

use redis_runtime::pubsub::Channel;
use redis_runtime::stream::Stream;
use redis_runtime::worker::{CancellationToken, Worker};
use redis_runtime::{Client, Conditional, Json, Page, ScoreRange, Ttl};

use crate::model::{
    GitProvider, Job, JobFilter, JobPatch, JobStatus, JobUpdate, Session, User, UserPatch,
};

type AnyError = Box<dyn std::error::Error + Send + Sync>;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Creates a user, a session and git providers, creates and enqueues jobs,
/// lists the user's job history, consumes the jobs with a worker that
/// streams their output and publishes their status, then cleans up what
/// it created (jobs stay, as a job history does).
pub(crate) async fn run(client: &Client) -> Result<(), AnyError> {
    let client = client.clone();
    // A run id keeps repeated runs against a shared REDIS_URL apart.
    let run = format!("{:x}", now_ms());
    let user_id = format!("u-{run}");

    // --- Users: create, read, update, unique lookup -----------------------
    let mut user = User {
        id: user_id.clone(),
        email: format!("ada-{run}@example.com"),
        display_name: "Ada Lovelace".into(),
        created_at: now_ms(),
        last_login_at: None,
    };
    user.create(&client).await?;
    println!("created {}", User::key_for(&user.id)?);
    let by_email = User::by_email(&client, &user.email).await?;
    println!("found by email: {:?}", by_email.map(|u| u.display_name));
    user.display_name = "Ada King".into();
    user.update(&client).await?;
    User::patch(
        &client,
        &user.id,
        &UserPatch {
            last_login_at: Some(Some(now_ms())),
            ..Default::default()
        },
    )
    .await?;
    let loaded = User::get(&client, &user.id).await?.ok_or("user vanished")?;
    println!(
        "user now: {} (last login {:?})",
        loaded.display_name, loaded.last_login_at
    );

    // --- Sessions: a 7-day TTL applied atomically on create ---------------
    let session = Session {
        id: format!("s-{run}"),
        user_id: user_id.clone(),
        created_at: now_ms(),
    };
    session.create(&client).await?;
    if let Ttl::ExpiresIn(left) = Session::ttl(&client, &session.id).await? {
        println!(
            "session {} expires in {} h",
            session.id,
            left.as_secs() / 3600
        );
    }
    Session::expire(&client, &session.id, Duration::from_secs(3600)).await?;
    println!(
        "session shortened to 1 h; still there: {}",
        Session::exists(&client, &session.id).await?
    );

    // --- Git providers: set membership by owner ---------------------------
    for (n, kind) in ["github", "gitlab"].iter().enumerate() {
        GitProvider {
            id: format!("gp-{run}-{n}"),
            user_id: user_id.clone(),
            kind: kind.to_string(),
            token_ref: format!("vault:gp/{n}"),
        }
        .create(&client)
        .await?;
    }
    let providers = GitProvider::by_user_id(&client, &user_id).await?;
    println!(
        "git providers of {user_id}: {:?}",
        providers.iter().map(|p| &p.kind).collect::<Vec<_>>()
    );

    // --- Jobs: created and enqueued on jobs:stream in one step ------------
    let jobs = Stream::<Job>::of_entity(&client)?;
    let group = jobs.group("runners");
    // A new group reads from the beginning: jobs enqueued before it existed
    // are not skipped.
    group.ensure().await?;
    let started = now_ms();
    let mut job_ids = Vec::new();
    for (n, command) in ["cargo build", "cargo test", "cargo clippy"]
        .iter()
        .enumerate()
    {
        let job = Job {
            id: format!("j-{run}-{n}"),
            user_id: user_id.clone(),
            repo: "github.com/acme/app".into(),
            command: command.to_string(),
            status: JobStatus::Queued,
            created_at: started + n as i64,
            attempts: 0,
            error: None,
        };
        let outcome = job.create(&client).await?;
        println!(
            "job {} queued as stream entry {}",
            job.id,
            outcome.stream_id.unwrap_or_default()
        );
        job_ids.push(job.id);
    }

    let history = Job::by_user_id(&client, &user_id, Page::newest_first(10)).await?;
    println!("job history of {user_id}, newest first:");
    for job in &history {
        println!("  {} {:<14} {:?}", job.id, job.command, job.status);
    }
    // One query over two indexes, evaluated in Redis: this user's jobs
    // that are still queued, newest first.
    let queued = JobFilter {
        status: Some(JobStatus::Queued),
    };
    let all = ScoreRange::all();
    let waiting =
        Job::by_user_id_where(&client, &user_id, &queued, &all, Page::newest_first(10)).await?;
    let ids: Vec<&str> = waiting.iter().map(|j| j.id.as_str()).collect();
    println!("queued jobs of {user_id}, newest first: {ids:?}");

    // --- Status updates: a subscriber on its own connection ---------------
    let updates = Channel::<Json<JobUpdate>>::new(&client, "job_updates");
    let mut subscription = updates.subscribe().await?;
    let printer = tokio::spawn(async move {
        while let Some(update) = subscription.next().await {
            match update {
                Ok(Json(u)) => println!("  [job_updates] {} -> {:?}", u.job_id, u.status),
                Err(e) => println!("  [job_updates] undecodable update: {e}"),
            }
        }
    });

    // --- The worker: consume, run, append output, publish, ack ------------
    // Declared on Job: job:{id}:output, TTL refreshed on every append.
    let output = Job::output_log(&client)?;
    let stop = CancellationToken::new();
    let worker = {
        let hook_client = client.clone();
        let (client, output, updates) = (client.clone(), output.clone(), updates.clone());
        let handler = move |entry: redis_runtime::stream::Entry<Job>| {
            let (client, output, updates) = (client.clone(), output.clone(), updates.clone());
            async move {
                let job = entry.message;
                // Claim it: queued -> running in one atomic step. A stream
                // entry delivered again (after a worker crash) finds it
                // claimed already and is acknowledged without running twice.
                let claim = Job::patch_if(
                    &client,
                    &job.id,
                    &JobPatch {
                        status: Some(JobStatus::Queued),
                        ..Default::default()
                    },
                    &JobPatch {
                        status: Some(JobStatus::Running),
                        ..Default::default()
                    },
                )
                .await?;
                if let Conditional::Failed { current } = claim {
                    println!("  {} already {:?}: not run again", job.id, current.status);
                    return Ok(());
                }
                let attempt = Job::incr_attempts(&client, &job.id, 1).await?;
                // Record the new status, then tell the web app about it.
                let set_status = |status| {
                    let (client, updates) = (client.clone(), updates.clone());
                    let update = JobUpdate {
                        tenant_id: job.user_id.clone(),
                        job_id: job.id.clone(),
                        status,
                        error: None,
                    };
                    async move {
                        let patch = JobPatch {
                            status: Some(status),
                            ..Default::default()
                        };
                        Job::patch(&client, &update.job_id, &patch).await?;
                        updates.publish(&Json(update)).await
                    }
                };
                updates
                    .publish(&Json(JobUpdate {
                        tenant_id: job.user_id.clone(),
                        job_id: job.id.clone(),
                        status: JobStatus::Running,
                        error: None,
                    }))
                    .await?;
                output
                    .append(&job.id, &format!("$ {} (attempt {attempt})", job.command))
                    .await?;
                output.append(&job.id, "ok: finished").await?;
                set_status(JobStatus::Completed).await?;
                Ok::<(), redis_runtime::Error>(())
            }
        };
        // A job that keeps failing is parked on the dead-letter stream;
        // first, mark it failed so the web app shows why.
        let worker = Worker::new(group)
            .concurrency(4)
            .on_dead_letter(move |dead| {
                let client = hook_client.clone();
                async move {
                    let patch = JobPatch {
                        status: Some(JobStatus::Failed),
                        error: Some(Some(dead.error)),
                        ..Default::default()
                    };
                    Job::patch(&client, &dead.message.id, &patch).await
                }
            });
        tokio::spawn(worker.run(handler, stop.clone()))
    };

    // Wait (with a deadline) until every job of this run has completed.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let done = Job::get_many(&client, &job_ids)
            .await?
            .iter()
            .filter(|j| j.as_ref().is_some_and(|j| j.status == JobStatus::Completed))
            .count();
        if done == job_ids.len() {
            break;
        }
        if Instant::now() > deadline {
            return Err("jobs did not complete within 30 s".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for id in &job_ids {
        println!("output of {id}: {:?}", output.all(id).await?);
    }
    println!(
        "completed jobs: {}, queued: {}",
        Job::by_status_count(&client, &JobStatus::Completed).await?,
        Job::by_status_count(&client, &JobStatus::Queued).await?
    );

    // --- Shutdown: stop the worker, then the subscriber, then the client --
    stop.cancel();
    let report = worker.await??;
    println!("worker stopped: {report:?}");
    printer.abort();
    let _ = printer.await;

    // Clean up this run's data when running against a shared server.
    Session::delete(&client, &session.id).await?;
    for p in providers {
        GitProvider::delete(&client, &p.id).await?;
    }
    User::delete(&client, &user.id).await?;
    Ok(())
}

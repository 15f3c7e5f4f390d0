//! Cursor pages and bulk deletes by index against a real `redis-server`:
//! walks that insert and delete around the cursor between pages (and from
//! a concurrent task) must return every entry that stays live for the whole
//! walk exactly once, in order, and nothing twice; a bulk delete must take
//! every entity with all its entries and leave the rest alone.

#[allow(dead_code)]
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use redis_runtime::index::{Cursor, CursorPage, Order};
use redis_runtime::testing::{RedisServer, raw_query};
use redis_runtime::{Client, Record, RedisEntity};

use common::{Job, JobPatch, JobStatus, assert_no_drift, create_all, job};

/// Indexed with a TTL long enough to outlive any test: its entities are in
/// the TTL registry.
#[derive(RedisEntity, Debug, Clone, PartialEq)]
#[redis(key = "visit:{id}", ttl = "1h")]
#[redis(sorted_index(key = "visits:path:{path}", score = "at"))]
#[redis(index(key = "visits:browser:{browser}"))]
struct Visit {
    id: String,
    path: String,
    browser: String,
    at: i64,
}

fn visit(id: &str, path: &str, at: i64) -> Visit {
    Visit {
        id: id.into(),
        path: path.into(),
        browser: "b".into(),
        at,
    }
}

/// A small deterministic generator (xorshift), so a failing walk repeats.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }

    fn pick<'a>(&mut self, from: &'a BTreeSet<String>) -> Option<&'a String> {
        let n = from.len() as u64;
        (n > 0).then(|| from.iter().nth(self.below(n) as usize))?
    }
}

/// A sorted-index position: (score, id), compared as Redis orders them.
type Position = (i64, String);

/// Whether `entry` comes strictly after `cursor` in `order`.
fn ahead(order: Order, entry: &Position, cursor: &Position) -> bool {
    match order {
        Order::Ascending => entry > cursor,
        Order::Descending => entry < cursor,
    }
}

/// What a walk must and must not return.
#[derive(Default)]
struct Expect {
    /// Live for the whole walk: seen exactly once.
    stable: BTreeSet<String>,
    /// Inserted ahead of the cursor and still live: seen.
    inserted_ahead: BTreeSet<String>,
    /// Inserted behind the cursor, or deleted before the walk reached it:
    /// never seen.
    never: BTreeSet<String>,
}

impl Expect {
    fn check(&self, seen: &[String]) {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for id in seen {
            *counts.entry(id).or_default() += 1;
        }
        let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
        assert!(twice.is_empty(), "returned twice: {twice:?}");
        let missed: Vec<_> = self
            .stable
            .iter()
            .chain(&self.inserted_ahead)
            .filter(|id| !counts.contains_key(id.as_str()))
            .collect();
        assert!(missed.is_empty(), "skipped: {missed:?}");
        let wrong: Vec<_> = self
            .never
            .iter()
            .filter(|id| counts.contains_key(id.as_str()))
            .collect();
        assert!(
            wrong.is_empty(),
            "returned though behind or deleted: {wrong:?}"
        );
    }
}

/// 500 jobs of `user`, ids `j000`…, with 100 distinct scores (five ties
/// each, the ids of a tie spread over the range), some of them negative.
fn five_hundred(user: &str) -> Vec<Job> {
    (0..500)
        .map(|i| {
            let score = (i * 37 % 100) as i64 - 20;
            job(&format!("j{i:03}"), user, JobStatus::Queued, score)
        })
        .collect()
}

/// Walks `user`'s jobs in `order`, `size` per page; after each page
/// inserts two jobs ahead of the cursor and two behind it (some at the
/// cursor's own score, on either side of its id) and deletes one job not
/// yet seen and one already seen. Checks every page is in order.
async fn walk_sorted_with_changes(client: &Client, user: &str, order: Order, size: u64) {
    let initial = five_hundred(user);
    let mut expect = Expect {
        stable: initial.iter().map(|j| j.id.clone()).collect(),
        ..Expect::default()
    };
    let mut scores: BTreeMap<String, i64> = initial
        .iter()
        .map(|j| (j.id.clone(), j.created_at))
        .collect();
    create_all(client, initial).await;
    // Another user's jobs share no entry with this walk.
    create_all(client, [job("elsewhere", "other", JobStatus::Queued, 0)]).await;

    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut seen: Vec<String> = Vec::new();
    let mut positions: Vec<Position> = Vec::new();
    let mut page = Some(CursorPage::new(size, order));
    let mut step = 0;
    while let Some(p) = page {
        let got = Job::by_user_id_after(client, user, &p).await.expect("page");
        assert!(got.skipped().is_empty());
        assert!(got.len() as u64 <= size);
        for j in got.iter() {
            assert_eq!(j.user_id, user);
            seen.push(j.id.clone());
            positions.push((j.created_at, j.id.clone()));
        }
        // The cursor travels as text, as it would through a link.
        page = got.next_page(&p).map(|p| {
            p.clone().after(
                p.after
                    .expect("a cursor")
                    .to_string()
                    .parse::<Cursor>()
                    .expect("parses"),
            )
        });
        let Some(cursor) = page.as_ref().and_then(|p| p.after.clone()) else {
            break;
        };
        assert_eq!(Some(cursor.id()), got.last().map(|j| j.id.as_str()));
        let at: Position = (
            cursor.score().expect("sorted") as i64,
            cursor.id().to_string(),
        );
        step += 1;

        // Two inserts on each side of the cursor, one of each at its score.
        let offset = 1 + rng.below(15) as i64;
        let candidates = [
            (at.0, format!("a{step:03}")),
            (at.0, format!("z{step:03}")),
            (at.0 - offset, format!("m{step:03}")),
            (at.0 + offset, format!("n{step:03}")),
        ];
        for (score, id) in candidates {
            create_all(client, [job(&id, user, JobStatus::Queued, score)]).await;
            scores.insert(id.clone(), score);
            if ahead(order, &(score, id.clone()), &at) {
                expect.inserted_ahead.insert(id);
            } else {
                expect.never.insert(id);
            }
        }
        // A delete ahead of the cursor (from the stable or the inserted
        // ones) and one behind it.
        let seen_set: BTreeSet<String> = seen.iter().cloned().collect();
        let unseen: BTreeSet<String> = expect
            .stable
            .iter()
            .chain(&expect.inserted_ahead)
            .filter(|id| !seen_set.contains(*id))
            .cloned()
            .collect();
        if let Some(id) = rng.pick(&unseen).cloned() {
            assert!(Job::delete(client, &id).await.expect("delete"));
            expect.stable.remove(&id);
            expect.inserted_ahead.remove(&id);
            expect.never.insert(id);
        }
        let behind: BTreeSet<String> = seen_set
            .iter()
            .filter(|id| expect.stable.contains(*id))
            .cloned()
            .collect();
        if let Some(id) = rng.pick(&behind).cloned() {
            assert!(Job::delete(client, &id).await.expect("delete"));
            expect.stable.remove(&id);
        }
    }
    assert!(step > 500 / size as usize, "walked {step} pages");
    for pair in positions.windows(2) {
        assert!(ahead(order, &pair[1], &pair[0]), "out of order: {pair:?}");
    }
    for (score, id) in &positions {
        assert_eq!(scores.get(id), Some(score), "{id} at its score");
    }
    expect.check(&seen);
    assert_no_drift::<Job>(client).await;
}

#[tokio::test]
async fn a_newest_first_walk_survives_inserts_and_deletes_around_the_cursor() {
    let (_server, client) = RedisServer::start_with_client().await;
    walk_sorted_with_changes(&client, "walker", Order::Descending, 23).await;
}

#[tokio::test]
async fn an_oldest_first_walk_survives_inserts_and_deletes_around_the_cursor() {
    let (_server, client) = RedisServer::start_with_client().await;
    walk_sorted_with_changes(&client, "walker", Order::Ascending, 7).await;
}

#[tokio::test]
async fn long_runs_of_equal_scores_page_through_without_repeats() {
    // 130 entries at one score and 20 around it, pages of 6: every page
    // inside the run skips more ties than the plain read leaves room for.
    let (_server, client) = RedisServer::start_with_client().await;
    let tied = (0..130).map(|i| job(&format!("t{i:03}"), "ties", JobStatus::Queued, 5));
    let around = (0..20).map(|i| job(&format!("r{i:02}"), "ties", JobStatus::Queued, i % 2 * 10));
    create_all(&client, tied.chain(around)).await;
    for order in [Order::Ascending, Order::Descending] {
        let mut entities = Vec::new();
        let mut ids = Vec::new();
        let mut page = Some(CursorPage::new(6, order));
        while let Some(p) = page {
            let got = Job::by_user_id_after(&client, "ties", &p)
                .await
                .expect("page");
            entities.extend(got.iter().map(|j| (j.created_at, j.id.clone())));
            page = got.next_page(&p);
        }
        let mut id_page = Some(CursorPage::new(6, order));
        while let Some(p) = id_page {
            let got = Job::by_user_id_ids_after(&client, "ties", &p)
                .await
                .expect("ids");
            ids.extend(got.ids.iter().cloned());
            id_page = got.next_page(&p);
        }
        let mut expected: Vec<(i64, String)> = entities.clone();
        expected.sort();
        if order == Order::Descending {
            expected.reverse();
        }
        assert_eq!(entities, expected, "{order:?}: in order");
        assert_eq!(entities.len(), 150, "{order:?}: all, once");
        let from_entities: Vec<String> = entities.into_iter().map(|(_, id)| id).collect();
        assert_eq!(ids, from_entities, "{order:?}: the ids walk agrees");
    }
}

#[tokio::test]
async fn a_walk_next_to_a_busy_writer_returns_each_stable_entry_once() {
    let (_server, client) = RedisServer::start_with_client().await;
    let initial = five_hundred("busy");
    let stable: BTreeSet<String> = initial.iter().map(|j| j.id.clone()).collect();
    create_all(&client, initial).await;
    create_all(
        &client,
        (0..100).map(|i| job(&format!("s{i:03}"), "busy", JobStatus::Running, 7)),
    )
    .await;

    // Churn on both indexes the walks read: jobs `c…` come and go at
    // random scores, and set members move in and out of `queued`.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn({
        let (client, stop) = (client.clone(), stop.clone());
        async move {
            let mut rng = Rng(42);
            let mut live: BTreeSet<String> = BTreeSet::new();
            let mut k = 0u32;
            while !stop.load(Ordering::Relaxed) {
                k += 1;
                let id = format!("c{k:05}");
                let score = rng.below(120) as i64 - 20;
                create_all(&client, [job(&id, "busy", JobStatus::Queued, score)]).await;
                live.insert(id);
                if let Some(gone) = rng.pick(&live).cloned() {
                    Job::delete(&client, &gone).await.expect("delete");
                    live.remove(&gone);
                }
                let mover = format!("s{:03}", rng.below(100));
                let status = if rng.below(2) == 0 {
                    JobStatus::Queued
                } else {
                    JobStatus::Running
                };
                let patch = JobPatch {
                    status: Some(status),
                    ..Default::default()
                };
                Job::patch(&client, &mover, &patch).await.expect("patch");
            }
            k
        }
    });

    let mut seen = Vec::new();
    let mut positions: Vec<Position> = Vec::new();
    let mut page = Some(CursorPage::newest_first(11));
    while let Some(p) = page {
        let got = Job::by_user_id_after(&client, "busy", &p)
            .await
            .expect("page");
        for j in got.iter() {
            seen.push(j.id.clone());
            positions.push((j.created_at, j.id.clone()));
        }
        page = got.next_page(&p);
    }
    let mut members = Vec::new();
    let mut page = Some(CursorPage::by_id(13));
    while let Some(p) = page {
        let got = Job::by_status_after(&client, &JobStatus::Queued, &p)
            .await
            .expect("set page");
        members.extend(got.iter().map(|j| j.id.clone()));
        page = got.next_page(&p);
    }
    stop.store(true, Ordering::Relaxed);
    let written = writer.await.expect("writer");
    assert!(written > 5, "the writer ran during the walks ({written})");

    for pair in positions.windows(2) {
        assert!(ahead(Order::Descending, &pair[1], &pair[0]), "{pair:?}");
    }
    let sorted_walk = Expect {
        stable: stable.clone(),
        ..Expect::default()
    };
    sorted_walk.check(&seen);
    assert!(members.windows(2).all(|w| w[0] < w[1]), "set walk by id");
    let set_walk = Expect {
        stable,
        ..Expect::default()
    };
    set_walk.check(&members);
    assert_no_drift::<Job>(&client).await;
}

/// Walks the `queued` set index in `order`, `size` per page; after each
/// page inserts members on both sides of the cursor, deletes one unseen
/// member, and moves another unseen one out of the index.
async fn walk_set_with_changes(client: &Client, order: Order, size: u64, ids_only: bool) {
    let initial: Vec<Job> = (0..500)
        .map(|i| job(&format!("q{:03}", i * 7 % 500), "u", JobStatus::Queued, 0))
        .collect();
    let mut expect = Expect {
        stable: initial.iter().map(|j| j.id.clone()).collect(),
        ..Expect::default()
    };
    create_all(client, initial).await;
    create_all(client, [job("running", "u", JobStatus::Running, 0)]).await;

    let mut rng = Rng(7);
    let mut seen: Vec<String> = Vec::new();
    let mut page = Some(CursorPage::new(size, order));
    let mut step = 0;
    while let Some(p) = page {
        let (ids, next) = if ids_only {
            let got = Job::by_status_ids_after(client, &JobStatus::Queued, &p)
                .await
                .expect("ids");
            (got.ids.clone(), got.next_page(&p))
        } else {
            let got = Job::by_status_after(client, &JobStatus::Queued, &p)
                .await
                .expect("page");
            assert!(got.iter().all(|j| j.status == JobStatus::Queued));
            (
                got.iter().map(|j| j.id.clone()).collect(),
                got.next_page(&p),
            )
        };
        assert!(ids.len() as u64 <= size);
        seen.extend(ids);
        page = next;
        let Some(cursor) = page.as_ref().and_then(|p| p.after.clone()) else {
            break;
        };
        assert_eq!(cursor.score(), None);
        let at = cursor.id().to_string();
        step += 1;
        // Ids just after and just before the cursor's, and far off.
        for id in [
            format!("{at}a"),
            format!("q{step:03}"),
            format!("p{step:03}"),
            format!("r{step:03}"),
        ] {
            if expect.stable.contains(&id) || Job::exists(client, &id).await.expect("exists") {
                continue;
            }
            create_all(client, [job(&id, "u", JobStatus::Queued, 0)]).await;
            let is_ahead = match order {
                Order::Ascending => id > at,
                Order::Descending => id < at,
            };
            if is_ahead {
                expect.inserted_ahead.insert(id);
            } else {
                expect.never.insert(id);
            }
        }
        let seen_set: BTreeSet<String> = seen.iter().cloned().collect();
        let unseen: BTreeSet<String> = expect
            .stable
            .iter()
            .chain(&expect.inserted_ahead)
            .filter(|id| !seen_set.contains(*id))
            .cloned()
            .collect();
        if let Some(id) = rng.pick(&unseen).cloned() {
            assert!(Job::delete(client, &id).await.expect("delete"));
            expect.stable.remove(&id);
            expect.inserted_ahead.remove(&id);
            expect.never.insert(id);
        }
        let unseen: BTreeSet<String> = unseen
            .into_iter()
            .filter(|id| !expect.never.contains(id))
            .collect();
        if let Some(id) = rng.pick(&unseen).cloned() {
            let patch = JobPatch {
                status: Some(JobStatus::Completed),
                ..Default::default()
            };
            Job::patch(client, &id, &patch).await.expect("move out");
            expect.stable.remove(&id);
            expect.inserted_ahead.remove(&id);
            expect.never.insert(id);
        }
    }
    assert!(step >= 400 / size as usize, "walked {step} pages");
    let in_order = seen.windows(2).all(|w| match order {
        Order::Ascending => w[0] < w[1],
        Order::Descending => w[0] > w[1],
    });
    assert!(in_order, "set pages by id");
    expect.check(&seen);
    assert_no_drift::<Job>(client).await;
}

#[tokio::test]
async fn a_set_index_walk_by_id_survives_inserts_deletes_and_moves() {
    let (_server, client) = RedisServer::start_with_client().await;
    walk_set_with_changes(&client, Order::Ascending, 29, false).await;
}

#[tokio::test]
async fn a_descending_set_ids_walk_survives_inserts_deletes_and_moves() {
    let (_server, client) = RedisServer::start_with_client().await;
    walk_set_with_changes(&client, Order::Descending, 17, true).await;
}

#[tokio::test]
async fn pages_pass_over_entities_that_expired_or_vanished() {
    let (_server, client) = RedisServer::start_with_client().await;
    create_all(&client, (0..10).map(|i| visit(&format!("v{i}"), "home", i))).await;
    // A hash removed behind the runtime's back, and a member naming nothing.
    let _: i64 = raw_query(&client, &["DEL", "visit:v3"]).await;
    let _: i64 = raw_query(&client, &["ZADD", "visits:path:home", "4", "ghost"]).await;
    let _: i64 = raw_query(&client, &["SADD", "visits:browser:b", "ghost"]).await;
    let expected = ["v0", "v1", "v2", "v4", "v5", "v6", "v7", "v8", "v9"];
    let mut ids = Vec::new();
    let mut page = Some(CursorPage::oldest_first(3));
    while let Some(p) = page {
        let got = Visit::by_path_after(&client, "home", &p)
            .await
            .expect("page");
        ids.extend(got.iter().map(|l| l.id.clone()));
        page = got.next_page(&p);
    }
    assert_eq!(ids, expected);
    let mut ids = Vec::new();
    let mut page = Some(CursorPage::by_id(4));
    while let Some(p) = page {
        let got = Visit::by_browser_after(&client, "b", &p)
            .await
            .expect("page");
        ids.extend(got.iter().map(|l| l.id.clone()));
        page = got.next_page(&p);
    }
    assert_eq!(ids, expected);
}

#[tokio::test]
async fn a_cursor_of_the_wrong_kind_is_refused() {
    let (_server, client) = RedisServer::start_with_client().await;
    let set_cursor = CursorPage::by_id(5).after(Cursor::set("a"));
    let err = Job::by_user_id_after(&client, "u", &set_cursor)
        .await
        .expect_err("refused");
    assert_eq!(err.code(), "ENCODE");
    let sorted_cursor = CursorPage::by_id(5).after(Cursor::sorted(1.0, "a"));
    let err = Job::by_status_ids_after(&client, &JobStatus::Queued, &sorted_cursor)
        .await
        .expect_err("refused");
    assert_eq!(err.code(), "ENCODE");
    let empty = Job::by_user_id_after(&client, "u", &CursorPage::newest_first(0))
        .await
        .expect("a zero limit");
    assert!(empty.is_empty() && empty.next.is_none());
}

#[tokio::test]
async fn a_bulk_delete_removes_every_listed_entity_with_all_its_entries() {
    let (_server, client) = RedisServer::start_with_client().await;
    // 250 queued jobs over three users, and jobs the delete must not touch.
    create_all(
        &client,
        (0..250).map(|i| {
            job(
                &format!("d{i:03}"),
                &format!("u{}", i % 3),
                JobStatus::Queued,
                i,
            )
        }),
    )
    .await;
    let keep = [
        job("k1", "u0", JobStatus::Running, 1),
        job("k2", "u1", JobStatus::Failed, 2),
        job("k3", "other", JobStatus::Completed, 3),
    ];
    create_all(&client, keep.clone()).await;
    let _: String = raw_query(&client, &["SET", "unrelated", "v"]).await;
    // A stale entry (its job is running) and a dead one: dropped, neither
    // deleted nor counted.
    let _: i64 = raw_query(&client, &["SADD", "jobs:status:queued", "k1", "ghost"]).await;
    assert_eq!(
        Job::by_status_count(&client, &JobStatus::Queued)
            .await
            .expect("count"),
        252
    );

    // The first call loads the script; the count below is of batches.
    assert_eq!(
        Job::delete_by_user_id(&client, "nobody")
            .await
            .expect("bulk"),
        0
    );
    let before = client.round_trips();
    let removed = Job::delete_by_status(&client, &JobStatus::Queued)
        .await
        .expect("bulk");
    assert_eq!(removed, 250);
    assert_eq!(client.round_trips() - before, 3, "batches of 100");

    assert_eq!(
        Job::by_status_count(&client, &JobStatus::Queued)
            .await
            .expect("count"),
        0
    );
    for i in [0, 99, 100, 249] {
        let id = format!("d{i:03}");
        assert!(!Job::exists(&client, &id).await.expect("exists"), "{id}");
        assert_eq!(
            Job::by_slug(&client, &format!("slug-{id}"))
                .await
                .expect("slug"),
            None
        );
    }
    for user in ["u0", "u1", "u2"] {
        let ids = Job::by_user_id_ids_after(&client, user, &CursorPage::oldest_first(10))
            .await
            .expect("ids");
        let kept: Vec<&str> = keep
            .iter()
            .filter(|j| j.user_id == user)
            .map(|j| j.id.as_str())
            .collect();
        assert_eq!(ids.ids, kept, "{user}: only the kept jobs");
    }
    for j in &keep {
        assert_eq!(
            Job::get(&client, &j.id).await.expect("get").as_ref(),
            Some(j)
        );
        let by_slug = Job::by_slug(&client, &j.slug).await.expect("slug");
        assert_eq!(by_slug.map(|f| f.id), Some(j.id.clone()));
    }
    let unrelated: String = raw_query(&client, &["GET", "unrelated"]).await;
    assert_eq!(unrelated, "v");
    let jobs: Vec<String> = raw_query(&client, &["KEYS", "job:*"]).await;
    assert_eq!(jobs.len(), 3, "{jobs:?}");
    assert_no_drift::<Job>(&client).await;

    // By a sorted index too; an empty index key deletes nothing.
    assert_eq!(
        Job::delete_by_user_id(&client, "other")
            .await
            .expect("bulk"),
        1
    );
    assert_eq!(
        Job::delete_by_user_id(&client, "nobody")
            .await
            .expect("bulk"),
        0
    );
    assert!(!Job::exists(&client, "k3").await.expect("exists"));
    assert_no_drift::<Job>(&client).await;
}

#[tokio::test]
async fn a_bulk_delete_of_expiring_entities_clears_the_ttl_registry() {
    let (_server, client) = RedisServer::start_with_client().await;
    create_all(
        &client,
        (0..120).map(|i| visit(&format!("v{i:03}"), "gone", i)),
    )
    .await;
    create_all(&client, [visit("kept", "stays", 1)]).await;
    let registry = Visit::descriptor().ttl_registry.expect("a registry");
    let listed: u64 = raw_query(&client, &["ZCARD", registry]).await;
    assert_eq!(listed, 121);

    let removed = Visit::delete_by_path(&client, "gone").await.expect("bulk");
    assert_eq!(removed, 120);
    let listed: Vec<String> = raw_query(&client, &["ZRANGE", registry, "0", "-1"]).await;
    assert_eq!(listed, ["kept"]);
    let snapshots: u64 = raw_query(&client, &["HLEN", &format!("{registry}:fields")]).await;
    assert_eq!(snapshots, 1);
    assert_eq!(
        Visit::by_browser_count(&client, "b").await.expect("count"),
        1
    );
    assert_no_drift::<Visit>(&client).await;
}

/// Awaits `operation`, which must succeed in exactly `expected` round trips.
async fn round_trips<T>(
    client: &Client,
    what: &str,
    expected: u64,
    operation: impl Future<Output = redis_runtime::Result<T>>,
) -> T {
    let before = client.round_trips();
    let output = operation.await;
    assert_eq!(client.round_trips() - before, expected, "{what}");
    output.unwrap_or_else(|e| panic!("{what}: {e}"))
}

#[tokio::test]
async fn a_cursor_page_is_two_round_trips_unless_ties_or_dead_entries_need_the_script() {
    let (_server, client) = RedisServer::start_with_client().await;
    create_all(
        &client,
        (0..9).map(|i| job(&format!("r{i}"), "rt", JobStatus::Queued, i)),
    )
    .await;
    create_all(
        &client,
        (0..6).map(|i| job(&format!("t{i}"), "tied", JobStatus::Running, 5)),
    )
    .await;
    // Loads the cursor script, so the counts below are of the pages alone.
    let warm = Job::by_user_id_ids_after(&client, "nobody", &CursorPage::newest_first(1)).await;
    assert!(warm.expect("warm").ids.is_empty());

    let first = CursorPage::newest_first(3);
    let page = Job::by_user_id_after(&client, "rt", &first);
    let page = round_trips(&client, "first page: ZRANGE, pipeline", 2, page).await;
    let ids: Vec<&str> = page.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(ids, ["r8", "r7", "r6"]);
    let second = page.next_page(&first).expect("more");
    let page = Job::by_user_id_after(&client, "rt", &second);
    let page = round_trips(&client, "next page", 2, page).await;
    let ids: Vec<&str> = page.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(ids, ["r5", "r4", "r3"]);

    // A hash gone behind the runtime's back: the atomic re-read.
    let _: i64 = raw_query(&client, &["DEL", "job:r1"]).await;
    let third = page.next_page(&second).expect("more");
    let page = Job::by_user_id_after(&client, "rt", &third);
    let page = round_trips(&client, "dead entry: ZRANGE, pipeline, script", 3, page).await;
    let ids: Vec<&str> = page.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(ids, ["r2", "r0"]);
    assert_eq!(page.next, None, "the end");

    let ids = Job::by_user_id_ids_after(&client, "rt", &third);
    let ids = round_trips(&client, "ids page: the script", 1, ids).await;
    assert_eq!(ids.ids, ["r2", "r0"]);

    // Inside a run of ties the plain read cannot skip them all.
    let first = CursorPage::oldest_first(2);
    let page = Job::by_user_id_after(&client, "tied", &first);
    let page = round_trips(&client, "first tied page", 2, page).await;
    let second = page.next_page(&first).expect("more");
    let page = Job::by_user_id_after(&client, "tied", &second);
    let page = round_trips(&client, "ties: ZRANGE, script ids, pipeline", 3, page).await;
    let ids: Vec<&str> = page.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(ids, ["t2", "t3"]);

    let by_id = CursorPage::by_id(4);
    let set_page = Job::by_status_after(&client, &JobStatus::Running, &by_id);
    let set_page = round_trips(&client, "set page: script ids, pipeline", 2, set_page).await;
    let ids: Vec<&str> = set_page.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(ids, ["t0", "t1", "t2", "t3"]);
    assert_eq!(set_page.next, Some(Cursor::set("t3")));
}

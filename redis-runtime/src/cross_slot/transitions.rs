//! State transitions of the protocol's rounds (applying a pending record,
//! claiming a unique value), against a scripted
//! connection: each test gives the replies a cluster would give, in
//! order, and checks the exact command the client sends after each one
//! (the release mode, another lease, letting the lease go), so a broken
//! transition fails without a cluster.

use redis::Value;
use redis_test::MockCmd;

use super::pending::{Applied, rounds};
use super::{Retry, token, unique_claims};
use crate::client::Scripted;
use crate::codec::Record;
use crate::script::protocol::WriteCode;
use crate::script::{self, EntityScripts, LEASE};
use crate::{Client, Config, Context};

/// An order in its own slot, its status set global and `cross_slot`.
#[derive(crate::RedisEntity, Debug, Clone, PartialEq)]
#[redis(cluster, key = "order:{id}")]
#[redis(index(key = "orders:status:{status}", cross_slot))]
struct Order {
    id: String,
    status: String,
}

const KEY: &str = "order:o1";
const TOKEN: &str = "t1";

fn bulk(text: &str) -> Value {
    Value::BulkString(text.as_bytes().to_vec())
}

fn texts(texts: &[&str]) -> Value {
    Value::Array(texts.iter().map(|text| bulk(text)).collect())
}

/// A client that behaves as on a cluster, every request going to `steps`.
fn client(steps: Vec<MockCmd>) -> (Client, Scripted) {
    let config = Config::from_url("redis+cluster://127.0.0.1:7000").expect("a cluster URL");
    let scripted = Scripted::new(steps);
    (Client::scripted(config, scripted.clone()), scripted)
}

/// `Order`'s cluster scripts.
fn scripts() -> &'static EntityScripts {
    let (probe, _) = client(Vec::new());
    let ctx = Context::new("test", "order:{id}");
    script::for_client(&probe, Order::descriptor(), &ctx).expect("cluster scripts")
}

/// The keys every call of `Order`'s scripts in `KEY`'s slot declares
/// first, then the record and its lease.
fn record_keys() -> Vec<String> {
    vec![
        redis_schema::slot_guard_key(KEY),
        redis_schema::pending_index_key(KEY).expect("a pending key"),
        redis_schema::pending_index_lease_key(KEY).expect("a lease key"),
    ]
}

fn evalsha(script: &redis::Script, keys: &[String], args: &[&str]) -> redis::Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(script.get_hash())
        .arg(keys.len())
        .arg(keys)
        .arg(args);
    cmd
}

/// Taking the lease on the record, answered with the record (`writes`
/// counted, the index keys listed) and the entity's status.
fn lease(scripts: &EntityScripts, writes: &str, listed: &[&str], status: &str) -> MockCmd {
    let mut keys = record_keys();
    keys.push(KEY.into());
    let lease_ms = LEASE.as_millis().to_string();
    let mut record = vec![redis_schema::PENDING_WRITES, writes];
    for key in listed {
        record.extend([*key, "1"]);
    }
    let reply = Value::Array(vec![
        Value::Int(1),
        texts(&record),
        texts(&["id", "o1", "status", status]),
    ]);
    MockCmd::new(
        evalsha(&scripts.pending_lease, &keys, &[TOKEN, &lease_ms]),
        Ok(reply),
    )
}

/// One index move, in a pipeline of its own (its key's slot).
fn moved(command: &str, index_key: &str) -> MockCmd {
    let mut pipe = redis::pipe();
    pipe.cmd(command).arg(index_key).arg("o1");
    MockCmd::with_values(pipe, Ok(vec![Value::Int(1)]))
}

/// The release in `mode` (`0` a round, `1` the last, `2` let go),
/// answered with `reply`.
fn release(scripts: &EntityScripts, writes: &str, mode: &str, reply: i64) -> MockCmd {
    MockCmd::new(
        evalsha(
            &scripts.pending_release,
            &record_keys(),
            &[TOKEN, writes, mode],
        ),
        Ok(Value::Int(reply)),
    )
}

/// A round on a queued order whose record lists its queued key: the
/// lease, the move, and the release in `mode`, answered with `reply`.
fn queued_round(s: &EntityScripts, mode: &str, reply: i64) -> [MockCmd; 3] {
    [
        lease(s, "1", &["orders:status:queued"], "queued"),
        moved("SADD", "orders:status:queued"),
        release(s, "1", mode, reply),
    ]
}

/// Runs the rounds of `o1`'s record against `steps`, which must all be
/// sent, in order, and nothing else.
async fn rounds_against(steps: Vec<MockCmd>) -> crate::Result<Applied> {
    let (client, scripted) = client(steps);
    let applied =
        rounds::<Order>(&client, scripts(), KEY, "o1", TOKEN, None, &mut Vec::new()).await;
    scripted.assert_done();
    applied
}

#[tokio::test]
async fn a_write_during_a_round_makes_the_holder_lease_again_and_move_what_it_left() {
    let s = scripts();
    // A write (queued -> running) came since the first lease read count 1.
    let mut steps = Vec::from(queued_round(s, "0", 0));
    steps.extend([
        lease(
            s,
            "2",
            &["orders:status:queued", "orders:status:running"],
            "running",
        ),
        moved("SREM", "orders:status:queued"),
        moved("SADD", "orders:status:running"),
        release(s, "2", "0", 1),
    ]);
    let applied = rounds_against(steps).await.expect("applied");
    assert_eq!(applied, Applied::Done);
}

#[tokio::test]
async fn the_last_round_lets_the_lease_go_and_leaves_the_record() {
    let s = scripts();
    let mut steps = Vec::new();
    for round in Retry::Record.rounds() {
        let mode = if round.is_last() { "1" } else { "0" };
        steps.extend(queued_round(s, mode, 0));
    }
    let applied = rounds_against(steps).await.expect("left");
    assert_eq!(applied, Applied::Left);
}

#[tokio::test]
async fn a_failed_move_keeps_the_record_and_lets_the_lease_go() {
    let s = scripts();
    let oom = redis::parse_redis_value(b"-OOM command not allowed\r\n")
        .expect("parses")
        .extract_error()
        .expect_err("an error reply");
    let mut pipe = redis::pipe();
    pipe.cmd("SADD").arg("orders:status:queued").arg("o1");
    let steps = vec![
        lease(s, "1", &["orders:status:queued"], "queued"),
        MockCmd::with_values(pipe, Err::<Vec<Value>, _>(oom)),
        release(s, "1", "2", 0),
    ];
    let err = rounds_against(steps).await.expect_err("the move failed");
    assert_eq!(err.code(), "STORAGE_OOM");
}

#[tokio::test]
async fn a_lost_lease_ends_the_rounds_and_a_held_or_empty_record_sends_nothing_more() {
    let s = scripts();
    let applied = rounds_against(queued_round(s, "0", -1).into()).await;
    assert_eq!(applied.expect("left"), Applied::Left);

    let mut keys = record_keys();
    keys.push(KEY.into());
    let lease_ms = LEASE.as_millis().to_string();
    for (reply, applied) in [(-1, Applied::Busy), (0, Applied::Nothing)] {
        let steps = vec![MockCmd::new(
            evalsha(&s.pending_lease, &keys, &[TOKEN, &lease_ms]),
            Ok(Value::Array(vec![Value::Int(reply)])),
        )];
        assert_eq!(rounds_against(steps).await.expect("leased"), applied);
    }
}

/// A member in its own slot, its email unique across the type in one
/// `cross_slot` hash.
#[derive(crate::RedisEntity, Debug, Clone, PartialEq)]
#[redis(cluster, key = "member:{id}")]
#[redis(unique(key = "members:by_email", field = "email", cross_slot))]
struct Member {
    id: String,
    email: String,
}

const UNIQUE: &str = "members:by_email";
const EMAIL: &str = "ada@example.com";

fn claims_keys() -> Vec<String> {
    vec![
        UNIQUE.into(),
        redis_schema::unique_claims_key(UNIQUE).expect("a claims key"),
    ]
}

/// What a write script answered when `m1` wants `EMAIL`.
fn wanted() -> unique_claims::Wanted {
    let reply = Value::Array(vec![
        Value::Int(WriteCode::ClaimFirst.value()),
        texts(&["write-token", UNIQUE, EMAIL]),
    ]);
    unique_claims::Wanted::of(&reply).expect("a claim request")
}

/// `m1`'s claim of `EMAIL` with this thread's token `n`, answered: held
/// by `m2` under `tok2`.
fn claim_held_by_m2(n: u64) -> MockCmd {
    MockCmd::new(
        evalsha(
            &unique_claims::CLAIM,
            &claims_keys(),
            &[EMAIL, "claim", "m1", &token::nth(n)],
        ),
        Ok(Value::Array(vec![Value::Int(0), bulk("m2"), bulk("tok2")])),
    )
}

/// Raising `m2`'s fence, answered 0 (`m2` holds the email) or 1 (raised).
fn fence_of_m2(raised: i64) -> MockCmd {
    let holder = "member:m2".to_string();
    let fence = redis_schema::unique_fence_key(&holder).expect("a fence key");
    let lifetime = unique_claims::FENCE_LIFETIME.as_millis().to_string();
    MockCmd::new(
        evalsha(
            &unique_claims::FENCE,
            &[holder, fence],
            &["email", EMAIL, &lifetime],
        ),
        Ok(Value::Int(raised)),
    )
}

/// Taking `EMAIL` from `m2` for `m1` with this thread's token `n`,
/// answered done or changed since it was read.
fn take_from_m2(n: u64, done: bool) -> MockCmd {
    let reply = if done {
        Value::Array(vec![Value::Int(1)])
    } else {
        Value::Array(vec![Value::Int(0), bulk("m3"), bulk("tok3")])
    };
    MockCmd::new(
        evalsha(
            &unique_claims::CLAIM,
            &claims_keys(),
            &[EMAIL, "take", "m2", "tok2", "m1", &token::nth(n)],
        ),
        Ok(reply),
    )
}

async fn claim_for_m1(client: &Client) -> crate::Result<()> {
    let ctx = Context::new("Member.create", "member:{id}");
    unique_claims::claim::<Member>(client, &ctx, "m1", &wanted()).await
}

#[tokio::test]
async fn a_free_value_is_claimed_in_one_call() {
    let (client, scripted) = client(vec![MockCmd::new(
        evalsha(
            &unique_claims::CLAIM,
            &claims_keys(),
            &[EMAIL, "claim", "m1", &token::nth(0)],
        ),
        Ok(Value::Array(vec![Value::Int(1)])),
    )]);
    claim_for_m1(&client).await.expect("claimed");
    scripted.assert_done();
}

#[tokio::test]
async fn a_value_its_holder_holds_is_refused_without_taking_it() {
    let (client, scripted) = client(vec![claim_held_by_m2(0), fence_of_m2(0)]);
    let err = claim_for_m1(&client).await.expect_err("refused");
    assert_eq!(err.code(), "UNIQUE_VIOLATION");
    scripted.assert_done();
}

#[tokio::test]
async fn a_value_taken_by_another_since_it_was_read_is_claimed_again() {
    let (client, scripted) = client(vec![
        claim_held_by_m2(0),
        fence_of_m2(1),
        take_from_m2(1, false),
        claim_held_by_m2(2),
        fence_of_m2(1),
        take_from_m2(3, true),
    ]);
    claim_for_m1(&client)
        .await
        .expect("claimed in the second round");
    scripted.assert_done();
}

#[tokio::test]
async fn a_value_others_keep_taking_is_refused_after_the_bound() {
    let mut steps = Vec::new();
    for round in 0..Retry::Value.limit() as u64 {
        steps.push(claim_held_by_m2(2 * round));
        steps.push(fence_of_m2(1));
        steps.push(take_from_m2(2 * round + 1, false));
    }
    let (client, scripted) = client(steps);
    let err = claim_for_m1(&client).await.expect_err("contended");
    assert_eq!(err.code(), "UNIQUE_VIOLATION");
    scripted.assert_done();
}

//! One hash that does not decode (written by another service, or
//! corrupted) never fails a whole list query: the others come back, the bad
//! one is reported by key, and `.strict()` gives all or nothing.

#[allow(dead_code)]
mod common;

use common::{Job, JobStatus, job};
use redis_runtime::Page;
use redis_runtime::index::SkipReason;
use redis_runtime::testing::{RedisServer, raw_query};

#[tokio::test]
async fn a_page_and_a_set_return_the_good_entities_and_report_the_bad_one() {
    let (_server, client) = RedisServer::start_with_client().await;
    for (i, id) in ["j1", "j2", "j3"].iter().enumerate() {
        let created_at = 1_000 + i64::try_from(i).expect("small");
        job(id, "u1", JobStatus::Queued, created_at)
            .create(&client)
            .await
            .expect("create");
    }
    // Another service drops a field this type requires.
    let _: i64 = raw_query(&client, &["HDEL", "job:j2", "slug"]).await;

    let page = Job::by_user_id(&client, "u1", Page::newest_first(10))
        .await
        .expect("the page itself succeeds");
    let ids: Vec<&str> = page.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(ids, ["j3", "j1"], "newest first, j2 passed over");
    assert_eq!(page.skipped().len(), 1);
    assert_eq!(page.skipped()[0].key, "job:j2");
    assert!(
        matches!(&page.skipped()[0].reason, SkipReason::Undecodable { field, .. } if field == "slug"),
        "{:?}",
        page.skipped()
    );

    let queued = Job::by_status(&client, &JobStatus::Queued)
        .await
        .expect("members");
    let ids: Vec<&str> = queued.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(ids, ["j1", "j3"]);
    assert_eq!(queued.skipped().len(), 1);

    // All or nothing, when asked for.
    let err = Job::by_user_id(&client, "u1", Page::newest_first(10))
        .await
        .expect("page")
        .strict()
        .expect_err("strict fails on j2");
    assert_eq!(err.code(), "DECODE");
    assert!(err.to_string().contains("job:j2"), "{err}");

    // Counting does not decode: all three are there.
    let count = Job::by_user_id_count(&client, "u1").await.expect("count");
    assert_eq!(count, 3);
}

//! Nothing grows without bound: pipeline worker 1 applies every retention setting continuously,
//! in batches, while the cluster runs (not once a night), and a cron job that always overruns
//! writes one row per run, not one per tick.

use pageperfect_it::{count, wait_for, Cluster};
use std::time::Duration;

#[test]
fn expired_rows_of_every_growing_table_are_deleted_while_the_cluster_runs() {
    let (_cluster, mut client) = Cluster::with_extension("retention", &[]);
    client
        .batch_execute(
            "UPDATE pageperfect.parameters SET value = '1' WHERE name = 'cleanup_interval_seconds';
             UPDATE pageperfect.parameters SET value = '3' WHERE name = 'run_details_per_job';
             -- Past pg_net's 6-hour TTL, and within it.
             INSERT INTO pageperfect.http_requests (id, method, url, timeout_milliseconds, status) OVERRIDING SYSTEM VALUE
                  VALUES (1, 'GET', 'https://example.com/old', 1000, 'done'), (2, 'GET', 'https://example.com/new', 1000, 'done');
             INSERT INTO pageperfect.http_responses (id, status_code, created)
                  VALUES (1, 200, now() - interval '7 hours'), (2, 200, now() - interval '1 hour');
             -- Ten finished runs of one job, well within the age limit: only the newest three stay.
             SELECT cron.schedule('yearly', '0 0 1 1 *', 'SELECT 1');
             INSERT INTO pageperfect.job_run_details (jobid, status, start_time, end_time)
                  SELECT (SELECT jobid FROM cron.job WHERE jobname = 'yearly'), 'succeeded', now() - n * interval '1 day', now() - n * interval '1 day'
                    FROM generate_series(1, 10) n;
             -- An archived queue message past archive_retention_days, and a fresh one.
             SELECT pageperfect.create_queue('q');
             SELECT pageperfect.archive('q', pageperfect.send('q', '{\"old\": true}'));
             SELECT pageperfect.archive('q', pageperfect.send('q', '{\"old\": false}'));
             UPDATE pageperfect.queue_archive SET archived_at = now() - interval '31 days' WHERE message = '{\"old\": true}';
             -- An embedding cached 91 days ago, and a page fetched 31 days ago.
             INSERT INTO pageperfect.embedding_cache (provider, model, dimensions, text_hash, embedding, created_at)
                  VALUES ('local', 'm', 2, 'old', '{1,0}', now() - interval '91 days'), ('local', 'm', 2, 'new', '{0,1}', now());
             INSERT INTO pageperfect.pages (url, owner, html, fetched_at)
                  VALUES ('https://example.com/stale', 'postgres', '<p>old</p>', now() - interval '31 days');
             -- Two content scores past scores_retention_days: the page's latest stays.
             INSERT INTO pageperfect.pages (url, owner) VALUES ('https://example.com/scored', 'postgres');
             INSERT INTO pageperfect.content_scores (page_id, score, created_at)
                  SELECT p.id, v.score, now() - v.days * interval '1 day' FROM pageperfect.pages p, (VALUES (40, 500), (50, 400)) v (score, days)
                   WHERE p.url = 'https://example.com/scored';",
        )
        .unwrap();
    wait_for(Duration::from_secs(20), "the worker's retention pass", || {
        (count(&mut client, "SELECT count(*) FROM pageperfect.http_requests") == 1).then_some(())
    });
    wait_for(Duration::from_secs(5), "every table's pass", || {
        (count(&mut client, "SELECT count(*) FROM pageperfect.embedding_cache") == 1).then_some(())
    });
    assert_eq!(count(&mut client, "SELECT count(*) FROM pageperfect.http_requests WHERE id = 2"), 1, "a fresh response stays");
    assert_eq!(count(&mut client, "SELECT count(*) FROM cron.job_run_details"), 3);
    assert_eq!(count(&mut client, "SELECT count(*) FROM pageperfect.queue_archive"), 1);
    assert_eq!(count(&mut client, "SELECT count(*) FROM pageperfect.embedding_cache WHERE text_hash = 'new'"), 1);
    assert_eq!(count(&mut client, "SELECT count(*) FROM pageperfect.pages WHERE html IS NULL AND fetched_at IS NOT NULL"), 1);
    assert_eq!(count(&mut client, "SELECT count(*) FROM pageperfect.content_scores"), 1);
    assert_eq!(count(&mut client, "SELECT count(*) FROM pageperfect.content_scores WHERE score = 50"), 1, "the latest score stays");
    // Each deletion is logged, by table.
    let logged = count(
        &mut client,
        "SELECT count(DISTINCT table_name) FROM pageperfect.cleanup_logs
          WHERE table_name IN ('http_responses', 'job_run_details', 'queue_archive', 'embedding_cache', 'pages', 'content_scores')
            AND deleted_count > 0",
    );
    assert_eq!(logged, 6);
}

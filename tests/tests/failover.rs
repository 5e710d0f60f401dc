//! High availability: a preloaded primary and a streaming hot standby (`pg_basebackup -R`) on
//! loopback. The standby runs nothing and says so; its write functions refuse with Postgres's
//! read-only error. The primary is stopped with `-m immediate` while cron runs, pipeline stages
//! and durable HTTP requests are in flight; the promoted standby finishes all of it, runs no
//! cron tick twice and leaves no run `running`. A fresh standby of the new primary (the old
//! primary coming back) again runs nothing until it is promoted.

use pageperfect_it::site::{Route, Site};
use pageperfect_it::{count, db_message, wait_for, Cluster};
use postgres::Client;
use std::time::{Duration, Instant};

/// Waits until the standby has replayed everything the primary has written so far.
fn wait_for_replay(primary: &mut Client, standby: &mut Client) {
    let target: String = primary.query_one("SELECT pg_current_wal_lsn()::text", &[]).unwrap().get(0);
    wait_for(Duration::from_secs(30), "the standby to replay the primary's WAL", || {
        let caught_up: bool = standby
            .query_one("SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn", &[&target])
            .unwrap()
            .get(0);
        caught_up.then_some(())
    });
}

/// What a node that is not primary must show: no pageperfect process, every worker `standby`,
/// health readable, and writes refused with the read-only error.
fn assert_runs_nothing(client: &mut Client) {
    assert_eq!(count(client, "SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'pageperfect%'"), 0);
    let statuses: Vec<String> = client.query("SELECT status FROM pageperfect.worker_health()", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(statuses, ["standby", "standby", "standby"]);
    let health = count(client, "SELECT count(*) FROM pageperfect.get_scheduler_health() WHERE status = 'standby'");
    assert_eq!(health, 3, "get_scheduler_health() works on a standby and says so");
    for (sql, function) in [
        ("SELECT cron.schedule('x', '* * * * *', 'SELECT 1')", "cron.schedule()"),
        ("SELECT pageperfect.send('q', '{}')", "pageperfect.send()"),
        ("SELECT net.http_get('http://127.0.0.1:1/')", "net.http_*()"),
    ] {
        let error = client.query_one(sql, &[]).unwrap_err();
        assert_eq!(error.code(), Some(&postgres::error::SqlState::READ_ONLY_SQL_TRANSACTION), "{sql}");
        assert_eq!(db_message(error), format!("cannot execute {function} in a read-only transaction"));
    }
}

#[test]
fn a_promoted_standby_finishes_what_the_lost_primary_had_in_flight_and_runs_nothing_twice() {
    // Each HTTP request takes 3 s to answer, so that a burst is in flight when the primary goes.
    let site = Site::with_handler(|_| Route::status(200, "text/plain", "answer").delayed(Duration::from_secs(3)));
    let (primary, mut p) = Cluster::with_extension("failover-primary", &[]);
    p.batch_execute(
        "CREATE TABLE ticks (runid bigint, at timestamptz DEFAULT clock_timestamp());
         UPDATE pageperfect.stage_config SET concurrency = 100 WHERE stage = 'test_sleep';
         UPDATE pageperfect.parameters SET value = '100' WHERE name = 'max_jobs_per_owner';
         SELECT pageperfect.create_queue('orders');
         SELECT pageperfect.send('orders', jsonb_build_object('n', n)) FROM generate_series(1, 100) n;",
    )
    .unwrap();
    let tick = "INSERT INTO ticks (runid) SELECT split_part(current_setting('application_name'), ' ', 5)::bigint; SELECT pg_sleep(3)";
    let jobid: i64 = p.query_one("SELECT cron.schedule('tick', '1 seconds', $1)", &[&tick]).unwrap().get(0);

    let standby = Cluster::standby_of(&primary, "failover-standby");
    let mut s = standby.connect();
    wait_for_replay(&mut p, &mut s);
    assert_runs_nothing(&mut s);

    // Work in flight: 20 stage attempts of 4 s and 20 HTTP requests of 3 s, all committed and
    // replicated; the cron job (3 s runs, due every second) always has a run going.
    let jobs: Vec<String> = (0..20)
        .map(|_| {
            p.query_one("SELECT pageperfect.enqueue_job('https://example.com/x', ARRAY['test_sleep'], '{\"sleep_ms\": 4000}')::text", &[])
                .unwrap()
                .get(0)
        })
        .collect();
    p.execute("SELECT net.http_get($1 || n) FROM generate_series(1, 20) n", &[&site.url("/r/")]).unwrap();
    wait_for(Duration::from_secs(10), "stages and requests in flight", || {
        let stages = count(&mut p, "SELECT count(*) FROM pageperfect.job_stages WHERE status = 'processing'");
        let requests = count(&mut p, "SELECT count(*) FROM pageperfect.http_requests WHERE status = 'in_flight'");
        (stages >= 10 && requests >= 10).then_some(())
    });
    wait_for_replay(&mut p, &mut s);
    let runs_before = count(&mut s, &format!("SELECT count(*) FROM cron.job_run_details WHERE jobid = {jobid}"));
    assert!(runs_before >= 2, "the standby has the primary's runs ({runs_before})");
    // The standby's workers wrote nothing: every run it has came from the primary's WAL.
    assert_runs_nothing(&mut s);
    // The primary goes while the standby has one of its 3-second runs freshly started (the job
    // idles for up to a second between runs: stopping then would leave no run in progress).
    wait_for(Duration::from_secs(10), "a run just started, replicated", || {
        wait_for_replay(&mut p, &mut s);
        let fresh = count(
            &mut s,
            &format!("SELECT count(*) FROM cron.job_run_details WHERE jobid = {jobid} AND status = 'running' AND start_time > clock_timestamp() - interval '1 second'"),
        );
        (fresh > 0).then_some(())
    });

    primary.stop_immediately();
    drop(p);
    let promoted_at = Instant::now();
    standby.promote();
    let mut s = standby.reconnect(Duration::from_secs(30));

    // Within seconds the workers run and the cron job ticks again.
    let last_runid = count(&mut s, &format!("SELECT coalesce(max(runid), 0) FROM cron.job_run_details WHERE jobid = {jobid}"));
    wait_for(Duration::from_secs(20), "a cron run on the promoted standby", || {
        (count(&mut s, &format!("SELECT count(*) FROM cron.job_run_details WHERE jobid = {jobid} AND runid > {last_runid} AND status IN ('running', 'succeeded')")) > 0)
            .then_some(())
    });
    let failover = promoted_at.elapsed();
    println!("failover: the first cron run started {:.1} s after pg_ctl promote", failover.as_secs_f64());
    assert!(failover < Duration::from_secs(10), "{failover:?}");

    // Every stage the old primary had claimed is requeued and completes; every request is answered.
    wait_for(Duration::from_secs(60), "every workflow to complete", || {
        let done = count(&mut s, "SELECT count(*) FROM pageperfect.jobs WHERE status = 'completed'");
        (done == jobs.len() as i64).then_some(())
    });
    wait_for(Duration::from_secs(60), "every HTTP request to be answered", || {
        (count(&mut s, "SELECT count(*) FROM pageperfect.http_requests WHERE status = 'done'") == 20).then_some(())
    });
    assert_eq!(count(&mut s, "SELECT count(*) FROM net._http_response WHERE status_code = 200 AND content = 'answer'"), 20);
    for n in 1..=20 {
        assert!(site.hits(&format!("/r/{n}")) >= 1, "request {n} reached the server");
    }
    // Every committed queue message is still there to be read, once each.
    let read = count(&mut s, "SELECT count(DISTINCT msg_id) FROM pageperfect.read('orders', 30, 1000)");
    assert_eq!(read, 100);

    // Runs the old primary left going are failed with the reason; none stays running; no tick
    // (due time) of the job ran twice.
    std::thread::sleep(Duration::from_secs(2));
    let stuck = count(
        &mut s,
        "SELECT count(*) FROM cron.job_run_details d JOIN pageperfect.job_run_details p USING (runid)
          WHERE d.status IN ('starting', 'running') AND p.due_time < now() - interval '3 seconds'",
    );
    assert_eq!(stuck, 0);
    let failed: Vec<String> = s
        .query("SELECT return_message FROM cron.job_run_details WHERE status = 'failed'", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        !failed.is_empty() && failed.iter().all(|m| m.starts_with("the primary changed (this server was promoted: timeline 1 to 2)")),
        "the runs in progress at the failover are failed with the reason: {failed:?}"
    );
    let twice = count(
        &mut s,
        &format!(
            "SELECT count(*) FROM (SELECT d.due_time FROM ticks t JOIN pageperfect.job_run_details d ON d.runid = t.runid
                                    WHERE d.jobid = {jobid} GROUP BY d.due_time HAVING count(*) > 1) x"
        ),
    );
    assert_eq!(twice, 0, "a tick ran twice");
    let scheduled_twice = count(
        &mut s,
        &format!(
            "SELECT count(*) FROM (SELECT due_time FROM pageperfect.job_run_details WHERE jobid = {jobid} AND run_reason = 'schedule'
                                    GROUP BY due_time HAVING count(*) > 1) x"
        ),
    );
    assert_eq!(scheduled_twice, 0);

    // The old primary coming back as a standby of the new one (a fresh base backup) runs nothing.
    let comeback = Cluster::standby_of(&standby, "failover-comeback");
    let mut c = comeback.connect();
    wait_for_replay(&mut s, &mut c);
    std::thread::sleep(Duration::from_secs(2));
    assert_runs_nothing(&mut c);
}

//! The scheduler against a real preloaded cluster: runs land in job_run_details on time and as
//! their owner, errors and timeouts are recorded, a long job never overlaps itself, retries and
//! catch-up, and killed job backends or a killed scheduler leave no run `running`.

use pageperfect_it::{count, db_message, kill, wait_for, Cluster};
use postgres::Client;
use std::time::Duration;

fn started_cluster(name: &str) -> (Cluster, Client) {
    Cluster::with_extension(name, &[])
}

/// (status, return_message) of a job's runs, oldest first.
fn runs(client: &mut Client, jobid: i64) -> Vec<(String, Option<String>)> {
    client
        .query("SELECT status, return_message FROM cron.job_run_details WHERE jobid = $1 ORDER BY runid", &[&jobid])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

fn schedule(client: &mut Client, name: &str, schedule: &str, command: &str) -> i64 {
    client.query_one("SELECT cron.schedule($1, $2, $3)", &[&name, &schedule, &command]).unwrap().get(0)
}

#[test]
fn a_one_second_job_runs_every_second_as_its_owner_and_changes_apply_without_restart() {
    let (cluster, mut admin) = started_cluster("owner");
    admin
        .batch_execute(
            "CREATE ROLE alice LOGIN; CREATE ROLE bob LOGIN;
             GRANT USAGE ON SCHEMA cron TO alice, bob;
             CREATE TABLE ticks (who text, note text, at timestamptz DEFAULT clock_timestamp());
             GRANT INSERT ON ticks TO alice;",
        )
        .unwrap();
    let mut alice = cluster.connect_to("postgres", "alice");
    let jobid = schedule(&mut alice, "tick", "1 seconds", "INSERT INTO ticks (who, note) VALUES (current_user, 'first')");
    wait_for(Duration::from_secs(10), "three succeeded runs", || {
        (count(&mut admin, &format!("SELECT count(*) FROM cron.job_run_details WHERE jobid = {jobid} AND status = 'succeeded'")) >= 3).then_some(())
    });

    let rows = admin
        .query(
            "SELECT status, return_message, username, job_pid, extract(epoch FROM start_time - due_time)::float8,
                    start_time <= end_time
               FROM pageperfect.job_run_details WHERE jobid = $1 AND status <> 'running' ORDER BY runid",
            &[&jobid],
        )
        .unwrap();
    for row in &rows {
        assert_eq!(row.get::<_, String>(0), "succeeded");
        assert_eq!(row.get::<_, Option<String>>(1).as_deref(), Some("INSERT 0 1"));
        assert_eq!(row.get::<_, String>(2), "alice");
        assert!(row.get::<_, Option<i32>>(3).is_some(), "job_pid recorded");
        let lag: f64 = row.get(4);
        assert!((0.0..1.0).contains(&lag), "started {lag} s after its due time");
        assert!(row.get::<_, bool>(5));
    }
    let owners: Vec<String> = admin.query("SELECT DISTINCT who FROM ticks", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(owners, ["alice"], "the command ran as the job's owner");

    // Bob sees neither the job nor its runs, and cannot remove it.
    let mut bob = cluster.connect_to("postgres", "bob");
    assert_eq!(count(&mut bob, "SELECT count(*) FROM cron.job"), 0);
    assert_eq!(count(&mut bob, "SELECT count(*) FROM cron.job_run_details"), 0);
    let err = db_message(bob.query_one("SELECT cron.unschedule($1::bigint)", &[&jobid]).unwrap_err());
    assert_eq!(err, "permission denied for table job");
    let err = db_message(bob.query_one("SELECT cron.unschedule('tick')", &[]).unwrap_err());
    assert_eq!(err, "could not find valid entry for job 'tick'");
    let err = db_message(bob.query_one("SELECT cron.schedule_in_database('x', '1 seconds', 'SELECT 1', 'postgres', 'alice')", &[]).unwrap_err());
    assert_eq!(err, "permission denied for function schedule_in_database");

    // A new command takes effect at the next tick, without a restart.
    alice.query_one("SELECT cron.schedule('tick', '1 seconds', 'INSERT INTO ticks (who, note) VALUES (current_user, ''second'')')", &[]).unwrap();
    wait_for(Duration::from_secs(5), "a run of the new command", || {
        (count(&mut admin, "SELECT count(*) FROM ticks WHERE note = 'second'") >= 1).then_some(())
    });
    // Unscheduled: no new runs after the one possibly in flight.
    alice.query_one("SELECT cron.unschedule('tick')", &[]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let after_unschedule = count(&mut admin, "SELECT count(*) FROM ticks");
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(count(&mut admin, "SELECT count(*) FROM ticks"), after_unschedule);
}

#[test]
fn each_run_starts_from_a_clean_session_in_its_pooled_runner() {
    let (cluster, mut admin) = started_cluster("clean_session");
    admin
        .batch_execute(
            "CREATE ROLE carol LOGIN; CREATE ROLE helper; GRANT helper TO carol; GRANT USAGE ON SCHEMA cron TO carol;
             CREATE TABLE seen (pid int, marker text, leftover boolean, advisory_locks bigint, role text);
             GRANT INSERT ON seen TO carol, helper;",
        )
        .unwrap();
    let mut carol = cluster.connect_to("postgres", "carol");
    // Each run records what the run before it left, then leaves a setting, a temporary table, a
    // session advisory lock and a SET ROLE behind.
    schedule(
        &mut carol,
        "leaves-things",
        "1 seconds",
        "INSERT INTO seen SELECT pg_backend_pid(), nullif(current_setting('pp.marker', true), ''), to_regclass('pg_temp.leftover') IS NOT NULL,
                (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()), current_user;
         SET pp.marker = 'left behind'; CREATE TEMP TABLE leftover (); SELECT pg_advisory_lock(42); SET ROLE helper",
    );
    let pid = wait_for(Duration::from_secs(15), "three runs in one runner", || {
        admin
            .query_opt("SELECT pid FROM seen GROUP BY pid HAVING count(*) >= 3 LIMIT 1", &[])
            .unwrap()
            .map(|row| row.get::<_, i32>(0))
    });
    let rows = admin.query("SELECT marker, leftover, advisory_locks, role FROM seen WHERE pid = $1", &[&pid]).unwrap();
    for row in &rows {
        assert_eq!(row.get::<_, Option<String>>(0), None, "a setting of the run before");
        assert!(!row.get::<_, bool>(1), "a temporary table of the run before");
        assert_eq!(row.get::<_, i64>(2), 0, "an advisory lock of the run before");
        assert_eq!(row.get::<_, String>(3), "carol");
    }
    assert_eq!(
        count(&mut admin, "SELECT count(*) FROM cron.job_run_details WHERE status = 'failed'"),
        0,
        "every run succeeded"
    );
}

#[test]
fn failures_are_recorded_with_their_error_and_statements_run_as_under_pg_cron() {
    let (_cluster, mut client) = started_cluster("errors");
    client
        .batch_execute(
            "CREATE TABLE t (x int);
             CREATE PROCEDURE two_transactions() LANGUAGE plpgsql AS $$
             BEGIN INSERT INTO t VALUES (1); COMMIT; INSERT INTO t VALUES (2); END $$;",
        )
        .unwrap();
    let cases = [
        ("divide", "SELECT 1/0", "failed", "ERROR: division by zero"),
        ("missing", "SELECT * FROM no_such_table", "failed", "ERROR: relation \"no_such_table\" does not exist"),
        ("vacuum", "VACUUM t", "succeeded", "VACUUM"),
        ("procedure", "CALL two_transactions()", "succeeded", "CALL"),
        ("several", "INSERT INTO t VALUES (3); INSERT INTO t VALUES (4), (5)", "succeeded", "INSERT 0 2"),
        ("rolled back", "INSERT INTO t VALUES (6); SELECT 1/0", "failed", "ERROR: division by zero"),
        ("transaction control", "BEGIN; SELECT 1; COMMIT", "failed", "ERROR: transaction control statements are not allowed in pageperfect jobs"),
    ];
    let mut jobs = vec![];
    for (name, command, _, _) in cases {
        let jobid = schedule(&mut client, name, "0 0 1 1 *", command);
        let runid: i64 = client.query_one("SELECT pageperfect.run_job_now($1)", &[&name]).unwrap().get(0);
        jobs.push((jobid, runid));
    }
    for ((name, _, status, message), (jobid, runid)) in cases.iter().zip(&jobs) {
        let (got_status, got_message): (String, Option<String>) = wait_for(Duration::from_secs(10), name, || {
            let row = client
                .query_one("SELECT status, return_message FROM cron.job_run_details WHERE runid = $1", &[runid])
                .unwrap();
            let status: String = row.get(0);
            matches!(status.as_str(), "succeeded" | "failed").then(|| (status, row.get(1)))
        });
        assert_eq!((got_status.as_str(), got_message.as_deref()), (*status, Some(*message)), "job {name}");
        assert_eq!(runs(&mut client, *jobid).len(), 1);
    }
    // Both transactions of the procedure committed; the failed job's insert rolled back.
    let values: Vec<i32> = client.query("SELECT x FROM t ORDER BY x", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(values, [1, 2, 3, 4, 5]);
}

#[test]
fn a_run_past_its_timeout_is_cancelled_and_retried_with_backoff() {
    let (_cluster, mut client) = started_cluster("timeout");
    let jobid = schedule(&mut client, "sleepy", "0 0 1 1 *", "SELECT pg_sleep(30)");
    client
        .query_one("SELECT 1 FROM pageperfect.alter_job_policy('sleepy', timeout => '1 second', max_attempts => 3, retry_backoff => '1 second')", &[])
        .unwrap();
    client.query_one("SELECT pageperfect.run_job_now('sleepy')", &[]).unwrap();
    wait_for(Duration::from_secs(20), "three failed attempts", || {
        (count(&mut client, &format!("SELECT count(*) FROM cron.job_run_details WHERE jobid = {jobid} AND status = 'failed'")) == 3).then_some(())
    });
    let rows = client
        .query(
            "SELECT attempt, run_reason, return_message, extract(epoch FROM end_time - start_time)::float8,
                    extract(epoch FROM start_time - lag(end_time) OVER (ORDER BY runid))::float8
               FROM pageperfect.job_run_details WHERE jobid = $1 ORDER BY runid",
            &[&jobid],
        )
        .unwrap();
    let attempts: Vec<(i32, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(attempts, [(1, "manual".into()), (2, "retry".into()), (3, "retry".into())]);
    for (i, row) in rows.iter().enumerate() {
        let message: String = row.get(2);
        assert_eq!(message, "ERROR: job cancelled: it ran longer than its timeout of 00:00:01");
        let ran: f64 = row.get(3);
        assert!((0.9..3.0).contains(&ran), "attempt {i} ran {ran} s");
        if i > 0 {
            // backoff · 2^(attempt − 1): 1 s before the second attempt, 2 s before the third.
            let waited: f64 = row.get(4);
            let backoff = (1 << (i - 1)) as f64;
            assert!(waited >= backoff - 0.01 && waited < backoff + 1.0, "waited {waited} s before attempt {}", i + 1);
        }
    }
    assert_eq!(count(&mut client, "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)' AND state = 'active'"), 0);
}

#[test]
fn a_long_job_is_never_run_twice_at_once_and_its_skipped_ticks_are_counted_not_logged_each() {
    let (cluster, mut client) = started_cluster("overlap");
    let jobid = schedule(&mut client, "long", "1 seconds", "SELECT pg_sleep(4)");
    let mut most_at_once = 0;
    for _ in 0..120 {
        let running = count(&mut client, &format!("SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'pageperfect job {jobid} %' AND state = 'active'"));
        most_at_once = most_at_once.max(running);
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(most_at_once, 1, "one run at a time");
    let overlapping = count(
        &mut client,
        &format!(
            "SELECT count(*) FROM pageperfect.job_run_details a JOIN pageperfect.job_run_details b
                ON a.jobid = b.jobid AND a.runid < b.runid
             WHERE a.jobid = {jobid} AND a.start_time IS NOT NULL AND b.start_time IS NOT NULL
               AND b.start_time < coalesce(a.end_time, 'infinity')"
        ),
    );
    assert_eq!(overlapping, 0);
    // 12 s of a 1-second job that runs 4 s: about 3 runs, one row each; the other ticks are
    // counted on the job (the issue saw 13 rows in 12 s, one per tick).
    let statuses = runs(&mut client, jobid);
    assert!(statuses.len() <= 4 && statuses.iter().all(|(s, _)| s != "skipped"), "{statuses:?}");
    let (skipped, last_skipped_recent): (i64, bool) = {
        let row = client
            .query_one("SELECT skipped_runs, last_skipped_at > now() - interval '3 seconds' FROM pageperfect.job WHERE jobid = $1", &[&jobid])
            .unwrap();
        (row.get(0), row.get::<_, Option<bool>>(1).unwrap_or(false))
    };
    assert!((6..=12).contains(&skipped), "skipped_runs = {skipped}");
    assert!(last_skipped_recent);
    // Logged once per overrunning run, not once per tick.
    let logged = cluster.log().matches(&format!("job {jobid}'s tick at")).count();
    assert!((1..=4).contains(&logged), "{logged} skip log lines");
}

#[test]
fn a_lock_on_the_run_table_delays_the_scheduler_by_its_lock_timeout_and_loses_nothing() {
    let (cluster, mut client) = started_cluster("locked");
    let jobid = schedule(&mut client, "tick", "1 seconds", "SELECT 1");
    let succeeded = |client: &mut Client| count(client, &format!("SELECT count(*) FROM cron.job_run_details WHERE jobid = {jobid} AND status = 'succeeded'"));
    wait_for(Duration::from_secs(10), "a first run", || (succeeded(&mut client) >= 1).then_some(()));

    // The case: ACCESS EXCLUSIVE on job_run_details for 8 s.
    let mut holder = cluster.connect();
    holder.batch_execute("BEGIN; LOCK TABLE pageperfect.job_run_details IN ACCESS EXCLUSIVE MODE").unwrap();
    let mut stalest = 0.0f64;
    for _ in 0..16 {
        std::thread::sleep(Duration::from_millis(500));
        let age: f64 = client
            .query_one("SELECT extract(epoch FROM clock_timestamp() - last_heartbeat)::float8 FROM pageperfect.workers WHERE worker_name = 'scheduler'", &[])
            .unwrap()
            .get(0);
        stalest = stalest.max(age);
    }
    let blocked: Option<String> = client.query_one("SELECT blocked_by FROM pageperfect.workers WHERE worker_name = 'scheduler'", &[]).unwrap().get(0);
    assert!(blocked.as_deref().is_some_and(|b| b.contains("lock timeout")), "{blocked:?}");
    holder.batch_execute("COMMIT").unwrap();
    assert!(stalest < 2.5, "the heartbeat was {stalest} s old while the lock was held");
    let alert = count(&mut client, "SELECT count(*) FROM pageperfect.current_alert_conditions() WHERE alert_key = 'worker_blocked:scheduler'");
    assert_eq!(alert, 1, "a monitoring alert says a worker was held up");
    let before = succeeded(&mut client);
    wait_for(Duration::from_secs(10), "runs again after the lock is gone", || (succeeded(&mut client) >= before + 3).then_some(()));

    // Row locks on runs (a superuser's SELECT … FOR UPDATE) hold up only those rows' updates.
    let other = schedule(&mut client, "other", "1 seconds", "SELECT 2");
    wait_for(Duration::from_secs(10), "the other job runs", || {
        (count(&mut client, &format!("SELECT count(*) FROM cron.job_run_details WHERE jobid = {other} AND status = 'succeeded'")) >= 1).then_some(())
    });
    let mut holder = cluster.connect();
    holder.batch_execute(&format!("BEGIN; SELECT * FROM pageperfect.job_run_details WHERE jobid = {other} FOR UPDATE")).unwrap();
    let (tick_before, other_before) = (succeeded(&mut client), count(&mut client, &format!("SELECT count(*) FROM cron.job_run_details WHERE jobid = {other}")));
    std::thread::sleep(Duration::from_secs(6));
    assert!(succeeded(&mut client) >= tick_before + 4, "the unlocked job kept running");
    holder.batch_execute("COMMIT").unwrap();
    wait_for(Duration::from_secs(10), "the held-up job's rows are written", || {
        (count(&mut client, &format!("SELECT count(*) FROM cron.job_run_details WHERE jobid = {other} AND status = 'succeeded'")) > other_before).then_some(())
    });
    // Nothing was left behind: every run but the newest ones finished, none twice.
    let unfinished = count(
        &mut client,
        "SELECT count(*) FROM cron.job_run_details WHERE status IN ('starting', 'running') AND start_time < now() - interval '5 seconds'",
    );
    assert_eq!(unfinished, 0);
}

#[test]
fn run_log_keeps_all_runs_only_failures_or_none() {
    let (_cluster, mut client) = started_cluster("run-log");
    let ok = schedule(&mut client, "ok", "1 seconds", "SELECT 1");
    let bad = schedule(&mut client, "bad", "1 seconds", "SELECT 1/0");
    let rows = |client: &mut Client, jobid: i64, status: &str| {
        count(client, &format!("SELECT count(*) FROM cron.job_run_details WHERE jobid = {jobid} AND status = '{status}'"))
    };
    wait_for(Duration::from_secs(10), "runs of both", || (rows(&mut client, ok, "succeeded") >= 2 && rows(&mut client, bad, "failed") >= 2).then_some(()));

    client.batch_execute("ALTER SYSTEM SET pageperfect.run_log = 'failures'").unwrap();
    client.batch_execute("SELECT pg_reload_conf()").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let (ok_rows, bad_rows) = (rows(&mut client, ok, "succeeded"), rows(&mut client, bad, "failed"));
    std::thread::sleep(Duration::from_secs(4));
    assert!(rows(&mut client, ok, "succeeded") <= ok_rows + 1, "successes are no longer kept");
    assert!(rows(&mut client, bad, "failed") >= bad_rows + 3, "failures still are");

    client.batch_execute("ALTER SYSTEM SET pageperfect.run_log = 'off'").unwrap();
    client.batch_execute("SELECT pg_reload_conf()").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let before = count(&mut client, "SELECT count(*) FROM cron.job_run_details");
    std::thread::sleep(Duration::from_secs(4));
    let after = count(&mut client, "SELECT count(*) FROM cron.job_run_details");
    assert!(after <= before + 2, "no rows kept: {before} -> {after}");
    // Runs go on, and what they do happens.
    client.batch_execute("CREATE TABLE marks (at timestamptz DEFAULT now())").unwrap();
    let marker = schedule(&mut client, "mark", "1 seconds", "INSERT INTO marks DEFAULT VALUES");
    wait_for(Duration::from_secs(10), "the unlogged job to run", || (count(&mut client, "SELECT count(*) FROM marks") >= 2).then_some(()));
    assert_eq!(count(&mut client, &format!("SELECT count(*) FROM cron.job_run_details WHERE jobid = {marker} AND status = 'succeeded'")), 0);
}

fn running_run(client: &mut Client, runid: i64) -> i32 {
    wait_for(Duration::from_secs(10), "the run to be running", || {
        let row = client.query_one("SELECT status, job_pid FROM cron.job_run_details WHERE runid = $1", &[&runid]).ok()?;
        (row.get::<_, String>(0) == "running").then(|| row.get(1))
    })
}

fn unfinished(client: &mut Client) -> i64 {
    count(client, "SELECT count(*) FROM cron.job_run_details WHERE status IN ('starting', 'running')")
}

#[test]
fn killed_job_backends_and_a_killed_scheduler_leave_no_run_running() {
    let (cluster, mut client) = started_cluster("kills");
    schedule(&mut client, "long", "0 0 1 1 *", "SELECT pg_sleep(60)");

    // Terminated (FATAL, no crash restart): the run fails with the reason.
    let runid: i64 = client.query_one("SELECT pageperfect.run_job_now('long')", &[]).unwrap().get(0);
    let pid = running_run(&mut client, runid);
    client.query_one("SELECT pg_terminate_backend($1)", &[&pid]).unwrap();
    let message: String = wait_for(Duration::from_secs(10), "the terminated run to fail", || {
        let row = client.query_one("SELECT status, return_message FROM cron.job_run_details WHERE runid = $1", &[&runid]).unwrap();
        (row.get::<_, String>(0) == "failed").then(|| row.get(1))
    });
    assert!(message.contains("exited before the run finished"), "{message}");

    // kill -9 of the job's backend: the server restarts and the run is failed, not left running.
    let runid: i64 = client.query_one("SELECT pageperfect.run_job_now('long')", &[]).unwrap().get(0);
    let pid = running_run(&mut client, runid);
    kill(pid, "KILL");
    let mut client = cluster.reconnect_after_crash(client);
    wait_for(Duration::from_secs(15), "the killed run to be failed", || (unfinished(&mut client) == 0).then_some(()));
    let (status, message): (String, String) = {
        let row = client.query_one("SELECT status, return_message FROM cron.job_run_details WHERE runid = $1", &[&runid]).unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!((status.as_str(), message.as_str()), ("failed", "server restarted"));

    // kill -9 of the scheduler itself while a run is going.
    let runid: i64 = wait_for(Duration::from_secs(15), "the scheduler to take runs again", || {
        client.query_one("SELECT pageperfect.run_job_now('long')", &[]).ok().map(|r| r.get(0))
    });
    running_run(&mut client, runid);
    let scheduler: i32 = client
        .query_one("SELECT pid FROM pg_stat_activity WHERE backend_type = 'pageperfect scheduler'", &[])
        .unwrap()
        .get(0);
    kill(scheduler, "KILL");
    let mut client = cluster.reconnect_after_crash(client);
    wait_for(Duration::from_secs(15), "no run left running", || (unfinished(&mut client) == 0).then_some(()));
    let status: String = client.query_one("SELECT status FROM cron.job_run_details WHERE runid = $1", &[&runid]).unwrap().get(0);
    assert_eq!(status, "failed");

    // And the scheduler works afterwards.
    let runid: i64 = client.query_one("SELECT pageperfect.run_job_now('long')", &[]).unwrap().get(0);
    running_run(&mut client, runid);
}

#[test]
fn a_tick_missed_while_the_server_was_down_is_caught_up_once_when_enabled() {
    let (cluster, mut client) = started_cluster("catchup");
    // Due every 5 seconds; the server will be down across at least one such tick.
    let with = schedule(&mut client, "with", "5 seconds", "SELECT 1");
    let without = schedule(&mut client, "without", "5 seconds", "SELECT 1");
    client.query_one("SELECT 1 FROM pageperfect.alter_job_policy('with', catch_up => true)", &[]).unwrap();
    wait_for(Duration::from_secs(10), "a first scheduled run of each", || {
        (count(&mut client, "SELECT count(DISTINCT jobid) FROM cron.job_run_details WHERE status = 'succeeded'") == 2).then_some(())
    });
    // Only runs after the restart count: on a loaded machine the scheduler may first see the
    // jobs a tick after their creation, and catch that tick up too.
    let before_stop = count(&mut client, "SELECT max(runid) FROM pageperfect.job_run_details");
    cluster.stop_and_restart_after(Duration::from_secs(6));
    let mut client = cluster.reconnect(Duration::from_secs(30));
    let catch_ups = |client: &mut Client, jobid: i64, status: &str| {
        count(client, &format!("SELECT count(*) FROM pageperfect.job_run_details WHERE jobid = {jobid} AND runid > {before_stop} AND run_reason = 'catch_up' AND status LIKE '{status}'"))
    };
    wait_for(Duration::from_secs(10), "the catch-up run", || (catch_ups(&mut client, with, "succeeded") == 1).then_some(()));
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(catch_ups(&mut client, with, "%"), 1);
    assert_eq!(catch_ups(&mut client, without, "%"), 0);
}

#[test]
fn missed_runs_all_runs_each_missed_tick_in_turn_up_to_the_cap_and_warns_of_the_rest() {
    // The harness logs from LOG up; this test reads a WARNING.
    let (cluster, mut client) = Cluster::with_extension("missed-all", &["log_min_messages = warning"]);
    client.batch_execute("UPDATE pageperfect.parameters SET value = '3' WHERE name = 'max_missed_runs'").unwrap();
    // Every 2 s, down for 9 s: about 4 missed, capped at 3 (the latest), run one after another.
    let capped = schedule(&mut client, "capped", "2 seconds", "SELECT pg_sleep(0.3)");
    client.query_one("SELECT 1 FROM pageperfect.alter_job_policy('capped', missed_runs => 'all')", &[]).unwrap();
    wait_for(Duration::from_secs(10), "a first run", || {
        (count(&mut client, &format!("SELECT count(*) FROM cron.job_run_details WHERE jobid = {capped} AND status = 'succeeded'")) >= 1).then_some(())
    });
    let before_stop = count(&mut client, "SELECT max(runid) FROM pageperfect.job_run_details");
    cluster.stop_and_restart_after(Duration::from_secs(9));
    let mut client = cluster.reconnect(Duration::from_secs(30));
    let catch_ups = format!("FROM pageperfect.job_run_details WHERE jobid = {capped} AND runid > {before_stop} AND run_reason = 'catch_up'");
    wait_for(Duration::from_secs(15), "three catch-up runs", || {
        (count(&mut client, &format!("SELECT count(*) {catch_ups} AND status = 'succeeded'")) == 3).then_some(())
    });
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(count(&mut client, &format!("SELECT count(*) {catch_ups}")), 3);
    // Distinct missed ticks, one at a time.
    assert_eq!(count(&mut client, &format!("SELECT count(DISTINCT due_time) {catch_ups}")), 3);
    let overlapping = count(
        &mut client,
        &format!(
            "SELECT count(*) FROM pageperfect.job_run_details a JOIN pageperfect.job_run_details b ON a.jobid = b.jobid AND a.runid < b.runid
              WHERE a.jobid = {capped} AND a.runid > {before_stop} AND b.start_time < a.end_time AND b.end_time > a.start_time"
        ),
    );
    assert_eq!(overlapping, 0);
    assert!(cluster.log().contains(&format!("job {capped} missed")), "a warning says ticks were dropped");
    assert!(cluster.log().contains("only the latest 3 run (parameter max_missed_runs)"));
}

/// (start, end) in seconds since the epoch of a job's finished runs, oldest first.
fn run_spans(client: &mut Client, jobid: i64, status: &str) -> Vec<(f64, f64)> {
    client
        .query(
            "SELECT extract(epoch FROM start_time)::float8, extract(epoch FROM end_time)::float8 FROM pageperfect.job_run_details
              WHERE jobid = $1 AND status = $2 AND start_time IS NOT NULL ORDER BY runid",
            &[&jobid, &status],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[test]
fn overlap_queue_one_runs_the_waiting_tick_when_the_run_ends_and_cancel_previous_cancels_it() {
    let (_cluster, mut client) = started_cluster("overlap-policies");
    let queued = schedule(&mut client, "queued", "1 seconds", "SELECT pg_sleep(2)");
    client.query_one("SELECT 1 FROM pageperfect.alter_job_policy('queued', overlap => 'queue_one')", &[]).unwrap();
    let cancelling = schedule(&mut client, "cancelling", "3 seconds", "SELECT pg_sleep(60)");
    client.query_one("SELECT 1 FROM pageperfect.alter_job_policy('cancelling', overlap => 'cancel_previous')", &[]).unwrap();
    std::thread::sleep(Duration::from_secs(12));

    // queue_one: back to back, never at once: each run starts as the previous one ends.
    let spans = run_spans(&mut client, queued, "succeeded");
    assert!(spans.len() >= 4, "{spans:?}");
    for pair in spans.windows(2) {
        let gap = pair[1].0 - pair[0].1;
        assert!((0.0..0.5).contains(&gap), "the waiting tick started {gap} s after the run before it ended: {spans:?}");
    }

    // cancel_previous: each run is cancelled when the next tick comes, then that tick runs.
    let cancelled = client
        .query("SELECT return_message FROM cron.job_run_details WHERE jobid = $1 AND status = 'cancelled'", &[&cancelling])
        .unwrap();
    assert!(cancelled.len() >= 2, "{} cancelled", cancelled.len());
    for row in &cancelled {
        assert_eq!(row.get::<_, String>(0), "cancelled: a newer tick of this job came (overlap = cancel_previous)");
    }
    let spans = run_spans(&mut client, cancelling, "cancelled");
    for (start, end) in &spans {
        assert!(end - start < 3.5, "a run went on {} s past the next tick", end - start);
    }
    assert_eq!(
        count(&mut client, &format!("SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'pageperfect job {cancelling} %' AND state = 'active'")),
        1,
        "one run at a time"
    );
}

#[test]
fn a_job_runs_at_its_own_time_zones_wall_clock_time() {
    let (_cluster, mut client) = started_cluster("job-zone");
    // The next minute as a wall-clock time in Tokyo (UTC+9) and in UTC.
    let row = client
        .query_one(
            "SELECT extract(minute FROM t AT TIME ZONE 'Asia/Tokyo')::int, extract(hour FROM t AT TIME ZONE 'Asia/Tokyo')::int,
                    extract(epoch FROM t - now())::float8
               FROM (SELECT date_trunc('minute', now()) + interval '1 minute' AS t) x",
            &[],
        )
        .unwrap();
    let (minute, hour, wait): (i32, i32, f64) = (row.get(0), row.get(1), row.get(2));
    let at = format!("{minute} {hour} * * *");
    let tokyo = schedule(&mut client, "tokyo", &at, "SELECT 1");
    client.query_one("SELECT 1 FROM pageperfect.alter_job_policy('tokyo', timezone => 'Asia/Tokyo')", &[]).unwrap();
    // The same text in UTC names a time nine hours away.
    let utc = schedule(&mut client, "utc", &at, "SELECT 1");
    wait_for(Duration::from_secs_f64(wait + 10.0), "the Tokyo job's run", || {
        (count(&mut client, &format!("SELECT count(*) FROM cron.job_run_details WHERE jobid = {tokyo} AND status = 'succeeded'")) == 1).then_some(())
    });
    let lag: f64 = client
        .query_one("SELECT extract(epoch FROM start_time - due_time)::float8 FROM pageperfect.job_run_details WHERE jobid = $1", &[&tokyo])
        .unwrap()
        .get(0);
    assert!((0.0..1.0).contains(&lag), "started {lag} s after its due time");
    assert_eq!(count(&mut client, &format!("SELECT count(*) FROM cron.job_run_details WHERE jobid = {utc}")), 0);
}

#[test]
fn cancel_run_stops_a_running_run_and_launch_active_jobs_off_pauses_the_scheduler() {
    let (cluster, mut client) = started_cluster("cancel-pause");
    let long = schedule(&mut client, "long", "0 0 1 1 *", "SELECT pg_sleep(60)");
    let runid: i64 = client.query_one("SELECT pageperfect.run_job_now('long')", &[]).unwrap().get(0);
    let pid = running_run(&mut client, runid);
    let asked = std::time::Instant::now();
    assert!(client.query_one("SELECT pageperfect.cancel_run($1)", &[&runid]).unwrap().get::<_, bool>(0));
    wait_for(Duration::from_secs(5), "the run to be cancelled", || {
        let row = client.query_one("SELECT status, return_message FROM cron.job_run_details WHERE runid = $1", &[&runid]).unwrap();
        (row.get::<_, String>(0) == "cancelled").then(|| row.get::<_, Option<String>>(1))
    });
    assert!(asked.elapsed() < Duration::from_secs(3), "cancelled after {:?}", asked.elapsed());
    assert_eq!(count(&mut client, &format!("SELECT count(*) FROM pg_stat_activity WHERE pid = {pid} AND state = 'active'")), 0);
    assert!(!client.query_one("SELECT pageperfect.cancel_run($1)", &[&runid]).unwrap().get::<_, bool>(0), "an ended run");
    let _ = long;

    // launch_active_jobs = off: ticks pass and queued runs wait; on again, they run.
    let tick = schedule(&mut client, "tick", "1 seconds", "SELECT 1");
    let runs = |client: &mut Client| count(client, &format!("SELECT count(*) FROM cron.job_run_details WHERE jobid = {tick}"));
    wait_for(Duration::from_secs(10), "a first run", || (runs(&mut client) >= 1).then_some(()));
    client.batch_execute("ALTER SYSTEM SET pageperfect.launch_active_jobs = off").unwrap();
    client.batch_execute("SELECT pg_reload_conf()").unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let paused_at = runs(&mut client);
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(runs(&mut client), paused_at, "no run starts while the scheduler is paused");
    client.batch_execute("ALTER SYSTEM RESET pageperfect.launch_active_jobs").unwrap();
    client.batch_execute("SELECT pg_reload_conf()").unwrap();
    wait_for(Duration::from_secs(10), "runs again", || (runs(&mut client) >= paused_at + 2).then_some(()));
    drop(cluster);
}

#[test]
fn a_run_cut_short_by_a_crash_is_retried_when_its_job_allows_and_the_job_runs_on() {
    let (cluster, mut client) = started_cluster("recover-retry");
    client.batch_execute("CREATE TABLE done (at timestamptz DEFAULT clock_timestamp())").unwrap();
    schedule(&mut client, "slow", "0 0 1 1 *", "SELECT pg_sleep(3); INSERT INTO done DEFAULT VALUES");
    client
        .query_one("SELECT 1 FROM pageperfect.alter_job_policy('slow', max_attempts => 2, retry_backoff => '1 second')", &[])
        .unwrap();
    let runid: i64 = client.query_one("SELECT pageperfect.run_job_now('slow')", &[]).unwrap().get(0);
    running_run(&mut client, runid);
    cluster.crash_and_restart();
    let mut client = cluster.reconnect(Duration::from_secs(30));
    // The run the crash cut short is failed, and its retry runs to the end.
    wait_for(Duration::from_secs(20), "the retry to succeed", || {
        (count(&mut client, "SELECT count(*) FROM cron.job_run_details d JOIN pageperfect.job_run_details p USING (runid)
                              WHERE p.run_reason = 'retry' AND d.status = 'succeeded'") == 1)
            .then_some(())
    });
    let (status, message): (String, Option<String>) = {
        let row = client.query_one("SELECT status, return_message FROM cron.job_run_details WHERE runid = $1", &[&runid]).unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!((status.as_str(), message.as_deref()), ("failed", Some("server restarted")));
    assert_eq!(count(&mut client, "SELECT count(*) FROM done"), 1);
    // The job is free again: a new run starts and succeeds.
    let again: i64 = client.query_one("SELECT pageperfect.run_job_now('slow')", &[]).unwrap().get(0);
    wait_for(Duration::from_secs(15), "another run", || {
        let status: String = client.query_one("SELECT status FROM cron.job_run_details WHERE runid = $1", &[&again]).unwrap().get(0);
        (status == "succeeded").then_some(())
    });
}

#[test]
fn reboot_jobs_run_once_each_time_the_scheduler_starts_and_superuser_jobs_can_be_switched_off() {
    // WARNINGs too in the server log: the skipped superuser job is reported at that level.
    let (cluster, mut client) = Cluster::with_extension("reboot", &["log_min_messages = warning"]);
    client
        .batch_execute(
            "CREATE TABLE boots (job text, at timestamptz DEFAULT clock_timestamp());
             CREATE ROLE carol LOGIN; GRANT USAGE ON SCHEMA cron TO carol; GRANT INSERT ON boots TO carol;",
        )
        .unwrap();
    let boots = |client: &mut Client, job: &str| count(client, &format!("SELECT count(*) FROM boots WHERE job = '{job}'"));
    // The scheduler is up and has loaded the jobs once (it ran this one).
    let probe = schedule(&mut client, "probe", "1 seconds", "SELECT 1");
    wait_for(Duration::from_secs(10), "the scheduler's first run", || (!runs(&mut client, probe).is_empty()).then_some(()));
    client.query_one("SELECT cron.unschedule('probe')", &[]).unwrap();
    schedule(&mut client, "on-reboot", "@reboot", "INSERT INTO boots (job) VALUES ('reboot')");
    let mut carol = cluster.connect_to("postgres", "carol");
    schedule(&mut carol, "on-restart", "@restart", "INSERT INTO boots (job) VALUES ('restart')");
    // Scheduled while the scheduler runs: nothing until it starts again, as in pg_cron.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!((boots(&mut client, "reboot"), boots(&mut client, "restart")), (0, 0));

    cluster.stop_and_restart_after(Duration::ZERO);
    let mut client = cluster.reconnect(Duration::from_secs(30));
    wait_for(Duration::from_secs(15), "a run of each at the start", || {
        (boots(&mut client, "reboot") == 1 && boots(&mut client, "restart") == 1).then_some(())
    });
    assert_eq!(count(&mut client, "SELECT count(*) FROM pageperfect.job_run_details WHERE run_reason = 'restart' AND status = 'succeeded'"), 2);
    // pageperfect.log_statement (on by default) logs each command and its outcome, as pg_cron's.
    let log = cluster.log();
    assert!(log.contains("starting: INSERT INTO boots (job) VALUES ('reboot')"), "no 'starting' line in the log");
    assert!(log.contains("COMMAND completed: INSERT 0 1"), "no 'completed' line in the log");

    // The scheduler process ends (it is restarted): the jobs run once more, not more.
    let scheduler: i32 = client.query_one("SELECT pid FROM pg_stat_activity WHERE backend_type = 'pageperfect scheduler'", &[]).unwrap().get(0);
    client.query_one("SELECT pg_terminate_backend($1)", &[&scheduler]).unwrap();
    wait_for(Duration::from_secs(20), "a second run of each", || {
        (boots(&mut client, "reboot") == 2 && boots(&mut client, "restart") == 2).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!((boots(&mut client, "reboot"), boots(&mut client, "restart")), (2, 2));

    // enable_superuser_jobs = off: a superuser may not schedule, and superusers' jobs do not run.
    client.batch_execute("ALTER SYSTEM SET pageperfect.enable_superuser_jobs = off").unwrap();
    client.query_one("SELECT pg_reload_conf()", &[]).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let refused = client.query_one("SELECT cron.schedule('as-superuser', '* * * * *', 'SELECT 1')", &[]).unwrap_err();
    assert_eq!(db_message(refused), "cannot schedule jobs as superuser");
    let scheduler: i32 = client.query_one("SELECT pid FROM pg_stat_activity WHERE backend_type = 'pageperfect scheduler'", &[]).unwrap().get(0);
    client.query_one("SELECT pg_terminate_backend($1)", &[&scheduler]).unwrap();
    wait_for(Duration::from_secs(20), "carol's job to run again", || (boots(&mut client, "restart") == 3).then_some(()));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(boots(&mut client, "reboot"), 2, "the superuser's job ran while superuser jobs are off");
    assert!(cluster.log().contains("since superuser jobs are currently disallowed"), "no warning for the skipped job");
}

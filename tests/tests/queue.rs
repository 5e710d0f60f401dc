//! The queue and the job engine against a real preloaded cluster with its pipeline workers:
//! concurrent readers never share an invisible message, failed stages are retried with backoff
//! and Retry-After and end in the dead letters, the per-owner, per-stage and per-worker limits
//! hold during bursts, and jobs complete exactly once through kill -9s and an immediate stop.
//! The jobs run the test-only stages (`test_sleep`, `test_flaky`, `test_permanent`).

use pageperfect_it::{count, db_message, kill, wait_for, Cluster};
use postgres::Client;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// A cluster whose workers are up and whose test stages retry after 1 s.
fn engine_cluster(name: &str, settings: &[&str]) -> (Cluster, Client) {
    let (cluster, mut client) = Cluster::with_extension(name, settings);
    wait_for(Duration::from_secs(30), "the pipeline workers", || {
        let up = count(&mut client, "SELECT count(*) FROM pageperfect.worker_health() WHERE status = 'healthy'");
        (up == 3).then_some(())
    });
    (cluster, client)
}

fn enqueue(client: &mut Client, stages: &[&str], options: &str) -> String {
    client
        .query_one(
            "SELECT pageperfect.enqueue_job('https://example.com/page', $1, $2::text::jsonb)::text",
            &[&stages, &options],
        )
        .unwrap()
        .get(0)
}

/// A superuser connection to the cluster on `port`, for another thread.
fn superuser_at(port: u16) -> Client {
    Client::connect(&format!("host=127.0.0.1 port={port} user=postgres dbname=postgres"), postgres::NoTls).unwrap()
}

fn job_status(client: &mut Client, job: &str) -> String {
    client.query_one("SELECT status FROM pageperfect.jobs WHERE id = $1::text::uuid", &[&job]).unwrap().get(0)
}

fn wait_for_status(client: &mut Client, job: &str, status: &str, timeout: Duration) {
    wait_for(timeout, &format!("job {job} to be {status}"), || (job_status(client, job) == status).then_some(()));
}

/// (stage, event, seconds since the epoch, data) of a job's audit trail, in order.
fn events(client: &mut Client, job: &str) -> Vec<(Option<String>, String, f64, Option<String>)> {
    client
        .query(
            "SELECT stage, event, extract(epoch FROM created_at)::float8, data::text
               FROM pageperfect.job_events WHERE job_id = $1::text::uuid ORDER BY id",
            &[&job],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

fn event_names(events: &[(Option<String>, String, f64, Option<String>)]) -> Vec<&str> {
    events.iter().map(|e| e.1.as_str()).collect()
}

/// Seconds from each `failed` event to the next `started` one: the waits before retries.
fn retry_gaps(events: &[(Option<String>, String, f64, Option<String>)]) -> Vec<f64> {
    let mut gaps = Vec::new();
    let mut failed_at = None;
    for (_, event, at, _) in events {
        match event.as_str() {
            "failed" => failed_at = Some(*at),
            "started" => gaps.extend(failed_at.take().map(|f| at - f)),
            _ => {}
        }
    }
    gaps
}

#[test]
fn four_readers_drain_20000_messages_and_none_is_delivered_twice_while_invisible() {
    const MESSAGES: usize = 20_000;
    const VT: f64 = 2.0;
    let (cluster, mut admin) = Cluster::with_extension("drain", &[]);
    admin
        .batch_execute(
            "SELECT pageperfect.create_queue('work');
             SELECT pageperfect.send_batch('work', ARRAY(SELECT jsonb_build_object('n', i) FROM generate_series(1, 20000) i));",
        )
        .unwrap();

    let deleted = Arc::new(AtomicUsize::new(0));
    let readers: Vec<_> = (0..4)
        .map(|reader| {
            let mut client = cluster.connect();
            let deleted = Arc::clone(&deleted);
            thread::spawn(move || {
                // (n, read_ct, vt as seconds since the epoch) of every delivery this reader got.
                let mut deliveries = Vec::new();
                let started = Instant::now();
                while deleted.load(Ordering::SeqCst) < MESSAGES {
                    assert!(started.elapsed() < Duration::from_secs(120), "the drain took too long");
                    // Readers 0 and 2 take big batches, 1 and 3 small ones (read() has a path for each).
                    let qty: i32 = if reader % 2 == 0 { 50 } else { 5 };
                    let rows = client
                        .query(
                            "SELECT msg_id, read_ct, (message->>'n')::int, extract(epoch FROM vt)::float8 FROM pageperfect.read('work', 2, $1)",
                            &[&qty],
                        )
                        .unwrap();
                    if rows.is_empty() {
                        thread::sleep(Duration::from_millis(20));
                        continue;
                    }
                    let mut done = Vec::new();
                    for row in &rows {
                        let (msg_id, read_ct, n, vt): (i64, i32, i32, f64) = (row.get(0), row.get(1), row.get(2), row.get(3));
                        deliveries.push((n, read_ct, vt));
                        // Reader 0 "crashes" on every 500th message the first time: it is not
                        // deleted, and must come back once its visibility timeout has passed.
                        if !(reader == 0 && n % 500 == 0 && read_ct == 1) {
                            done.push(msg_id);
                        }
                    }
                    let removed: i64 = client.query_one("SELECT count(*) FROM pageperfect.delete('work', $1::bigint[])", &[&done]).unwrap().get(0);
                    assert_eq!(removed as usize, done.len(), "a message this reader held was deleted by another");
                    deleted.fetch_add(done.len(), Ordering::SeqCst);
                }
                (reader, deliveries)
            })
        })
        .collect();

    let mut first: HashMap<i32, f64> = HashMap::new();
    let mut again: HashMap<i32, f64> = HashMap::new();
    let mut forgotten: HashSet<i32> = HashSet::new();
    for handle in readers {
        let (reader, deliveries) = handle.join().unwrap();
        for (n, read_ct, vt) in deliveries {
            let seen = match read_ct {
                1 => &mut first,
                2 => &mut again,
                other => panic!("message {n} was delivered {other} times"),
            };
            assert!(seen.insert(n, vt).is_none(), "message {n} was delivered twice with read_ct {read_ct}");
            if reader == 0 && n % 500 == 0 && read_ct == 1 {
                forgotten.insert(n);
            }
        }
    }
    assert_eq!(first.len(), MESSAGES, "every message delivered once");
    assert!(first.keys().all(|n| (1..=MESSAGES as i32).contains(n)));
    let redelivered: HashSet<i32> = again.keys().copied().collect();
    assert_eq!(redelivered, forgotten, "exactly the undeleted messages came back");
    for n in &forgotten {
        // The second read happened at or after the first delivery's visibility timeout, so its
        // new timeout is at least VT past the first.
        assert!(again[n] - first[n] >= VT - 0.001, "message {n} came back {} s after its first vt", again[n] - first[n]);
    }
    assert_eq!(count(&mut admin, "SELECT count(*) FROM pageperfect.queue_messages WHERE queue_name = 'work'"), 0);
    assert_eq!(count(&mut admin, "SELECT total_messages FROM pageperfect.metrics('work')"), MESSAGES as i64);
}

#[test]
fn failed_stages_retry_with_backoff_and_retry_after_then_go_to_the_dead_letters() {
    let (_cluster, mut client) = engine_cluster("retries", &[]);
    client
        .batch_execute("UPDATE pageperfect.stage_config SET retry_delay_seconds = 1, max_attempts = 3 WHERE stage LIKE 'test_%'")
        .unwrap();

    // Waking: an idle worker starts new work within milliseconds of the commit, not at its
    // next poll (once a second).
    for _ in 0..5 {
        let job = enqueue(&mut client, &["test_sleep"], r#"{"sleep_ms": 1}"#);
        wait_for_status(&mut client, &job, "completed", Duration::from_secs(5));
        let trail = events(&mut client, &job);
        let wake = trail[1].2 - trail[0].2;
        assert_eq!(event_names(&trail), ["created", "started", "completed", "job_completed"]);
        assert!(wake < 0.25, "the first attempt started {wake} s after the job was created");
        thread::sleep(Duration::from_millis(300));
    }

    client.batch_execute("UPDATE pageperfect.stage_config SET timeout_seconds = 1 WHERE stage = 'test_sleep'").unwrap();
    // Each attempt would create this file after 3 s if it were left running past its 1 s timeout.
    let touched = std::env::temp_dir().join(format!("pageperfect-it-timed-out-{}", std::process::id()));
    let _ = std::fs::remove_file(&touched);
    let too_slow = enqueue(&mut client, &["test_sleep"], &format!(r#"{{"sleep_ms": 3000, "touch_after": "{}"}}"#, touched.display()));
    let flaky = enqueue(&mut client, &["test_flaky"], r#"{"fail_times": 2}"#);
    let told_to_wait = enqueue(&mut client, &["test_flaky"], r#"{"fail_times": 1, "retry_after_seconds": 3}"#);
    let doomed = enqueue(&mut client, &["test_flaky"], r#"{"fail_times": 10}"#);
    let permanent = enqueue(&mut client, &["test_permanent"], "{}");
    for (job, status) in [(&permanent, "dead"), (&flaky, "completed"), (&told_to_wait, "completed"), (&doomed, "dead"), (&too_slow, "dead")] {
        wait_for_status(&mut client, job, status, Duration::from_secs(20));
    }

    // Two failures, retried after 1 s and 2 s (plus up to 25% jitter), then success.
    let trail = events(&mut client, &flaky);
    assert_eq!(
        event_names(&trail),
        ["created", "started", "failed", "retry_scheduled", "started", "failed", "retry_scheduled", "started", "completed", "job_completed"]
    );
    let gaps = retry_gaps(&trail);
    assert!((0.99..1.25 + 0.3).contains(&gaps[0]), "first retry after {} s", gaps[0]);
    assert!((1.99..2.5 + 0.3).contains(&gaps[1]), "second retry after {} s", gaps[1]);
    let result: String = client.query_one("SELECT result::text FROM pageperfect.jobs WHERE id = $1::text::uuid", &[&flaky]).unwrap().get(0);
    assert_eq!(result, r#"{"succeeded_at_attempt": 3}"#);

    // The stage's Retry-After (3 s) outweighs the 1 s backoff.
    let gaps = retry_gaps(&events(&mut client, &told_to_wait));
    assert!((2.99..3.5).contains(&gaps[0]), "retried after {} s despite Retry-After: 3", gaps[0]);

    // Past max_attempts: a dead letter with the last error; the job is dead and off the queue.
    let trail = events(&mut client, &doomed);
    assert_eq!(trail.iter().filter(|e| e.1 == "started").count(), 3);
    assert_eq!(trail.last().unwrap().1, "dead_lettered");
    let letter = client
        .query_one(
            "SELECT id, reason, error, attempt_count, stage, queue FROM pageperfect.dead_letters WHERE job_id = $1::text::uuid",
            &[&doomed],
        )
        .unwrap();
    let letter_id: i64 = letter.get(0);
    assert_eq!(letter.get::<_, String>(1), "failed 3 of 3 attempts");
    assert_eq!(letter.get::<_, String>(2), "test_flaky: attempt 3 of the 10 that fail");
    assert_eq!(letter.get::<_, i32>(3), 3);
    assert_eq!((letter.get::<_, String>(4), letter.get::<_, String>(5)), ("test_flaky".into(), "pageperfect_pipeline".into()));
    assert_eq!(count(&mut client, "SELECT count(*) FROM pageperfect.queue_messages"), 0, "no message left behind");

    // An attempt past the stage's timeout_seconds is cut off and counts as a failure.
    let error: String = client
        .query_one("SELECT error FROM pageperfect.dead_letters WHERE job_id = $1::text::uuid", &[&too_slow])
        .unwrap()
        .get(0);
    assert_eq!(error, "stage test_sleep timed out after 1 s (its timeout_seconds); the attempt was stopped");
    thread::sleep(Duration::from_secs(4));
    assert!(!touched.exists(), "an attempt went on running after its timeout");
    let durations: Vec<f64> = client
        .query(
            "SELECT (data->>'duration_ms')::float8 FROM pageperfect.job_events WHERE job_id = $1::text::uuid AND event = 'failed'",
            &[&too_slow],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(durations.len(), 3);
    assert!(durations.iter().all(|ms| (1000.0..1500.0).contains(ms)), "{durations:?}");

    // A permanent error goes to the dead letters after one attempt.
    let trail = events(&mut client, &permanent);
    assert_eq!(event_names(&trail), ["created", "started", "failed", "dead_lettered"]);
    let reason: String = client
        .query_one("SELECT reason || ': ' || error FROM pageperfect.dead_letters WHERE job_id = $1::text::uuid", &[&permanent])
        .unwrap()
        .get(0);
    assert_eq!(reason, "permanent error: test_permanent: https://example.com/page answered 404 Not Found");

    // Fixed (it fails no more) and put back: it runs to completion with a fresh set of attempts.
    client.execute("UPDATE pageperfect.jobs SET options = '{\"fail_times\": 0}' WHERE id = $1::text::uuid", &[&doomed]).unwrap();
    client.query_one("SELECT pageperfect.retry_dead_letter($1)", &[&letter_id]).unwrap();
    wait_for_status(&mut client, &doomed, "completed", Duration::from_secs(10));
    let trail = events(&mut client, &doomed);
    assert_eq!(event_names(&trail)[trail.len() - 4..], ["retried", "started", "completed", "job_completed"]);
    let err = db_message(client.query_one("SELECT pageperfect.retry_dead_letter($1)", &[&letter_id]).unwrap_err());
    assert!(err.starts_with(&format!("dead letter {letter_id} was already retried at")), "{err}");
}

/// The most `(start, end)` intervals that overlap at any instant.
fn max_overlap(intervals: &[(f64, f64)]) -> usize {
    let mut edges: Vec<(f64, i32)> = intervals.iter().flat_map(|&(s, e)| [(s, 1), (e, -1)]).collect();
    // At equal times an end comes before a start: back-to-back attempts do not overlap.
    edges.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let (mut now, mut most) = (0, 0);
    for (_, delta) in edges {
        now += delta;
        most = most.max(now);
    }
    most as usize
}

/// Each attempt's (started, completed) times, per owner, from the audit trail of `jobs`.
fn attempts_by_owner(client: &mut Client, jobs: &[String]) -> HashMap<String, Vec<(f64, f64)>> {
    let rows = client
        .query(
            "SELECT j.owner::text, extract(epoch FROM s.created_at)::float8, extract(epoch FROM c.created_at)::float8
               FROM pageperfect.jobs j
               JOIN pageperfect.job_events s ON s.job_id = j.id AND s.event = 'started'
               JOIN pageperfect.job_events c ON c.job_id = j.id AND c.event = 'completed' AND c.stage = s.stage
              WHERE j.id::text = ANY ($1)",
            &[&jobs],
        )
        .unwrap();
    let mut by_owner: HashMap<String, Vec<(f64, f64)>> = HashMap::new();
    for row in rows {
        by_owner.entry(row.get(0)).or_default().push((row.get(1), row.get(2)));
    }
    by_owner
}

/// Samples `sql` (one bigint) every 10 ms until every job in `jobs` is completed, and returns the
/// largest value seen.
fn sample_max_until_done(client: &mut Client, sql: &str, jobs: &[String]) -> i64 {
    let mut most = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        most = most.max(count(client, sql));
        let done: i64 = client
            .query_one("SELECT count(*) FROM pageperfect.jobs WHERE id::text = ANY ($1) AND status = 'completed'", &[&jobs])
            .unwrap()
            .get(0);
        if done == jobs.len() as i64 {
            return most;
        }
        assert!(Instant::now() < deadline, "{done} of {} jobs completed after 60 s", jobs.len());
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn per_owner_per_stage_and_per_worker_limits_hold_during_bursts() {
    let (cluster, mut admin) = engine_cluster("limits", &[]);
    admin
        .batch_execute(
            "CREATE ROLE alice LOGIN IN ROLE pageperfect_user; CREATE ROLE bob LOGIN IN ROLE pageperfect_user;
             UPDATE pageperfect.stage_config SET concurrency = 100 WHERE stage = 'test_sleep';",
        )
        .unwrap();

    // A burst of 24 jobs from alice, then 6 from bob: each has at most 2 (max_jobs_per_owner)
    // jobs processing at once, and bob's are not held up behind alice's backlog.
    let options = r#"{"sleep_ms": 300}"#;
    let mut alice = cluster.connect_to("postgres", "alice");
    let mut bob = cluster.connect_to("postgres", "bob");
    let alice_jobs: Vec<String> = (0..24).map(|_| enqueue(&mut alice, &["test_sleep"], options)).collect();
    let bob_jobs: Vec<String> = (0..6).map(|_| enqueue(&mut bob, &["test_sleep"], options)).collect();
    assert_eq!(count(&mut bob, "SELECT count(*) FROM pageperfect.jobs"), 6, "bob sees his own jobs only");
    let all: Vec<String> = alice_jobs.iter().chain(&bob_jobs).cloned().collect();
    let most = sample_max_until_done(
        &mut admin,
        "SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM pageperfect.jobs WHERE status = 'processing' GROUP BY owner) o",
        &all,
    );
    assert_eq!(most, 2, "the most jobs of one owner processing at once");
    let attempts = attempts_by_owner(&mut admin, &all);
    assert_eq!(max_overlap(&attempts["alice"]), 2);
    assert_eq!(max_overlap(&attempts["bob"]), 2);
    let last_end = |owner: &str| attempts[owner].iter().map(|a| a.1).fold(0.0, f64::max);
    assert!(
        last_end("bob") + 1.0 < last_end("alice"),
        "bob's 6 jobs ran beside alice's 24, not after them ({} vs {})",
        last_end("bob"),
        last_end("alice")
    );

    // A stage's concurrency holds across both workers.
    admin
        .batch_execute(
            "UPDATE pageperfect.parameters SET value = '100' WHERE name = 'max_jobs_per_owner';
             UPDATE pageperfect.stage_config SET concurrency = 3 WHERE stage = 'test_sleep';",
        )
        .unwrap();
    let jobs: Vec<String> = (0..15).map(|_| enqueue(&mut admin, &["test_sleep"], options)).collect();
    let most = sample_max_until_done(
        &mut admin,
        "SELECT count(*) FROM pageperfect.job_stages WHERE stage = 'test_sleep' AND status = 'processing'",
        &jobs,
    );
    assert_eq!(most, 3);
    assert_eq!(max_overlap(&attempts_by_owner(&mut admin, &jobs)["postgres"]), 3);

    // Each worker runs at most http_concurrency attempts: 2 workers × 2.
    for statement in [
        "UPDATE pageperfect.stage_config SET concurrency = 100 WHERE stage = 'test_sleep'",
        "ALTER SYSTEM SET pageperfect.http_concurrency = 2",
        "SELECT pg_reload_conf()",
    ] {
        admin.batch_execute(statement).unwrap();
    }
    thread::sleep(Duration::from_secs(1));
    let jobs: Vec<String> = (0..20).map(|_| enqueue(&mut admin, &["test_sleep"], options)).collect();
    let most = sample_max_until_done(
        &mut admin,
        "SELECT count(*) FROM pageperfect.job_stages WHERE stage = 'test_sleep' AND status = 'processing'",
        &jobs,
    );
    let overlap = max_overlap(&attempts_by_owner(&mut admin, &jobs)["postgres"]);
    assert!(most <= 4 && overlap <= 4, "sampled {most}, overlapping {overlap}: more than 2 workers × 2");
    assert!(overlap > 2, "both workers took work ({overlap} attempts overlapped)");
}

/// A pipeline worker that holds a claim right now.
fn worker_with_claims(client: &mut Client) -> Option<i32> {
    client
        .query(
            "SELECT s.claimed_pid FROM pageperfect.job_stages s
               JOIN pg_stat_activity a ON a.pid = s.claimed_pid AND a.backend_type LIKE 'pageperfect pipeline worker%'
              WHERE s.status = 'processing' LIMIT 1",
            &[],
        )
        .ok()?
        .first()
        .map(|row| row.get(0))
}

fn completions(client: &mut Client) -> i64 {
    count(client, "SELECT count(*) FROM pageperfect.job_events WHERE event = 'completed'")
}

#[test]
fn jobs_complete_exactly_once_through_twenty_kill_9s_and_an_immediate_stop() {
    const JOBS: i64 = 300;
    let (cluster, mut client) = engine_cluster("faults", &[]);
    client
        .batch_execute(
            "UPDATE pageperfect.parameters SET value = '1000' WHERE name = 'max_jobs_per_owner';
             UPDATE pageperfect.stage_config SET concurrency = 8 WHERE stage IN ('test_sleep', 'test_flaky');
             SELECT pageperfect.enqueue_job('https://example.com/' || i, ARRAY['test_sleep', 'test_flaky'],
                                            '{\"sleep_ms\": 250, \"fail_times\": 0}')
               FROM generate_series(1, 300) i;",
        )
        .unwrap();

    // Each kill lands while a worker holds claims, after some progress since the last one (so
    // that it is not always the same attempts that are cut short).
    for _ in 0..20 {
        let before = completions(&mut client);
        let pid = wait_for(Duration::from_secs(30), "a worker holding claims after progress", || {
            (completions(&mut client) >= before + 8).then(|| worker_with_claims(&mut client)).flatten()
        });
        kill(pid, "KILL");
        client = cluster.reconnect_after_crash(client);
    }
    wait_for(Duration::from_secs(30), "a worker holding claims", || worker_with_claims(&mut client));
    drop(client);
    cluster.crash_and_restart();
    let mut client = cluster.reconnect(Duration::from_secs(30));

    wait_for(Duration::from_secs(120), "every job to complete", || {
        (count(&mut client, "SELECT count(*) FROM pageperfect.jobs WHERE status = 'completed'") == JOBS).then_some(())
    });
    let requeued = count(&mut client, "SELECT count(*) FROM pageperfect.job_events WHERE event = 'requeued'");
    assert!(requeued >= 21, "the kills cut attempts short ({requeued} requeued)");
    for (what, sql, expected) in [
        ("job_completed events", "SELECT count(*) FROM pageperfect.job_events WHERE event = 'job_completed'", JOBS),
        (
            "jobs completed more than once",
            "SELECT count(*) FROM (SELECT job_id FROM pageperfect.job_events WHERE event = 'job_completed'
                                    GROUP BY job_id HAVING count(*) > 1) d",
            0,
        ),
        ("stage completions", "SELECT count(*) FROM pageperfect.job_events WHERE event = 'completed'", 2 * JOBS),
        (
            "stages completed more than once",
            "SELECT count(*) FROM (SELECT job_id, stage FROM pageperfect.job_events WHERE event = 'completed'
                                    GROUP BY job_id, stage HAVING count(*) > 1) d",
            0,
        ),
        ("payloads", "SELECT count(*) FROM pageperfect.payloads", 2 * JOBS),
        ("stages not completed", "SELECT count(*) FROM pageperfect.job_stages WHERE status <> 'completed'", 0),
        ("jobs in processing", "SELECT count(*) FROM pageperfect.jobs WHERE status = 'processing'", 0),
        ("dead letters", "SELECT count(*) FROM pageperfect.dead_letters", 0),
        ("messages left", "SELECT count(*) FROM pageperfect.queue_messages", 0),
    ] {
        assert_eq!(count(&mut client, sql), expected, "{what}");
    }
}

#[test]
fn row_locks_held_on_jobs_and_queue_messages_hold_up_only_those_rows() {
    let (cluster, mut client) = engine_cluster("engine-locks", &[]);
    // A job whose stage attempt is under way (it sleeps 3 s) while another session locks its
    // workflow row and every queued message of the pipeline for 12 s, as a long report might.
    let held = enqueue(&mut client, &["test_sleep"], r#"{"sleep_ms": 3000}"#);
    wait_for_status(&mut client, &held, "processing", Duration::from_secs(5));
    let mut holder = cluster.connect();
    holder
        .batch_execute(&format!(
            "BEGIN;
             SELECT 1 FROM pageperfect.jobs WHERE id = '{held}' FOR UPDATE;
             SELECT 1 FROM pageperfect.queue_messages FOR UPDATE;"
        ))
        .unwrap();
    let locked_at = Instant::now();
    // Work enqueued meanwhile completes, and the workers' heartbeats stay fresh.
    let mut others = Vec::new();
    let mut stalest = 0.0f64;
    while locked_at.elapsed() < Duration::from_secs(12) {
        if others.len() < 5 {
            others.push(enqueue(&mut client, &["test_sleep"], r#"{"sleep_ms": 10}"#));
        }
        let age: f64 = client
            .query_one("SELECT max(extract(epoch FROM clock_timestamp() - last_heartbeat))::float8 FROM pageperfect.workers", &[])
            .unwrap()
            .get(0);
        stalest = stalest.max(age);
        thread::sleep(Duration::from_millis(300));
    }
    for job in &others {
        assert_eq!(job_status(&mut client, job), "completed", "a job enqueued beside the locked rows");
    }
    assert!(stalest < 2.5, "a worker's heartbeat was {stalest} s old while the rows were locked");
    assert_ne!(job_status(&mut client, &held), "completed", "the locked job cannot have been recorded");
    holder.batch_execute("COMMIT").unwrap();
    // Once the lock is gone the held job completes within seconds, from the attempt that ran
    // (its output was kept, not computed again), once.
    let deadline = Instant::now() + Duration::from_secs(10);
    while job_status(&mut client, &held) != "completed" && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(200));
    }
    let trail = events(&mut client, &held);
    assert_eq!(job_status(&mut client, &held), "completed", "{trail:?}");
    assert_eq!(event_names(&trail), ["created", "started", "completed", "job_completed"]);
    let completions = count(
        &mut client,
        &format!("SELECT count(*) FROM pageperfect.job_events WHERE job_id = '{held}' AND event = 'job_completed'"),
    );
    assert_eq!(completions, 1);
}

#[test]
fn a_paused_stage_waits_and_a_cancelled_job_writes_nothing() {
    let (_cluster, mut client) = engine_cluster("engine-pause-cancel", &[]);
    // Paused: queued work of the stage is not claimed; resumed, it runs.
    client.query_one("SELECT pageperfect.pause_stage('test_flaky')", &[]).unwrap();
    let waiting = enqueue(&mut client, &["test_flaky"], r#"{"fail_times": 0}"#);
    thread::sleep(Duration::from_secs(3));
    assert_eq!(job_status(&mut client, &waiting), "queued");
    client.query_one("SELECT pageperfect.resume_stage('test_flaky')", &[]).unwrap();
    wait_for_status(&mut client, &waiting, "completed", Duration::from_secs(10));

    // Cancelled while its attempt runs: the job ends cancelled, the attempt's result is not stored.
    let touched = std::env::temp_dir().join(format!("pageperfect-it-cancelled-{}", std::process::id()));
    let _ = std::fs::remove_file(&touched);
    let running = enqueue(&mut client, &["test_sleep"], &format!(r#"{{"sleep_ms": 2000, "touch_after": "{}"}}"#, touched.display()));
    wait_for_status(&mut client, &running, "processing", Duration::from_secs(5));
    assert!(client.query_one("SELECT pageperfect.cancel_job($1::text::uuid)", &[&running]).unwrap().get::<_, bool>(0));
    assert_eq!(job_status(&mut client, &running), "cancelled");
    // The attempt ends (it wrote its file) and finds its stage taken back: nothing is recorded.
    wait_for(Duration::from_secs(10), "the attempt to end", || touched.exists().then_some(()));
    thread::sleep(Duration::from_secs(1));
    let _ = std::fs::remove_file(&touched);
    assert_eq!(job_status(&mut client, &running), "cancelled");
    assert_eq!(count(&mut client, &format!("SELECT count(*) FROM pageperfect.payloads WHERE job_id = '{running}'")), 0);
    let trail = events(&mut client, &running);
    assert_eq!(event_names(&trail), ["created", "started", "cancelled"]);
}

#[test]
fn two_sessions_enqueuing_the_same_unique_key_at_once_create_one_job() {
    let (cluster, mut client) = engine_cluster("engine-unique", &[]);
    let mut first = cluster.connect();
    let mut tx = first.transaction().unwrap();
    let job: String = tx
        .query_one("SELECT pageperfect.enqueue_job('https://example.com/u', ARRAY['test_sleep'], unique_key => 'k')::text", &[])
        .unwrap()
        .get(0);
    // The second session waits for the first to commit, then finds its job.
    let port = cluster.port;
    let second = thread::spawn(move || {
        superuser_at(port)
            .query_one("SELECT pageperfect.enqueue_job('https://example.com/u', ARRAY['test_sleep'], unique_key => 'k')::text", &[])
            .unwrap()
            .get::<_, String>(0)
    });
    thread::sleep(Duration::from_millis(500));
    assert!(!second.is_finished(), "the second enqueue waits for the first transaction");
    tx.commit().unwrap();
    assert_eq!(second.join().unwrap(), job);
    assert_eq!(count(&mut client, "SELECT count(*) FROM pageperfect.jobs WHERE unique_key = 'k'"), 1);
}

#[test]
fn a_low_priority_message_rises_to_the_top_while_it_waits() {
    let (_cluster, mut client) = engine_cluster("engine-aging", &[]);
    client
        .batch_execute(
            "UPDATE pageperfect.parameters SET value = '1' WHERE name = 'priority_aging_seconds';
             SELECT pageperfect.create_queue('aging');
             SELECT pageperfect.send('aging', '{\"n\": \"low\"}');
             SELECT pageperfect.send('aging', '{\"n\": \"high\"}', 0, 3);",
        )
        .unwrap();
    // Pipeline worker 1 raises it by one each second until it meets the top priority.
    wait_for(Duration::from_secs(20), "the low message to reach priority 3", || {
        let priority = count(&mut client, "SELECT priority::bigint FROM pageperfect.queue_messages WHERE message->>'n' = 'low'");
        (priority == 3).then_some(())
    });
    thread::sleep(Duration::from_secs(2));
    assert_eq!(count(&mut client, "SELECT priority::bigint FROM pageperfect.queue_messages WHERE message->>'n' = 'low'"), 3, "no higher than the top");
    let first: String = client.query_one("SELECT message->>'n' FROM pageperfect.read('aging', 30, 1)", &[]).unwrap().get(0);
    assert_eq!(first, "low", "at the same priority the older goes first");
}

#[test]
fn a_waiting_read_with_poll_returns_as_soon_as_a_send_commits() {
    let (cluster, mut client) = engine_cluster("engine-wakeup", &[]);
    client.batch_execute("SELECT pageperfect.create_queue('wake')").unwrap();
    let mut latencies = Vec::new();
    for _ in 0..10 {
        let port = cluster.port;
        // Polling every 2 s: only the wake-up can make it return sooner.
        let reader = thread::spawn(move || {
            superuser_at(port)
                .query_one("SELECT extract(epoch FROM clock_timestamp())::float8 FROM pageperfect.read_with_poll('wake', 30, 1, 10, 2000)", &[])
                .unwrap()
                .get::<_, f64>(0)
        });
        thread::sleep(Duration::from_millis(300));
        let sent_at: f64 = client
            .query_one("SELECT extract(epoch FROM clock_timestamp())::float8 FROM (SELECT pageperfect.send('wake', '{}')) s", &[])
            .unwrap()
            .get(0);
        latencies.push(reader.join().unwrap() - sent_at);
    }
    latencies.sort_by(f64::total_cmp);
    println!("send to read_with_poll returning: p50 {:.1} ms, max {:.1} ms", latencies[5] * 1000.0, latencies[9] * 1000.0);
    assert!(latencies[5] < 0.05, "{latencies:?}");
    assert!(latencies[9] < 0.5, "{latencies:?}");
}

//! The background workers against a real preloaded cluster: heartbeats, crash restart,
//! SIGTERM, SIGHUP, and the extension installed without the preload.

use pageperfect_it::{count, cpu_ticks, kill, scheduler_health, wait_for, Cluster};
use postgres::Client;
use std::time::Duration;

/// In backend_type order, as `workers()` returns them.
const WORKER_TYPES: [&str; 3] = ["pageperfect pipeline worker 1", "pageperfect pipeline worker 2", "pageperfect scheduler"];

/// (backend_type, pid) of the running pageperfect workers, sorted by backend_type.
fn workers(client: &mut Client) -> Vec<(String, i32)> {
    try_workers(client).expect("query pg_stat_activity")
}

/// `workers`, or `None` when the connection broke (the server is restarting after a crash).
fn try_workers(client: &mut Client) -> Option<Vec<(String, i32)>> {
    let rows = client
        .query(
            "SELECT backend_type, pid FROM pg_stat_activity WHERE backend_type LIKE 'pageperfect %' ORDER BY 1",
            &[],
        )
        .ok()?;
    Some(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

fn all_healthy(client: &mut Client) -> bool {
    let rows = scheduler_health(client);
    rows.len() == 3 && rows.iter().all(|(_, status)| status == "healthy")
}

fn started_cluster(name: &str, settings: &[&str]) -> (Cluster, Client) {
    let (cluster, mut client) = Cluster::with_extension(name, settings);
    wait_for(Duration::from_secs(30), "all workers healthy", || all_healthy(&mut client).then_some(()));
    (cluster, client)
}

#[test]
fn every_worker_heartbeats_at_least_once_a_second_while_waiting_on_its_latch() {
    let (_cluster, mut client) = started_cluster("heartbeat", &[]);
    let types: Vec<String> = workers(&mut client).into_iter().map(|(t, _)| t).collect();
    assert_eq!(types, WORKER_TYPES);

    let heartbeats = "SELECT worker_name, last_heartbeat, pid FROM pageperfect.workers ORDER BY 1";
    let before = client.query(heartbeats, &[]).unwrap();
    let pids: Vec<i32> = before.iter().map(|r| r.get(2)).collect();
    let ticks_before: Vec<u64> = pids.iter().map(|&p| cpu_ticks(p)).collect();
    std::thread::sleep(Duration::from_millis(3000));
    let after = client.query(heartbeats, &[]).unwrap();
    assert_eq!(before.len(), 3);
    for (b, a) in before.iter().zip(&after) {
        let name: String = b.get(0);
        let (t0, t1): (std::time::SystemTime, std::time::SystemTime) = (b.get(1), a.get(1));
        let advanced = t1.duration_since(t0).unwrap_or_default();
        assert!(advanced >= Duration::from_millis(2000), "{name}'s heartbeat advanced only {advanced:?} in 3 s");
    }
    // The gap between heartbeats, seen from the row itself: never more than a second old.
    let stalest: f64 = client
        .query_one("SELECT max(extract(epoch FROM clock_timestamp() - last_heartbeat))::float8 FROM pageperfect.workers", &[])
        .unwrap()
        .get(0);
    assert!(stalest < 1.0, "a heartbeat is {stalest} s old");
    // Waiting on the latch, not spinning: 3 s of idling costs a few ticks of CPU, not hundreds.
    for (pid, ticks) in pids.iter().zip(ticks_before) {
        let used = cpu_ticks(*pid) - ticks;
        assert!(used < 30, "worker {pid} used {used} CPU ticks in 3 s of idling");
    }
}

#[test]
fn a_pipeline_worker_killed_with_sigkill_is_back_within_ten_seconds() {
    let (cluster, mut client) = started_cluster("sigkill", &[]);
    let victim = workers(&mut client).into_iter().find(|(t, _)| t == "pageperfect pipeline worker 1").unwrap().1;
    kill(victim, "KILL");

    // The postmaster resets every backend after a crash: reconnect, then find a new worker 1.
    let replacement = wait_for(Duration::from_secs(10), "pipeline worker 1 to be restarted", || {
        let mut client = cluster.reconnect(Duration::from_secs(10));
        let pid = try_workers(&mut client)?.into_iter().find(|(t, _)| t == "pageperfect pipeline worker 1")?.1;
        (pid != victim).then_some(pid)
    });
    assert_ne!(replacement, victim);

    let mut client = cluster.reconnect(Duration::from_secs(10));
    assert_eq!(client.query_one("SELECT 40 + 2", &[]).unwrap().get::<_, i32>(0), 42, "the cluster keeps serving");
    wait_for(Duration::from_secs(10), "health to report every worker healthy again", || {
        all_healthy(&mut client).then_some(())
    });
}

#[test]
fn sigterm_stops_a_worker_cleanly_and_the_postmaster_starts_a_new_one() {
    let (cluster, mut client) = started_cluster("sigterm", &[]);
    let scheduler = workers(&mut client).into_iter().find(|(t, _)| t == "pageperfect scheduler").unwrap().1;
    client.execute("SELECT pg_terminate_backend($1)", &[&scheduler]).unwrap();

    wait_for(Duration::from_secs(10), "a new scheduler process", || {
        let pid = workers(&mut client).into_iter().find(|(t, _)| t == "pageperfect scheduler")?.1;
        (pid != scheduler).then_some(())
    });
    let log = cluster.log();
    assert!(log.contains("pageperfect scheduler stopping (SIGTERM)"), "no clean stop in the log:\n{log}");
    assert!(!log.contains("terminating any other active server processes"), "SIGTERM caused a crash restart:\n{log}");
    // The rest of the cluster was not disturbed: the pipeline workers kept their processes.
    assert_eq!(workers(&mut client).len(), 3);
}

#[test]
fn sighup_makes_every_worker_reload_its_configuration() {
    let (cluster, mut client) = started_cluster("sighup", &["pageperfect.pipeline_workers = 2"]);
    client.batch_execute("ALTER SYSTEM SET pageperfect.crawl_timeout_ms = 1234").unwrap();
    client.batch_execute("SELECT pg_reload_conf()").unwrap();
    wait_for(Duration::from_secs(10), "every worker to log a reload", || {
        let log = cluster.log();
        ["scheduler", "pipeline_worker_1", "pipeline_worker_2"]
            .iter()
            .all(|w| log.contains(&format!("pageperfect {w}: configuration reloaded")))
            .then_some(())
    });
}

#[test]
fn the_worker_count_follows_pipeline_workers_and_workers_wait_for_the_extension() {
    let cluster = Cluster::start("count", true, &["pageperfect.pipeline_workers = 4"]);
    let mut client = cluster.connect();
    wait_for(Duration::from_secs(10), "five workers", || (workers(&mut client).len() == 5).then_some(()));
    wait_for(Duration::from_secs(10), "the workers to say they wait for the extension", || {
        cluster.log().contains("waiting for CREATE EXTENSION pageperfect in database \"postgres\"").then_some(())
    });
    client.batch_execute("CREATE EXTENSION pageperfect").unwrap();
    let names: Vec<String> = wait_for(Duration::from_secs(10), "five heartbeat rows", || {
        let rows = client.query("SELECT worker_name FROM pageperfect.workers ORDER BY 1", &[]).unwrap();
        (rows.len() == 5).then(|| rows.iter().map(|r| r.get(0)).collect())
    });
    assert_eq!(
        names,
        ["pipeline_worker_1", "pipeline_worker_2", "pipeline_worker_3", "pipeline_worker_4", "scheduler"]
    );
}

#[test]
fn without_the_preload_the_extension_installs_and_health_reports_workers_down() {
    let cluster = Cluster::start("nopreload", false, &["pageperfect.api_key = 'sk-in-a-placeholder'"]);
    let mut client = cluster.connect();
    client.batch_execute("CREATE EXTENSION pageperfect").unwrap();
    // A secret in the configuration without the preload is readable until the library loads:
    // loading it says so.
    assert!(cluster.log().contains("pageperfect's secret settings are set but pageperfect is not in shared_preload_libraries"));
    assert!(workers(&mut client).is_empty());
    assert_eq!(
        scheduler_health(&mut client),
        [("scheduler", "down"), ("pipeline_worker_1", "down"), ("pipeline_worker_2", "down")]
            .map(|(c, s)| (c.to_string(), s.to_string()))
    );
    let tables: i64 = client
        .query_one("SELECT count(*) FROM pg_tables WHERE schemaname = 'pageperfect'", &[])
        .unwrap()
        .get(0);
    assert!(tables > 30, "only {tables} tables installed");
}

#[test]
fn a_crash_of_the_whole_cluster_brings_the_workers_back() {
    let (cluster, _client) = started_cluster("crash", &[]);
    cluster.crash_and_restart();
    let mut client = cluster.reconnect(Duration::from_secs(10));
    wait_for(Duration::from_secs(15), "every worker healthy after an immediate stop and start", || {
        all_healthy(&mut client).then_some(())
    });
}

#[test]
fn a_session_holding_the_claim_lock_delays_claims_but_stalls_no_worker() {
    let (cluster, mut client) = started_cluster("claim-lock", &["log_min_messages = warning"]);
    // Stands for a frozen worker caught inside a claim: the claim lock held, nothing happening.
    let mut holder = cluster.connect();
    holder.batch_execute("BEGIN; SELECT pageperfect.lock_claims();").unwrap();
    let job: String = client
        .query_one("SELECT pageperfect.enqueue_job('https://example.com/held', ARRAY['test_sleep'])::text", &[])
        .unwrap()
        .get(0);
    let status = |client: &mut Client| -> String {
        client.query_one("SELECT status FROM pageperfect.jobs WHERE id = $1::text::uuid", &[&job]).unwrap().get(0)
    };
    // Past the 5 s after which a silent worker counts as stalled, every worker still heartbeats.
    for _ in 0..16 {
        std::thread::sleep(Duration::from_millis(500));
        let stalled = count(&mut client, "SELECT count(*) FROM pageperfect.worker_health() WHERE status <> 'healthy'");
        assert_eq!(stalled, 0, "{:?}", scheduler_health(&mut client));
        assert_eq!(status(&mut client), "queued", "claimed while the claim lock was held");
    }
    let log = cluster.log();
    assert!(log.contains("claiming work failed (will retry): canceling statement due to lock timeout"), "{log}");
    holder.batch_execute("COMMIT").unwrap();
    wait_for(Duration::from_secs(10), "the job claimed and completed once the lock is free", || {
        (status(&mut client) == "completed").then_some(())
    });
}

//! Durable HTTP from SQL, pg_net's way: `net.http_post(url := …, headers := …, body := …)` sends
//! only after commit and exactly once, runs unchanged from a cron job, and what a misbehaving
//! server does (500, too slow, refused, hung up, redirected, malformed headers) is recorded as
//! pg_net records it, for any role. With retries asked for (`max_attempts`), a burst of 2,000
//! requests against a loopback server that answers 500, 429 and too slowly ends with every
//! request answered or failed with its reason — also through kill -9 of the workers and an
//! immediate stop of the cluster. Roles' requests pass the SSRF guard, and one owner's burst
//! cannot hold every delivery slot.

use pageperfect_it::site::{Received, Route, Site};
use pageperfect_it::{count, wait_for, Cluster};
use postgres::Client;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A server that keeps every request and answers by `answer(path, times the path was seen)`.
fn server(answer: impl Fn(&str, usize) -> Route + Send + Sync + 'static) -> (Site, Arc<Mutex<Vec<Received>>>) {
    let seen = Arc::new(Mutex::new(Vec::<Received>::new()));
    let log = seen.clone();
    let site = Site::with_handler(move |request| {
        let times = {
            let mut log = log.lock().unwrap();
            log.push(request.clone());
            log.iter().filter(|r| r.path == request.path).count()
        };
        answer(&request.path, times)
    });
    (site, seen)
}

fn settled(client: &mut Client) -> i64 {
    count(client, "SELECT count(*) FROM pageperfect.http_requests WHERE status IN ('done', 'failed')")
}

#[test]
fn pg_net_calls_send_only_after_commit_exactly_once_and_from_cron_unchanged() {
    let (site, seen) = server(|_, _| Route::status(201, "application/json", r#"{"ok": true}"#));
    let (_cluster, mut client) = Cluster::with_extension("http_commit", &[]);
    let url = site.url("/hooks/edge");
    let post = format!(
        "SELECT net.http_post(url := '{url}', headers := '{{\"Content-Type\": \"application/json\", \"X-Token\": \"t0k\"}}'::jsonb,
                              body := '{{\"event\": \"published\"}}'::jsonb)"
    );

    // Rolled back: never sent.
    client.batch_execute(&format!("BEGIN; {post}; ROLLBACK;")).unwrap();
    // Committed: sent once, its response stored.
    let id: i64 = client.query_one(&post, &[]).unwrap().get(0);
    wait_for(Duration::from_secs(10), "the response", || (settled(&mut client) == 1).then_some(()));
    std::thread::sleep(Duration::from_millis(500));
    let received = seen.lock().unwrap().clone();
    assert_eq!(received.len(), 1, "exactly one request reached the server");
    assert_eq!((received[0].method.as_str(), received[0].path.as_str()), ("POST", "/hooks/edge"));
    assert_eq!(received[0].headers.get("x-token").map(String::as_str), Some("t0k"));
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&received[0].body).unwrap(), serde_json::json!({"event": "published"}));
    let row = client
        .query_one(
            "SELECT (r).status::text, (r).message, ((r).response).status_code, ((r).response).body
               FROM (SELECT net.http_collect_response($1) AS r) c",
            &[&id],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "SUCCESS");
    assert_eq!(row.get::<_, i32>(2), 201);
    assert_eq!(row.get::<_, String>(3), r#"{"ok": true}"#);
    assert_eq!(count(&mut client, "SELECT count(*) FROM net._http_response WHERE status_code = 201 AND NOT timed_out"), 1);

    // The same command as a cron job, as written for pg_net.
    client
        .query_one(&format!("SELECT cron.schedule('edge-hook', '1 seconds', $$ {} $$)", post.replace(&url, &site.url("/hooks/cron"))), &[])
        .unwrap();
    wait_for(Duration::from_secs(20), "three scheduled posts", || {
        (seen.lock().unwrap().iter().filter(|r| r.path == "/hooks/cron").count() >= 3).then_some(())
    });
    client.batch_execute("SELECT cron.unschedule('edge-hook')").unwrap();
    assert!(seen.lock().unwrap().iter().filter(|r| r.path == "/hooks/cron").all(|r| r.method == "POST" && r.headers.contains_key("x-token")));
}

/// A port on loopback where nothing listens.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A server that reads each request and hangs up without a word.
fn hang_up_server() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut buffer = [0u8; 4096];
            let _ = std::io::Read::read(&mut stream, &mut buffer);
        }
    });
    format!("http://127.0.0.1:{port}/pathological")
}

#[test]
fn a_misbehaving_server_is_recorded_as_pg_net_records_it_for_any_role() {
    let (site, seen) = server(|path, _| match path {
        "/status500" => Route::status(500, "text/plain", "oops"),
        "/slow" => Route::status(200, "text/plain", "late").delayed(Duration::from_secs(3)),
        "/redirect_me" => Route::redirect("/to_here"),
        "/to_here" => Route::status(200, "text/plain", "I got redirected\n"),
        "/malformed" => Route::status(200, "text/plain", "still an answer")
            .with_header("MissingValue", "")
            .with_header("Spaces In Header Name", "This header name contains spaces"),
        _ => Route::status(200, "text/plain", "Hello world\n"),
    });
    // Loopback is private: allowed here for the role's requests, as a test server needs.
    let (cluster, mut admin) = Cluster::with_extension("http_pg_net", &["pageperfect.http_allow_private = on"]);
    // Any role may use net, as with pg_net (this one is not in pageperfect_user).
    admin.batch_execute("CREATE ROLE carol LOGIN").unwrap();
    let mut carol = cluster.connect_to("postgres", "carol");
    let get = |client: &mut Client, url: &str, timeout_ms: i32| -> i64 {
        client.query_one("SELECT net.http_get($1, timeout_milliseconds := $2)", &[&url, &timeout_ms]).unwrap().get(0)
    };
    let refused_url = format!("http://127.0.0.1:{}/", closed_port());
    let hang_up_url = hang_up_server();
    let ids = [
        get(&mut carol, &site.url("/status500"), 5000),
        get(&mut carol, &site.url("/slow"), 1000),
        get(&mut carol, &refused_url, 5000),
        get(&mut carol, &hang_up_url, 5000),
        get(&mut carol, &site.url("/redirect_me"), 5000),
        get(&mut carol, &site.url("/malformed"), 5000),
    ];
    // pg_net's collect, waiting for each (async := false).
    let collect = |client: &mut Client, id: i64| -> (String, String, Option<i32>, Option<String>) {
        let row = client
            .query_one(
                "SELECT status::text, message, (response).status_code, (response).body FROM net._http_collect_response($1, async := false)",
                &[&id],
            )
            .unwrap();
        (row.get(0), row.get(1), row.get(2), row.get(3))
    };
    let results: Vec<_> = ids.iter().map(|id| collect(&mut carol, *id)).collect();
    // A 500 is a response, sent once.
    assert_eq!(results[0], ("SUCCESS".into(), "ok".into(), Some(500), Some("oops".into())));
    assert_eq!(seen.lock().unwrap().iter().filter(|r| r.path == "/status500").count(), 1);
    // Transport failures are recorded at once (no retries), in pg_net's words.
    assert_eq!(results[1].0, "ERROR");
    assert!(results[1].1.starts_with("Timeout of 1000 ms reached. Total time: "), "{}", results[1].1);
    assert_eq!((results[2].0.as_str(), results[2].1.as_str()), ("ERROR", "Couldn't connect to server"));
    assert_eq!((results[3].0.as_str(), results[3].1.as_str()), ("ERROR", "Server returned nothing (no headers, no data)"));
    // Redirects are followed; malformed header lines do not fail the response.
    assert_eq!(results[4], ("SUCCESS".into(), "ok".into(), Some(200), Some("I got redirected\n".into())));
    assert_eq!((results[5].0.as_str(), results[5].2), ("SUCCESS", Some(200)));
    let flags: Vec<(bool, i32)> = carol
        .query("SELECT r.timed_out, q.attempts FROM net._http_response r JOIN pageperfect.http_requests q USING (id) ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(flags, vec![(false, 1), (true, 1), (false, 1), (false, 1), (false, 1), (false, 1)]);
    // carol sees her own requests only; another role's are not hers to collect.
    let other = get(&mut admin, &site.url("/admins"), 5000);
    assert_eq!(collect(&mut admin, other).0, "SUCCESS");
    assert_eq!(count(&mut carol, "SELECT count(*) FROM net._http_response"), 6);
    assert_eq!(collect(&mut carol, other).1, "request matching request_id not found");
}

/// Under `/flaky/`, paths whose number ends in 1 fail once with 500, in 2 once with 429
/// (Retry-After: 1), and every 50th (3, 53, …) answers only after 4 s, past the requests'
/// `BURST_TIMEOUT_MS`. Every other path is answered at once.
fn flaky(path: &str, times: usize) -> Route {
    let n: u64 = path.rsplit('/').next().and_then(|n| n.parse().ok()).unwrap_or(0);
    match (n % 10, n % 50, times) {
        _ if !path.starts_with("/flaky/") => Route::status(200, "text/plain", &format!("answer {n}")),
        (_, 3, _) => Route::status(200, "text/plain", "late").delayed(Duration::from_secs(4)),
        (1, _, 1) => Route::status(500, "text/plain", "try again"),
        (2, _, 1) => Route::status(429, "text/plain", "slow down").with_header("Retry-After", "1"),
        _ => Route::status(200, "text/plain", &format!("answer {n}")),
    }
}

/// The requests' timeout in both bursts of the fault test (the clean one measures the rate under
/// the same conditions): short, so that the late paths time out soon, and long enough that a
/// loaded machine answers every other path within it (at 500 ms, one did not under a CPU hog,
/// and its retry counted as a second hit).
const BURST_TIMEOUT_MS: i32 = 1500;

fn burst(client: &mut Client, site: &Site, prefix: &str, n: i64, timeout_ms: i32) {
    client
        .execute(
            "SELECT pageperfect.http_get($1 || i, timeout_milliseconds := $3, max_attempts := 5) FROM generate_series(1, $2::int) i",
            &[&site.url(prefix), &(n as i32), &timeout_ms],
        )
        .unwrap();
}

#[test]
fn a_burst_of_2000_with_500s_429s_and_timeouts_ends_answered_or_failed_with_none_lost() {
    let (site, seen) = server(flaky);
    let (_cluster, mut client) = Cluster::with_extension("http_burst", &["pageperfect.pipeline_workers = 2"]);

    // Without faults first, for the rate.
    let started = Instant::now();
    burst(&mut client, &site, "/clean/", 2000, BURST_TIMEOUT_MS);
    let clean = wait_for(Duration::from_secs(120), "the clean burst", || (settled(&mut client) == 2000).then(|| started.elapsed()));
    eprintln!("2000 requests, no faults: {:.0} requests/s", 2000.0 / clean.as_secs_f64());

    client.batch_execute("TRUNCATE pageperfect.http_requests CASCADE").unwrap();
    seen.lock().unwrap().clear();
    let started = Instant::now();
    burst(&mut client, &site, "/flaky/", 2000, BURST_TIMEOUT_MS);
    // The rate counts the requests that can end at once (all but the 2% that time out five times,
    // which take 15 s of backoff whatever the throughput).
    let answered = "SELECT count(*) FROM pageperfect.http_requests WHERE status IN ('done', 'failed') OR split_part(url, '/', 5)::int % 50 = 3";
    let faulty = wait_for(Duration::from_secs(60), "the faulty burst's 1,960", || (count(&mut client, answered) == 2000).then(|| started.elapsed()));
    eprintln!("2000 requests, 20% failing once (500, or 429 with Retry-After: 1): {:.0} requests/s", 1960.0 / faulty.as_secs_f64());
    wait_for(Duration::from_secs(120), "the faulty burst's timeouts", || (settled(&mut client) == 2000).then_some(()));

    // Every request ended: the slow ones failed as timeouts, never as successes; the rest answered 200.
    let outcome = |client: &mut Client, sql: &str| count(client, &format!("SELECT count(*) FROM pageperfect.http_requests q JOIN pageperfect.http_responses r USING (id) WHERE {sql}"));
    assert_eq!(outcome(&mut client, "q.status = 'done' AND r.status_code = 200 AND NOT r.timed_out"), 1960);
    assert_eq!(
        outcome(&mut client, "q.status = 'failed' AND r.timed_out AND r.status_code IS NULL AND r.attempts = 5 AND r.error_msg LIKE '%gave up after 5 attempts%'"),
        40
    );
    assert_eq!(outcome(&mut client, "r.content LIKE 'answer %' AND r.content <> 'answer ' || split_part(q.url, '/', 5)"), 0);
    assert_eq!(outcome(&mut client, "q.url LIKE '%1' AND r.attempts = 2"), 200, "each 500 retried once");
    assert_eq!(outcome(&mut client, "q.url LIKE '%2' AND r.attempts = 2 AND r.created - q.created >= interval '1 second'"), 200, "each 429 retried after its Retry-After");
    // Exactly once per answered attempt: the server saw each 500/429 path twice, the others once.
    let mut hits: HashMap<String, usize> = HashMap::new();
    for request in seen.lock().unwrap().iter() {
        *hits.entry(request.path.clone()).or_default() += 1;
    }
    assert_eq!(hits.len(), 2000);
    for (path, times) in &hits {
        let n: u64 = path.rsplit('/').next().unwrap().parse().unwrap();
        let expected = if n % 50 == 3 { 5 } else if matches!(n % 10, 1 | 2) { 2 } else { 1 };
        assert_eq!(*times, expected, "{path}");
    }
}

#[test]
fn kill_9_of_the_workers_and_an_immediate_stop_lose_no_request() {
    let (site, seen) = server(|path, _| Route::status(200, "text/plain", path).delayed(Duration::from_millis(100)));
    let (cluster, mut client) = Cluster::with_extension("http_crash", &["pageperfect.pipeline_workers = 2"]);
    // pg_net's default timeout: only the crashes, never a slow answer, may cause a resend here.
    burst(&mut client, &site, "/crash/", 2000, 5000);
    wait_for(Duration::from_secs(30), "some requests to be answered", || (settled(&mut client) > 100).then_some(()));
    for row in client.query("SELECT pid FROM pageperfect.workers WHERE kind = 'pipeline'", &[]).unwrap() {
        // A worker may have exited on its own since the row was written: that is no failure here.
        let pid: i32 = row.get(0);
        let _ = std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status();
    }
    let mut client = cluster.reconnect_after_crash(client);
    wait_for(Duration::from_secs(60), "more requests to be answered", || (settled(&mut client) > 1000).then_some(()));
    cluster.crash_and_restart();
    let mut client = cluster.reconnect(Duration::from_secs(30));
    wait_for(Duration::from_secs(120), "every request to end", || (settled(&mut client) == 2000).then_some(()));

    assert_eq!(count(&mut client, "SELECT count(*) FROM pageperfect.http_requests q JOIN pageperfect.http_responses r USING (id) WHERE r.status_code = 200 AND r.content = substring(q.url from '/crash/[0-9]+$')"), 2000);
    let paths: std::collections::HashSet<String> = seen.lock().unwrap().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths.len(), 2000, "every request reached the server");
    // Only requests in flight at a crash were sent again: at most 16 per worker, two crashes.
    let resent = seen.lock().unwrap().len() - 2000;
    assert!(resent <= 2 * 2 * 16, "{resent} requests were sent twice");
}

#[test]
fn roles_requests_pass_the_ssrf_guard_and_one_owner_cannot_hold_every_delivery_slot() {
    let (site, seen) = server(|path, _| {
        let route = Route::status(200, "text/plain", path);
        if path.starts_with("/slow/") { route.delayed(Duration::from_millis(2500)) } else { route }
    });
    let (cluster, mut admin) = Cluster::with_extension("http_guard", &["pageperfect.pipeline_workers = 2"]);
    admin
        .batch_execute(
            "CREATE ROLE alice LOGIN IN ROLE pageperfect_user; CREATE ROLE bob LOGIN IN ROLE pageperfect_user;
             GRANT USAGE ON SCHEMA net TO alice, bob;",
        )
        .unwrap();
    let mut alice = cluster.connect_to("postgres", "alice");

    // A role cannot reach the loopback server: a literal address is refused at once...
    let refused = alice.query_one("SELECT net.http_get($1)", &[&site.url("/literal")]).unwrap_err();
    assert!(pageperfect_it::db_message(refused).contains("127.0.0.1 is a loopback address"));
    // ...and a guarded request to a name that resolves to loopback (stored here directly: the
    // functions refuse the name localhost itself) fails when it is sent, without reaching it.
    let named = site.url("/named").replace("127.0.0.1", "localhost");
    admin
        .execute(
            "INSERT INTO pageperfect.http_requests (method, url, timeout_milliseconds, owner, guarded)
             VALUES ('GET', $1, 2000, 'alice', true)",
            &[&named],
        )
        .unwrap();
    // A superuser's request is not guarded, as with pg_net.
    admin.query_one("SELECT net.http_get($1)", &[&site.url("/superuser")]).unwrap();
    wait_for(Duration::from_secs(20), "both requests to end", || (settled(&mut admin) == 2).then_some(()));
    let error: String = admin
        .query_one("SELECT r.error_msg FROM pageperfect.http_responses r JOIN pageperfect.http_requests q USING (id) WHERE q.url = $1 AND q.status = 'failed'", &[&named])
        .unwrap()
        .get(0);
    assert!(error.contains("loopback"), "{error}");
    let paths: Vec<String> = seen.lock().unwrap().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths, vec!["/superuser".to_string()]);

    // With private addresses allowed, alice's burst of slow requests (as many as the 2 workers
    // have slots) holds at most http_max_in_flight_per_owner of them, and bob's request is
    // answered beside it instead of after her first ones (2.5 s).
    for statement in [
        "ALTER SYSTEM SET pageperfect.http_allow_private = on",
        "SELECT pg_reload_conf()",
        "UPDATE pageperfect.parameters SET value = '4' WHERE name = 'http_max_in_flight_per_owner'",
    ] {
        admin.batch_execute(statement).unwrap();
    }
    std::thread::sleep(Duration::from_millis(500));
    let mut alice = cluster.connect_to("postgres", "alice");
    let mut bob = cluster.connect_to("postgres", "bob");
    alice
        .execute("SELECT net.http_get($1 || i) FROM generate_series(1, 32) i", &[&site.url("/slow/")])
        .unwrap();
    let started = Instant::now();
    bob.query_one("SELECT net.http_get($1)", &[&site.url("/bob")]).unwrap();
    let in_flight = "SELECT count(*) FROM pageperfect.http_requests WHERE owner = 'alice' AND status = 'in_flight'";
    let mut most = 0;
    let bob_answered = wait_for(Duration::from_secs(20), "bob's answer", || {
        most = most.max(count(&mut admin, in_flight));
        let done = count(&mut admin, "SELECT count(*) FROM pageperfect.http_requests WHERE owner = 'bob' AND status = 'done'");
        (done == 1).then(|| started.elapsed())
    });
    assert!(bob_answered < Duration::from_secs(2), "bob waited {bob_answered:?} behind alice's burst");
    wait_for(Duration::from_secs(60), "alice's burst", || {
        most = most.max(count(&mut admin, in_flight));
        (count(&mut admin, "SELECT count(*) FROM pageperfect.http_requests WHERE owner = 'alice' AND status = 'done'") == 32).then_some(())
    });
    assert!(most <= 4, "alice had {most} requests in flight at once");
    assert!(most >= 2, "the sampling saw alice's requests in flight ({most})");
}

//! The scheduler API and the trigger endpoints over real HTTP, against a real cluster: every
//! action with the guides' JSON shape, tokens (none, wrong, another tenant's), read-only mode,
//! and another tenant's jobs, queues, dead letters and workflows out of sight and out of reach.

mod common;

use common::*;
use pageperfect_it::count;
use serde_json::Value;

fn names(data: &Value, key: &str) -> Vec<String> {
    data.as_array().unwrap().iter().filter_map(|row| row[key].as_str().map(str::to_string)).collect()
}

#[test]
fn every_action_answers_the_guides_shape_for_its_own_tenant_only() {
    let (cluster, mut admin) = cluster_with_tenants("web-api", &[]);
    let mut alice = cluster.connect_to("postgres", "alice");
    let mut mallory = cluster.connect_to("postgres", "mallory");
    alice
        .batch_execute(
            "SELECT cron.schedule('alice-report', '0 0 1 1 *', 'SELECT 1');
             SELECT cron.schedule('alice-broken', '0 0 1 1 *', 'SELECT 1/0');
             SELECT pageperfect.create_queue('alice-q');
             SELECT pageperfect.send('alice-q', '{\"n\": 1}'), pageperfect.send('alice-q', '{\"n\": 2}'), pageperfect.send('alice-q', '{\"n\": 3}');
             SELECT * FROM pageperfect.read('alice-q', 60, 1);",
        )
        .unwrap();
    mallory
        .batch_execute(
            "SELECT cron.schedule('mallory-job', '0 0 1 1 *', 'SELECT 1');
             SELECT pageperfect.create_queue('mallory-q');",
        )
        .unwrap();
    let server = Server::start(&cluster, "alice", "web-alice", &[]);
    let client = http();
    let api = |query: &str| server.url(&format!("/api/scheduler?{query}"));
    let get = |query: &str| send(client.get(api(query)).bearer_auth(ALICE_TOKEN));
    let post = |query: &str| send(client.post(api(query)).bearer_auth(ALICE_TOKEN));

    // No token, a wrong one, another tenant's: 401 and the guides' failure shape.
    let response = client.get(api("action=status")).send().unwrap();
    assert_eq!(response.status().as_u16(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    let body: Value = response.json().unwrap();
    assert_eq!(body["success"], false);
    assert!(body["error"].as_str().unwrap().contains("Bearer token is required"), "{body}");
    for token in ["alice-web-token-012345678", MALLORY_TOKEN, ""] {
        let (status, body) = send(client.post(api("action=trigger&job=alice-report")).bearer_auth(token));
        assert_eq!((status, &body["success"]), (401, &Value::Bool(false)), "token {token:?}: {body}");
    }
    assert_eq!(count(&mut admin, "SELECT count(*) FROM pageperfect.job_run_details"), 0, "a refused request ran a job");

    // status and jobs: alice's two jobs, as the SQL functions give them to her.
    let (status, body) = get("action=status");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["success"], true);
    assert_eq!((body["data"]["total_jobs"].as_i64(), body["data"]["active_jobs"].as_i64()), (Some(2), Some(2)), "{body}");
    for key in ["total_jobs", "active_jobs", "failed_jobs", "last_run", "next_run"] {
        assert!(body["data"].get(key).is_some(), "status lacks {key}: {body}");
    }
    let (_, jobs) = get("action=jobs");
    assert_eq!(names(&jobs["data"], "job_name"), ["alice-report", "alice-broken"], "{jobs}");
    for key in ["jobid", "job_name", "schedule", "command", "active", "last_run", "next_run", "last_status"] {
        assert!(jobs["data"][0].get(key).is_some(), "jobs lacks {key}: {jobs}");
    }

    // trigger: a run now; runs shows it finished.
    let (status, body) = post("action=trigger&job=alice-report");
    assert_eq!(status, 200, "{body}");
    let runid = body["data"]["runid"].as_i64().expect("runid");
    let runs = eventually(30, "alice-report's run to succeed", || {
        let (_, runs) = get("action=runs&job=alice-report");
        (runs["data"][0]["status"] == "succeeded").then_some(runs)
    });
    assert_eq!(runs["data"][0]["runid"].as_i64(), Some(runid));
    assert_eq!(runs["data"][0]["run_reason"], "manual");
    assert!(runs["data"][0]["duration_seconds"].as_f64().unwrap() >= 0.0);
    let (status, _) = post("action=trigger&job=alice-broken");
    assert_eq!(status, 200);
    eventually(30, "alice-broken's run to fail", || {
        let (_, runs) = get("action=runs&job=alice-broken&limit=1");
        (runs["data"][0]["status"] == "failed").then_some(())
    });
    let (_, body) = get("action=status");
    assert_eq!(body["data"]["failed_jobs"].as_i64(), Some(1), "{body}");
    let (status, body) = get("action=runs&job=alice-report&limit=0");
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("max_runs must be between 1 and 1000"), "{body}");

    // health: a row per job and per worker.
    let (_, health) = get("action=health");
    let rows = health["data"].as_array().unwrap();
    let row = |component: &str| rows.iter().find(|r| r["component"] == component).unwrap_or_else(|| panic!("no {component}: {health}"));
    assert_eq!(row("alice-report")["status"], "healthy");
    assert_eq!(row("alice-broken")["status"], "failing");
    assert_eq!(row("alice-broken")["error_count"].as_i64(), Some(1));
    assert_eq!(row("scheduler")["status"], "healthy");
    assert!(row("pipeline_worker_1")["last_run"].is_string(), "a worker row carries its heartbeat: {health}");
    assert!(!rows.iter().any(|r| r["component"] == "mallory-job"), "{health}");

    // toggle.
    let (status, body) = post("action=toggle&job=alice-report&enable=false");
    assert_eq!((status, &body["data"]["success"]), (200, &Value::Bool(true)), "{body}");
    assert_eq!(count(&mut admin, "SELECT count(*) FROM pageperfect.job WHERE jobname = 'alice-report' AND NOT active"), 1);
    let (status, body) = post("action=toggle&job=alice-report&enable=maybe");
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("boolean"), "{body}");
    let (status, body) = post("action=toggle&job=alice-report");
    assert_eq!(status, 400);
    assert_eq!(body["error"], "action=toggle needs the parameter enable");

    // Bad requests say what is wrong.
    assert_eq!(get("action=toggle&job=alice-report&enable=true").0, 405);
    assert_eq!(post("action=jobs").0, 405);
    let (status, body) = get("action=everything");
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().starts_with("unknown action \"everything\""), "{body}");
    assert_eq!(get("").0, 400);

    // mallory's job does not exist for alice's server: not listed, not runnable, not toggled.
    for (status, body) in [post("action=trigger&job=mallory-job"), post("action=toggle&job=mallory-job&enable=false"), get("action=runs&job=mallory-job")] {
        assert_eq!((status, &body["success"]), (404, &Value::Bool(false)), "{body}");
    }
    assert_eq!(count(&mut admin, "SELECT count(*) FROM pageperfect.job WHERE jobname = 'mallory-job' AND active"), 1);
    assert_eq!(count(&mut admin, "SELECT count(*) FROM pageperfect.job_run_details d JOIN pageperfect.job j USING (jobid) WHERE j.jobname = 'mallory-job'"), 0);

    // queues: alice's only, with metrics() numbers.
    let (_, queues) = get("action=queues");
    assert_eq!(names(&queues["data"], "queue_name"), ["alice-q"], "{queues}");
    assert_eq!((queues["data"][0]["queue_length"].as_i64(), queues["data"][0]["queue_visible_length"].as_i64()), (Some(3), Some(2)));

    // dead_letters: list and retry alice's; mallory's is neither listed nor retried.
    let alice_job: String = alice.query_one("SELECT pageperfect.enqueue_job('https://example.com/gone', ARRAY['test_permanent'])::text", &[]).unwrap().get(0);
    let mallory_job: String = mallory.query_one("SELECT pageperfect.enqueue_job('https://example.com/hers', ARRAY['test_permanent'])::text", &[]).unwrap().get(0);
    let letters = eventually(30, "alice's dead letter", || {
        let (_, letters) = get("action=dead_letters");
        (!letters["data"].as_array().unwrap().is_empty()).then_some(letters)
    });
    assert_eq!(letters["data"].as_array().unwrap().len(), 1, "{letters}");
    assert_eq!(letters["data"][0]["job_id"], alice_job.as_str());
    assert_eq!(letters["data"][0]["url"], "https://example.com/gone");
    assert!(letters["data"][0]["error"].as_str().unwrap().contains("404"), "{letters}");
    let alice_letter = letters["data"][0]["id"].as_i64().unwrap();
    let mallory_letter = eventually(30, "mallory's dead letter", || {
        admin.query_opt("SELECT id FROM pageperfect.dead_letters WHERE job_id = $1::text::uuid", &[&mallory_job]).unwrap().map(|r| r.get::<_, i64>(0))
    });
    let (status, body) = post(&format!("action=dead_letters&id={mallory_letter}"));
    assert_eq!(status, 404, "{body}");
    assert_eq!(count(&mut admin, &format!("SELECT count(*) FROM pageperfect.dead_letters WHERE id = {mallory_letter} AND retried_at IS NULL")), 1);
    let (status, body) = post(&format!("action=dead_letters&id={alice_letter}"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["dead_letter_id"].as_i64(), Some(alice_letter));
    assert!(body["data"]["msg_id"].as_i64().is_some(), "{body}");
    assert_eq!(count(&mut admin, &format!("SELECT count(*) FROM pageperfect.dead_letters WHERE id = {alice_letter} AND retried_at IS NOT NULL")), 1);
    let (status, body) = post(&format!("action=dead_letters&id={alice_letter}"));
    assert_eq!(status, 409, "a second retry: {body}");
    assert!(body["error"].as_str().unwrap().contains("was already retried"), "{body}");

    // workflow: start one, then read its stages; mallory's is not there.
    let (status, body) = post("action=workflow&url=https%3A%2F%2Fexample.com%2Fpricing");
    assert_eq!(status, 200, "{body}");
    let job_id = body["data"]["job_id"].as_str().unwrap().to_string();
    assert_eq!(count(&mut admin, &format!("SELECT count(*) FROM pageperfect.jobs WHERE id = '{job_id}' AND owner = 'alice'")), 1);
    let (status, body) = get(&format!("action=workflow&id={job_id}"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["url"], "https://example.com/pricing");
    assert_eq!(
        names(&body["data"]["stages"], "stage"),
        ["submit_crawl", "wait_crawl", "segment_embed", "keyword_clustering", "gap_analysis", "rewrite_draft"]
    );
    assert_eq!(get(&format!("action=workflow&id={mallory_job}")).0, 404);
    let (status, body) = get("action=workflow&id=not-a-uuid");
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("uuid"), "{body}");
    let (status, body) = post("action=workflow&url=ftp%3A%2F%2Fexample.com%2F");
    assert_eq!((status, &body["success"]), (400, &Value::Bool(false)), "{body}");
}

#[test]
fn read_only_mode_shows_everything_and_changes_nothing() {
    let (cluster, mut admin) = cluster_with_tenants("web-read-only", &[]);
    let mut alice = cluster.connect_to("postgres", "alice");
    alice.batch_execute("SELECT cron.schedule('alice-report', '0 0 1 1 *', 'SELECT 1')").unwrap();
    admin.batch_execute("SELECT pageperfect.set_cron_secret('pageperfect-cron-process-urls', 'process-urls-secret-0123')").unwrap();
    let server = Server::start(&cluster, "alice", "web-alice", &["--read-only"]);
    let client = http();
    let (status, body) = send(client.get(server.url("/api/scheduler?action=jobs")).bearer_auth(ALICE_TOKEN));
    assert_eq!((status, names(&body["data"], "job_name")), (200, vec!["alice-report".to_string()]));
    for query in ["action=trigger&job=alice-report", "action=toggle&job=alice-report&enable=false", "action=workflow&url=https%3A%2F%2Fexample.com%2F"] {
        let (status, body) = send(client.post(server.url(&format!("/api/scheduler?{query}"))).bearer_auth(ALICE_TOKEN));
        assert_eq!(status, 403, "{query}: {body}");
        assert!(body["error"].as_str().unwrap().contains("read-only"), "{body}");
    }
    let (status, _) = send(
        client.post(server.url("/functions/v1/pageperfect-cron-process-urls")).body(r#"{"cronSecret": "process-urls-secret-0123"}"#),
    );
    assert_eq!(status, 403);
    assert_eq!(count(&mut admin, "SELECT count(*) FROM pageperfect.job_run_details"), 0);
    assert_eq!(count(&mut admin, "SELECT count(*) FROM pageperfect.job WHERE active"), 1);
    assert_eq!(count(&mut admin, "SELECT count(*) FROM pageperfect.jobs"), 0);
}

#[test]
fn trigger_endpoints_check_their_secret_and_call_the_functions() {
    let (cluster, mut admin) = cluster_with_tenants("web-triggers", &[]);
    admin
        .batch_execute(
            "SELECT pageperfect.set_cron_secret('pageperfect-cron-process-urls', 'process-urls-secret-0123');
             SELECT pageperfect.set_cron_secret('pageperfect-cron-ingest-gsc', 'ingest-gsc-secret-0123456');
             SELECT pageperfect.set_cron_secret('pageperfect-cron-recalibrate-ctr', 'recalibrate-secret-012345');
             SELECT pageperfect.set_cron_secret('pageperfect-cron-webhook', 'webhook-secret-0123456789');
             SELECT pageperfect.set_cron_secret('web-admin', 'admin-web-token-0123456789');
             -- A page of alice's that was never crawled: due for process_urls.
             INSERT INTO pageperfect.pages (url, owner) VALUES ('https://example.com/due', 'alice');
             -- Search Console rows over ten positions for the CTR fit.
             INSERT INTO pageperfect.gsc_page_query_daily (date, site, page, query, clicks, impressions, position)
             SELECT current_date - 2, 'sc-domain:example.com', 'https://example.com/', 'q' || p, (60 / p)::int, 200, p
               FROM generate_series(1, 10) p;",
        )
        .unwrap();
    let server = Server::start(&cluster, "alice", "web-alice", &[]);
    let client = http();
    let process_urls = server.url("/functions/v1/pageperfect-cron-process-urls");

    // A missing or wrong secret (or another endpoint's) is refused and starts nothing.
    for body in [r#"{"limit": 10}"#, r#"{"limit": 10, "cronSecret": "process-urls-secret-0124"}"#, r#"{"cronSecret": "webhook-secret-0123456789"}"#, ""] {
        let (status, answer) = send(client.post(&process_urls).body(body));
        assert_eq!((status, &answer["success"]), (401, &Value::Bool(false)), "{body}: {answer}");
    }
    assert_eq!(count(&mut admin, "SELECT count(*) FROM pageperfect.jobs"), 0);
    let (status, answer) = send(client.post(&process_urls).body("{not json"));
    assert_eq!(status, 400);
    assert!(answer["error"].as_str().unwrap().contains("not valid JSON"), "{answer}");
    let (status, answer) =
        send(client.post(&process_urls).body(r#"{"limit": 10, "olderThan": "soon", "cronSecret": "process-urls-secret-0123"}"#));
    assert_eq!(status, 400, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("interval"), "{answer}");

    // The right one: the guides' body, and process_urls starts the due page's workflow.
    let (status, answer) =
        send(client.post(&process_urls).body(r#"{"limit": 10, "olderThan": "2 days", "cronSecret": "process-urls-secret-0123"}"#));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["data"]["started"].as_i64(), Some(1), "{answer}");
    assert_eq!(count(&mut admin, "SELECT count(*) FROM pageperfect.jobs WHERE owner = 'alice' AND url = 'https://example.com/due'"), 1);

    // The webhook: X-Webhook-Secret; alice may not sweep (a superuser's function), so only the
    // processing runs (nothing more is due).
    let webhook = server.url("/api/cron/webhook");
    assert_eq!(send(client.post(&webhook)).0, 401);
    assert_eq!(send(client.post(&webhook).header("X-Webhook-Secret", "webhook-secret-012345678")).0, 401);
    let (status, answer) = send(client.post(&webhook).header("X-Webhook-Secret", "webhook-secret-0123456789"));
    assert_eq!(status, 200, "{answer}");
    assert_eq!((answer["data"]["swept"].clone(), answer["data"]["started"].as_i64()), (Value::Null, Some(0)), "{answer}");

    // Recalibrating the CTR curve is a superuser's: alice's server says so.
    let recalibrate = server.url("/functions/v1/pageperfect-cron-recalibrate-ctr");
    let (status, answer) = send(client.post(&recalibrate).body(r#"{"lookbackDays": 30, "cronSecret": "recalibrate-secret-012345"}"#));
    assert_eq!(status, 403, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("permission denied"), "{answer}");

    // A server configured with a superuser does the system-wide ones.
    let admin_server = Server::start(&cluster, "postgres", "web-admin", &[]);
    let (status, answer) = send(
        client.post(admin_server.url("/functions/v1/pageperfect-cron-recalibrate-ctr")).body(r#"{"lookbackDays": 30, "cronSecret": "recalibrate-secret-012345"}"#),
    );
    assert_eq!(status, 200, "{answer}");
    assert!(answer["data"]["alpha"].is_number() && answer["data"]["beta"].is_number(), "{answer}");
    assert_eq!(answer["data"]["rows_used"].as_i64(), Some(10), "{answer}");
    let (status, answer) = send(
        client.post(admin_server.url("/functions/v1/pageperfect-cron-ingest-gsc")).body(r#"{"date": "2025-04-30", "cronSecret": "ingest-gsc-secret-0123456"}"#),
    );
    assert_eq!(status, 409, "no credentials stored yet: {answer}");
    assert_eq!(answer["error"], "no Search Console credentials are stored");
    assert!(answer["hint"].as_str().unwrap().contains("set_gsc_credentials"), "{answer}");
    let (status, answer) = send(client.post(admin_server.url("/functions/v1/pageperfect-cron-ingest-gsc")).body(r#"{"date": "2025-04-30"}"#));
    assert_eq!(status, 401, "{answer}");
    let (status, answer) = send(client.post(admin_server.url("/api/cron/webhook")).header("X-Webhook-Secret", "webhook-secret-0123456789"));
    assert_eq!(status, 200, "{answer}");
    assert!(answer["data"]["swept"].is_object(), "a superuser's pass sweeps: {answer}");
}

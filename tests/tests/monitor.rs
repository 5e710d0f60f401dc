//! Monitoring alerts reach the webhook once: a preloaded cluster raises an alert for a dead
//! letter and for a stopped worker, posts each new one as Slack-style JSON to a loopback
//! webhook (retrying its 500), does not post again while the alert stays open, and resolves
//! the alert when the condition clears.

use pageperfect_it::site::{Received, Route, Site};
use pageperfect_it::{count, kill, wait_for, Cluster};
use postgres::Client;
use serde_json::Value;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

/// Stops process `pid` with SIGSTOP at a moment it holds no lock that others need. Stopped inside
/// a lock manager critical section (releasing its locks at commit, say), it would freeze the
/// whole cluster, new connections included; stopped inside a transaction, its row and claim
/// locks would hold up the other worker, which the test expects to post the alert. So a fresh
/// connection must see, within 2 s, that the process holds no lock at all (it is between
/// transactions), or the process is continued and stopped again a moment later.
fn stop_holding_no_lock(cluster: &Cluster, pid: i32) {
    for _ in 0..20 {
        kill(pid, "STOP");
        let (answered, answer) = mpsc::channel();
        let port = cluster.port;
        std::thread::spawn(move || {
            let conninfo = format!("host=127.0.0.1 port={port} user=postgres dbname=postgres");
            let held = Client::connect(&conninfo, postgres::NoTls)
                .and_then(|mut c| c.query_one("SELECT count(*) FROM pg_locks WHERE pid = $1", &[&pid]))
                .map(|row| row.get::<_, i64>(0));
            let ok = matches!(held, Ok(0));
            let _ = answered.send(ok);
        });
        if answer.recv_timeout(Duration::from_secs(2)) == Ok(true) {
            return;
        }
        kill(pid, "CONT");
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("process {pid} could not be stopped without freezing the cluster");
}

fn monitor(client: &mut Client) -> Value {
    let summary: String = client.query_one("SELECT pageperfect.trigger_monitoring()::text", &[]).unwrap().get(0);
    serde_json::from_str(&summary).unwrap()
}

fn keys(summary: &Value, field: &str) -> Vec<String> {
    summary[field].as_array().unwrap().iter().filter_map(|k| k.as_str().map(str::to_string)).collect()
}

/// The `text` of every post the webhook received, in order.
fn texts(posts: &Mutex<Vec<Received>>) -> Vec<String> {
    posts
        .lock()
        .unwrap()
        .iter()
        .map(|post| serde_json::from_slice::<Value>(&post.body).unwrap()["text"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn each_new_alert_is_posted_once_and_resolved_when_its_condition_clears() {
    // The webhook fails its first post with a 500; the stage retries it.
    let posts = Arc::new(Mutex::new(Vec::<Received>::new()));
    let received = posts.clone();
    let hook = Site::with_handler(move |request| {
        let mut posts = received.lock().unwrap();
        posts.push(request.clone());
        if posts.len() == 1 {
            Route::status(500, "text/plain", "upstream unavailable")
        } else {
            Route::status(200, "text/plain", "ok")
        }
    });
    let webhook = format!("pageperfect.alert_webhook_url = '{}'", hook.url("/hooks/alerts"));
    let (cluster, mut client) = Cluster::with_extension("monitor", &[&webhook, "pageperfect.pipeline_workers = 2"]);
    client.batch_execute("UPDATE pageperfect.stage_config SET retry_delay_seconds = 1 WHERE stage = 'notify_alert'").unwrap();
    wait_for(Duration::from_secs(20), "the workers to be healthy", || {
        (count(&mut client, "SELECT count(*) FROM pageperfect.worker_health() WHERE status <> 'healthy'") == 0).then_some(())
    });

    // A dead letter opens an alert, posted once (after one retry).
    client.batch_execute("SELECT pageperfect.enqueue_job('https://example.com/', ARRAY['test_permanent'])").unwrap();
    wait_for(Duration::from_secs(20), "the job to be dead", || {
        (count(&mut client, "SELECT count(*) FROM pageperfect.dead_letters") == 1).then_some(())
    });
    let first = monitor(&mut client);
    assert_eq!(keys(&first, "opened"), ["dead_letters"], "{first}");
    assert_eq!(first["notifications_queued"], 1);
    wait_for(Duration::from_secs(20), "the alert to be posted", || {
        (count(&mut client, "SELECT count(*) FROM pageperfect.monitoring_alerts WHERE notified_at IS NOT NULL") == 1).then_some(())
    });
    let sent = texts(&posts);
    assert_eq!(sent.len(), 2, "one failed post and its retry: {sent:?}");
    assert_eq!(sent[0], sent[1]);
    assert!(sent[0].starts_with(":warning: *pageperfect warning* on database `postgres`: 1 dead letter(s)"), "{}", sent[0]);
    assert!(posts.lock().unwrap().iter().all(|p| p.method == "POST" && p.path == "/hooks/alerts"
        && p.headers.get("content-type").map(String::as_str) == Some("application/json")));

    // Still open: refreshed, not posted again.
    let second = monitor(&mut client);
    assert!(keys(&second, "opened").is_empty(), "{second}");
    assert_eq!(second["notifications_queued"], 0);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(texts(&posts).len(), 2);

    // A stopped worker: its heartbeat goes stale, a critical alert is posted by the other worker.
    let pid: i32 = client
        .query_one("SELECT pid FROM pageperfect.workers WHERE worker_name = 'pipeline_worker_2'", &[])
        .unwrap()
        .get(0);
    stop_holding_no_lock(&cluster, pid);
    wait_for(Duration::from_secs(20), "the stopped worker to look stalled", || {
        (count(&mut client, "SELECT count(*) FROM pageperfect.worker_health() WHERE component = 'pipeline_worker_2' AND status = 'stalled'") == 1)
            .then_some(())
    });
    let stalled = monitor(&mut client);
    assert_eq!(keys(&stalled, "opened"), ["worker_down:pipeline_worker_2"], "{stalled}");
    let sent = wait_for(Duration::from_secs(20), "the worker alert to be posted", || {
        let sent = texts(&posts);
        (sent.len() == 3).then_some(sent)
    });
    assert!(sent[2].starts_with(":rotating_light: *pageperfect critical*"), "{}", sent[2]);
    assert!(sent[2].contains("Worker pipeline_worker_2 is stalled"), "{}", sent[2]);

    // Both conditions clear: the worker resumes and the operator dismisses the dead letter.
    kill(pid, "CONT");
    client.batch_execute("DELETE FROM pageperfect.dead_letters").unwrap();
    wait_for(Duration::from_secs(20), "the worker to be healthy again", || {
        (count(&mut client, "SELECT count(*) FROM pageperfect.worker_health() WHERE status <> 'healthy'") == 0).then_some(())
    });
    let cleared = monitor(&mut client);
    assert_eq!(keys(&cleared, "resolved"), ["dead_letters", "worker_down:pipeline_worker_2"], "{cleared}");
    assert_eq!(cleared["open"], 0);
    assert_eq!(texts(&posts).len(), 3, "resolving posts nothing");
}

/// Opens an alert and queues its post to `webhook`, as trigger_monitoring does for a new one.
fn notify_new_alert(client: &mut Client, webhook: &str, key: &str, message: &str) {
    client
        .execute(
            "WITH alert AS (
                 INSERT INTO pageperfect.monitoring_alerts (alert_key, alert_type, severity, message)
                 VALUES ($2, split_part($2, ':', 1), 'critical', $3) RETURNING id)
             SELECT pageperfect.create_job(current_user, $1, ARRAY['notify_alert'], jsonb_build_object('alert_id', alert.id), 0, '{}', false)
               FROM alert",
            &[&webhook, &key, &message],
        )
        .unwrap();
}

#[test]
fn an_alert_is_delivered_at_once_however_long_the_pipeline_backlog() {
    let posts = Arc::new(Mutex::new(Vec::<(Received, std::time::Instant)>::new()));
    let received = posts.clone();
    let hook = Site::with_handler(move |request| {
        received.lock().unwrap().push((request.clone(), std::time::Instant::now()));
        Route::status(200, "text/plain", "ok")
    });
    // Every page takes 10 s: 2,000 of them are hours of work for one owner's two job slots.
    let slow = Site::with_handler(|_| Route::html("<html><body><p>slow page</p></body></html>").delayed(Duration::from_secs(10)));
    let webhook = format!("pageperfect.alert_webhook_url = '{}'", hook.url("/hooks/alerts"));
    let (_cluster, mut client) = Cluster::with_extension("alert_lane", &[&webhook, "pageperfect.crawl_allow_private = on"]);
    // Both of the owner's job slots crawling at once (one site: let it take two at a time).
    client.batch_execute("UPDATE pageperfect.stage_config SET per_host_limit = 2 WHERE stage = 'submit_crawl'").unwrap();
    // The superuser queues the backlog, as the content automation job does.
    client.execute("SELECT count(pageperfect.run_workflow($1 || n)) FROM generate_series(1, 2000) n", &[&slow.url("/page/")]).unwrap();
    wait_for(Duration::from_secs(20), "the backlog to be under way", || {
        (count(&mut client, "SELECT count(*) FROM pageperfect.jobs WHERE status = 'processing'") >= 2).then_some(())
    });
    // An alert, notified as trigger_monitoring notifies it: by the same superuser.
    let started = std::time::Instant::now();
    notify_new_alert(&mut client, &hook.url("/hooks/alerts"), "workers_down:test", "a pipeline worker is down");
    let delivered = wait_for(Duration::from_secs(30), "the alert's post", || posts.lock().unwrap().first().map(|(_, at)| *at));
    let waited = delivered.duration_since(started);
    assert!(waited < Duration::from_secs(5), "the alert waited {waited:?} behind the backlog");
    assert!(count(&mut client, "SELECT count(*) FROM pageperfect.jobs WHERE status = 'queued'") > 1900, "the backlog is still there");
}

#[test]
fn with_no_pipeline_worker_running_the_scheduler_posts_the_alert_itself() {
    let posts = Arc::new(Mutex::new(Vec::<Received>::new()));
    let received = posts.clone();
    let hook = Site::with_handler(move |request| {
        received.lock().unwrap().push(request.clone());
        Route::status(200, "text/plain", "ok")
    });
    let webhook = format!("pageperfect.alert_webhook_url = '{}'", hook.url("/hooks/alerts"));
    // No pipeline worker at all: nothing else could deliver the alert.
    let (_cluster, mut client) = Cluster::with_extension("alert_fallback", &[&webhook, "pageperfect.pipeline_workers = 0"]);
    notify_new_alert(&mut client, &hook.url("/hooks/alerts"), "worker_down:pipeline", "no pipeline worker is running");
    wait_for(Duration::from_secs(20), "the scheduler to post the alert", || (!posts.lock().unwrap().is_empty()).then_some(()));
    let text = texts(&posts).remove(0);
    assert!(text.contains("critical") && text.contains("no pipeline worker is running"), "{text}");
    wait_for(Duration::from_secs(5), "the alert to be marked notified", || {
        (count(&mut client, "SELECT count(*) FROM pageperfect.monitoring_alerts WHERE notified_at IS NOT NULL") == 1).then_some(())
    });
    // Its job is cancelled, so workers that come back do not post it again.
    assert_eq!(count(&mut client, "SELECT count(*) FROM pageperfect.jobs WHERE status = 'cancelled'"), 1);
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(posts.lock().unwrap().len(), 1, "posted once");
}

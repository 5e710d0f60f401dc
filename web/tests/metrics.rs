//! `/metrics` read by Prometheus's own parser and linter (`promtool check metrics`, Debian's
//! prometheus package), with values that match SQL counts over the same rows, for the server's
//! role only.

mod common;

use common::*;
use pageperfect_it::count;
use std::io::Write;
use std::process::{Command, Stdio};

/// The value of the sample `name` whose labels include every `labels` pair.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
        (metric == name && labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))).then(|| value.parse().unwrap())
    })
}

#[test]
fn metrics_pass_promtool_and_match_sql_counts() {
    let (cluster, mut admin) = cluster_with_tenants("web-metrics", &[]);
    let mut alice = cluster.connect_to("postgres", "alice");
    alice
        .batch_execute(
            "SELECT cron.schedule('alice-fast', '1 seconds', 'SELECT 1');
             SELECT cron.schedule('alice-broken', '1 seconds', 'SELECT 1/0');
             SELECT pageperfect.create_queue('alice-q');
             SELECT pageperfect.send('alice-q', '{\"n\": 1}'), pageperfect.send('alice-q', '{\"n\": 2}');
             SELECT * FROM pageperfect.read('alice-q', 300, 1);
             SELECT pageperfect.enqueue_job('https://example.com/gone', ARRAY['test_permanent']);",
        )
        .unwrap();
    admin.batch_execute("SELECT cron.schedule('admin-job', '1 seconds', 'SELECT 1')").unwrap();
    eventually(30, "runs of both of alice's jobs and a dead letter", || {
        let done = count(&mut admin, "SELECT count(DISTINCT jobid) FROM pageperfect.job_run_details WHERE status IN ('succeeded', 'failed') AND username = 'alice'");
        (done == 2 && count(&mut admin, "SELECT count(*) FROM pageperfect.dead_letters") == 1).then_some(())
    });
    // Stop the jobs so that the counts hold still while they are compared.
    alice.batch_execute("SELECT pageperfect.toggle_cron_job('alice-fast', false); SELECT pageperfect.toggle_cron_job('alice-broken', false)").unwrap();
    eventually(10, "runs in progress to end", || {
        (count(&mut admin, "SELECT count(*) FROM pageperfect.job_run_details WHERE username = 'alice' AND status NOT IN ('succeeded', 'failed', 'skipped', 'cancelled')") == 0).then_some(())
    });

    let server = Server::start(&cluster, "alice", "web-alice", &[]);
    let client = http();
    let refused = client.get(server.url("/metrics")).send().unwrap();
    assert_eq!(refused.status().as_u16(), 401);
    let response = client.get(server.url("/metrics")).bearer_auth(ALICE_TOKEN).send().unwrap();
    let status = response.status().as_u16();
    let content_type = response.headers()["content-type"].to_str().unwrap().to_string();
    let text = response.text().unwrap();
    assert_eq!(status, 200, "{text}");
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");

    // Prometheus's parser and its naming lint accept it.
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; scripts/setup.sh installs it)");
    promtool.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success() && checked.stdout.is_empty() && checked.stderr.is_empty(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    // Values: the same rows counted in SQL.
    for (job, status) in [("alice-fast", "succeeded"), ("alice-broken", "failed")] {
        let runs = count(&mut admin, &format!(
            "SELECT count(*) FROM pageperfect.job_run_details d JOIN pageperfect.job j USING (jobid) WHERE j.jobname = '{job}' AND d.status = '{status}'"
        ));
        assert!(runs >= 1);
        assert_eq!(sample(&text, "pageperfect_cron_runs_total", &[("job", job), ("status", status)]), Some(runs as f64), "{job}\n{text}");
        assert_eq!(sample(&text, "pageperfect_cron_run_duration_seconds_count", &[("job", job)]), Some(runs as f64), "{text}");
        assert_eq!(sample(&text, "pageperfect_cron_run_duration_seconds_bucket", &[("job", job), ("le", "+Inf")]), Some(runs as f64));
        assert_eq!(sample(&text, "pageperfect_cron_job_active", &[("job", job)]), Some(0.0));
        assert!(sample(&text, "pageperfect_cron_lag_seconds", &[("job", job)]).unwrap() >= 0.0);
    }
    assert!(!text.contains("admin-job"), "another role's job is in alice's metrics:\n{text}");
    assert_eq!(sample(&text, "pageperfect_queue_messages", &[("queue", "alice-q"), ("state", "visible")]), Some(1.0));
    assert_eq!(sample(&text, "pageperfect_queue_messages", &[("queue", "alice-q"), ("state", "invisible")]), Some(1.0));
    assert_eq!(sample(&text, "pageperfect_queue_sent_messages_total", &[("queue", "alice-q")]), Some(2.0));
    let failed_attempts = count(&mut admin, "SELECT count(*) FROM pageperfect.job_events WHERE stage = 'test_permanent' AND event = 'failed'");
    assert_eq!(sample(&text, "pageperfect_stage_attempts_total", &[("stage", "test_permanent"), ("outcome", "failed")]), Some(failed_attempts as f64));
    assert_eq!(sample(&text, "pageperfect_stage_work_items", &[("stage", "test_permanent"), ("state", "dead")]), Some(1.0), "{text}");
    assert_eq!(sample(&text, "pageperfect_dead_letters", &[]), Some(1.0));
    assert_eq!(sample(&text, "pageperfect_worker_up", &[("worker", "scheduler")]), Some(1.0));
    assert_eq!(sample(&text, "pageperfect_worker_up", &[("worker", "pipeline_worker_1")]), Some(1.0));
    assert_eq!(sample(&text, "pageperfect_http_requests_total", &[("status", "401")]), Some(1.0), "{text}");
}

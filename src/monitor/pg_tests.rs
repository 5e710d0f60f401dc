//! SQL-level tests of the trigger_* functions and initialize_scheduler: each one's effect on its
//! tables. (The webhook post and the jobs running on their schedules are in tests/tests/monitor.rs.)

#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;
    use serde_json::Value;

    fn json(sql: &str) -> Value {
        Spi::get_one::<pgrx::JsonB>(sql).unwrap().unwrap().0
    }

    fn count(sql: &str) -> i64 {
        Spi::get_one::<i64>(sql).unwrap().unwrap()
    }

    /// A job of the given status with one stage, for events and dead letters to hang off.
    fn job(stage_status: &str) -> String {
        Spi::get_one_with_args::<String>(
            "WITH j AS (INSERT INTO pageperfect.jobs (url, status, stage) VALUES ('https://example.com/', 'processing', 'test_sleep') RETURNING id),
                  s AS (INSERT INTO pageperfect.job_stages (job_id, stage, position, status, attempt_count, max_attempts, retry_delay_seconds,
                                                            claimed_pid, claimed_backend_start, started_at)
                        SELECT id, 'test_sleep', 1, $1, 1, 3, 1, 999999, now(), now() FROM j)
             SELECT id::text FROM j",
            &[stage_status.into()],
        )
        .unwrap()
        .unwrap()
    }

    #[pg_test]
    fn initialize_scheduler_creates_the_nine_jobs_once_and_keeps_changed_schedules() {
        let first = Spi::get_one::<String>(
            "SELECT string_agg(job_name || ' ' || schedule || ' ' || action, ', ' ORDER BY jobid) FROM pageperfect.initialize_scheduler()",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            first,
            "content_pipeline_main */5 * * * * created, content_pipeline_sweeper */15 * * * * created, \
             content_pipeline_monitor 0 * * * * created, content_pipeline_metrics */30 * * * * created, \
             content_pipeline_health */10 * * * * created, content_pipeline_cleanup 0 2 * * * created, \
             pageperfect-cron-ingest-gsc 0 2 * * * created, pageperfect-cron-process-urls 0 * * * * created, \
             pageperfect-cron-recalibrate-ctr 0 3 * * 0 created"
        );
        let ids = "SELECT array_agg(jobid ORDER BY jobid)::text FROM pageperfect.job";
        let before = Spi::get_one::<String>(ids).unwrap();
        Spi::run("SELECT pageperfect.alter_job(jobid, schedule => '*/2 * * * *') FROM pageperfect.job WHERE jobname = 'content_pipeline_main'").unwrap();
        let second = Spi::get_one::<String>(
            "SELECT string_agg(DISTINCT action, ',') || ' ' || count(*) || ' ' ||
                    max(schedule) FILTER (WHERE job_name = 'content_pipeline_main')
               FROM pageperfect.initialize_scheduler()",
        )
        .unwrap()
        .unwrap();
        assert_eq!(second, "exists 9 */2 * * * *");
        assert_eq!(Spi::get_one::<String>(ids).unwrap(), before);
        assert_eq!(count("SELECT count(*) FROM pageperfect.job"), 9);
    }

    #[pg_test]
    fn the_sweeper_requeues_work_of_dead_workers_and_logs_it() {
        let orphan = job("processing");
        let summary = json("SELECT pageperfect.trigger_sweeper()");
        assert_eq!(summary["requeued_orphans"], 1, "{summary}");
        let status = Spi::get_one_with_args::<String>("SELECT status FROM pageperfect.job_stages WHERE job_id = $1::uuid", &[orphan.into()]);
        assert_eq!(status.unwrap().as_deref(), Some("queued"));
        assert_eq!(count("SELECT count(*) FROM pageperfect.sweeper_logs WHERE stages_requeued = 1 AND stages_failed = 0"), 1);
        // Nothing left to do: the next run logs zeros.
        assert_eq!(json("SELECT pageperfect.trigger_sweeper()")["requeued_orphans"], 0);
        assert_eq!(count("SELECT count(*) FROM pageperfect.sweeper_logs"), 2);
    }

    #[pg_test]
    fn cleanup_deletes_only_what_outlived_its_retention_and_logs_each_table() {
        let old_job = job("completed");
        Spi::run_with_args(
            "INSERT INTO pageperfect.job_events (job_id, event, message, created_at) VALUES
                 ($1::uuid, 'completed', 'old', now() - interval '31 days'), ($1::uuid, 'completed', 'recent', now() - interval '29 days');
             INSERT INTO pageperfect.metrics_data (metric_name, value, collected_at) VALUES
                 ('m', 1, now() - interval '31 days'), ('m', 2, now());
             INSERT INTO pageperfect.monitoring_alerts (alert_key, alert_type, severity, message, status, created_at, resolved_at) VALUES
                 ('a', 't', 'warning', 'old and resolved', 'resolved', now() - interval '20 days', now() - interval '15 days'),
                 ('b', 't', 'warning', 'old but open', 'open', now() - interval '20 days', NULL);
             INSERT INTO pageperfect.job_run_details (jobid, status, start_time, end_time) VALUES
                 (1, 'succeeded', now() - interval '40 days', now() - interval '40 days'),
                 (1, 'running', now() - interval '40 days', NULL),
                 (1, 'failed', now() - interval '1 day', now() - interval '1 day');
             INSERT INTO pageperfect.http_requests (id, method, url, timeout_milliseconds, status) OVERRIDING SYSTEM VALUE VALUES
                 (1, 'GET', 'https://example.com/a', 1000, 'done'), (2, 'GET', 'https://example.com/b', 1000, 'done');
             INSERT INTO pageperfect.http_responses (id, status_code, created) VALUES
                 (1, 200, now() - interval '7 hours'), (2, 200, now() - interval '5 hours');
             INSERT INTO pageperfect.host_politeness (host, crawl_delay_seconds, next_start_at) VALUES
                 ('forgotten.example', 5, now() - interval '15 days'), ('recent.example', 5, now() - interval '13 days')",
            &[old_job.into()],
        )
        .unwrap();
        let summary = json("SELECT pageperfect.trigger_cleanup()");
        let deleted = &summary["deleted"];
        assert_eq!(deleted["job_events"], 1, "{summary}");
        assert_eq!(deleted["metrics_data"], 1, "{summary}");
        assert_eq!(deleted["monitoring_alerts"], 1, "{summary}");
        assert_eq!(deleted["job_run_details"], 1, "{summary}");
        assert_eq!(deleted["http_responses"], 1, "{summary}");
        assert_eq!(deleted["host_politeness"], 1, "{summary}");
        assert_eq!(
            Spi::get_one::<String>("SELECT string_agg(message, ',' ORDER BY id) FROM pageperfect.job_events").unwrap().as_deref(),
            Some("recent")
        );
        assert_eq!(
            Spi::get_one::<String>("SELECT string_agg(status, ',' ORDER BY runid) FROM pageperfect.job_run_details").unwrap().as_deref(),
            Some("running,failed")
        );
        assert_eq!(count("SELECT count(*) FROM pageperfect.monitoring_alerts WHERE alert_key = 'b'"), 1);
        assert_eq!(count("SELECT count(*) FROM pageperfect.http_requests"), 1, "the request goes with its expired response");
        // Retention is a parameter: shortening it deletes the rest.
        Spi::run("UPDATE pageperfect.parameters SET value = '0' WHERE name = 'events_retention_days'").unwrap();
        assert_eq!(json("SELECT pageperfect.trigger_cleanup()")["deleted"]["job_events"], 1);
        assert_eq!(
            count("SELECT count(*) FROM pageperfect.cleanup_logs WHERE table_name = 'job_events' AND deleted_count = 1 AND retention = interval '0 days'"),
            1
        );
        assert_eq!(count("SELECT count(DISTINCT table_name) FROM pageperfect.cleanup_logs"), 18);
    }

    #[pg_test]
    fn metrics_collection_writes_throughput_success_rate_latency_and_queue_depth() {
        let id = job("completed");
        Spi::run_with_args(
            "INSERT INTO pageperfect.job_events (job_id, stage, event, data, created_at)
             SELECT $1::uuid, 'test_sleep', CASE WHEN n <= 3 THEN 'completed' ELSE 'failed' END, jsonb_build_object('duration_ms', n * 100),
                    now() - interval '1 second'
               FROM generate_series(1, 4) n;
             SELECT pageperfect.create_queue('orders');
             SELECT pageperfect.send('orders', '{}') FROM generate_series(1, 7)",
            &[id.into()],
        )
        .unwrap();
        let summary = json("SELECT pageperfect.trigger_metrics_collection()");
        assert!(summary["metrics_written"].as_i64().unwrap() >= 13, "{summary}");
        let metric = |name: &str, labels: &str| {
            Spi::get_one_with_args::<f64>(
                "SELECT value FROM pageperfect.metrics_data WHERE metric_name = $1 AND labels @> $2::jsonb",
                &[name.into(), labels.into()],
            )
            .unwrap()
        };
        assert_eq!(metric("stage_attempts", r#"{"stage": "test_sleep"}"#), Some(4.0));
        assert_eq!(metric("stage_success_rate", r#"{"stage": "test_sleep"}"#), Some(0.75));
        assert_eq!(metric("stage_latency_p50_ms", r#"{"stage": "test_sleep"}"#), Some(250.0));
        assert_eq!(metric("stage_throughput_per_minute", r#"{"stage": "test_sleep"}"#), Some(3.0 / 30.0));
        assert_eq!(metric("queue_depth", r#"{"queue": "orders"}"#), Some(7.0));
        assert_eq!(metric("cron_runs", r#"{"window_seconds": 1800}"#), Some(0.0));
    }

    #[pg_test]
    fn health_checks_write_one_timed_row_per_component() {
        let summary = json("SELECT pageperfect.trigger_health_checks()");
        let components = Spi::get_one::<String>(
            "SELECT string_agg(component, ',' ORDER BY id) FROM pageperfect.health_checks WHERE response_time_ms >= 0",
        )
        .unwrap()
        .unwrap();
        assert!(components.starts_with("database,queue,job_engine,cron_jobs,scheduler,pipeline_worker_1"), "{components}");
        assert_eq!(summary["components"], count("SELECT count(*) FROM pageperfect.health_checks"), "{summary}");
        let database = json("SELECT details FROM pageperfect.health_checks WHERE component = 'database'");
        assert!(database["connections"].as_i64().unwrap() >= 1, "{database}");
    }

    #[pg_test]
    fn monitoring_opens_an_alert_once_per_condition_and_resolves_it_when_it_clears() {
        let id = job("dead");
        Spi::run_with_args(
            "INSERT INTO pageperfect.dead_letters (job_id, stage, reason, error) VALUES ($1::uuid, 'test_sleep', 'permanent error', 'HTTP 404');
             INSERT INTO pageperfect.job_events (job_id, stage, event) SELECT $1::uuid, 'test_sleep', 'failed' FROM generate_series(1, 6)",
            &[id.into()],
        )
        .unwrap();
        let first = json("SELECT pageperfect.trigger_monitoring()");
        let opened: Vec<&str> = first["opened"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
        assert!(opened.contains(&"dead_letters") && opened.contains(&"failure_rate:pipeline"), "{first}");
        let message = Spi::get_one::<String>("SELECT message FROM pageperfect.monitoring_alerts WHERE alert_key = 'dead_letters'").unwrap().unwrap();
        assert_eq!(message, "1 dead letter(s) in the last 24 hours, not retried; the latest: test_sleep: HTTP 404");
        assert_eq!(
            Spi::get_one::<String>("SELECT severity FROM pageperfect.monitoring_alerts WHERE alert_key = 'failure_rate:pipeline'").unwrap().as_deref(),
            Some("critical")
        );

        // Still true: nothing new opens, the open alert is refreshed, not duplicated.
        let second = json("SELECT pageperfect.trigger_monitoring()");
        assert!(!second["opened"].as_array().unwrap().iter().any(|key| key == "dead_letters"), "{second}");
        assert_eq!(count("SELECT count(*) FROM pageperfect.monitoring_alerts WHERE alert_key = 'dead_letters'"), 1);

        // The dead letter is retried: the condition clears and the alert is resolved.
        Spi::run("UPDATE pageperfect.dead_letters SET retried_at = now()").unwrap();
        let third = json("SELECT pageperfect.trigger_monitoring()");
        assert!(third["resolved"].as_array().unwrap().iter().any(|key| key == "dead_letters"), "{third}");
        assert_eq!(
            count("SELECT count(*) FROM pageperfect.monitoring_alerts WHERE alert_key = 'dead_letters' AND status = 'resolved' AND resolved_at IS NOT NULL"),
            1
        );
        // Without alert_webhook_url nothing is queued to post.
        assert_eq!(first["notifications_queued"], 0);
    }

    #[pg_test]
    fn content_automation_starts_the_pipeline_for_pages_search_console_reports() {
        Spi::run(
            "INSERT INTO pageperfect.gsc_page_query_daily (date, site, page, query, clicks, impressions, position)
             VALUES (current_date - 1, 'sc-domain:example.com', 'https://example.com/a', 'q', 1, 10, 3),
                    (current_date - 1, 'sc-domain:example.com', 'https://example.com/b', 'q', 1, 10, 3);
             SELECT pageperfect.refresh_gsc_keywords('sc-domain:example.com')",
        )
        .unwrap();
        let summary = json("SELECT pageperfect.trigger_content_automation()");
        assert_eq!(summary["workflows_started"], 2, "{summary}");
        assert_eq!(summary["jobs"]["queued"], 2, "{summary}");
        // Pages with work under way are not started twice.
        assert_eq!(json("SELECT pageperfect.trigger_content_automation()")["workflows_started"], 0);
    }
}

//! `#[pg_test]`s of what `CREATE EXTENSION pageperfect` installs, read back from the catalog.

#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    /// Every relation SPEC.md names, its kind (`r` table, `v` view, `u` unlogged table) and the
    /// columns SPEC.md (or the issue) promises users.
    const SPEC_RELATIONS: &[(&str, char, &[&str])] = &[
        ("cron.job", 'v', &["jobid", "schedule", "command", "nodename", "nodeport", "database", "username", "active", "jobname"]),
        ("cron.job_run_details", 'v', &["jobid", "runid", "job_pid", "database", "username", "command", "status", "return_message", "start_time", "end_time"]),
        ("pageperfect.job", 'r', &["jobid", "schedule", "command", "nodename", "nodeport", "database", "username", "active", "jobname", "timeout", "max_attempts", "retry_backoff", "catch_up"]),
        ("pageperfect.job_run_details", 'r', &["jobid", "runid", "job_pid", "database", "username", "command", "status", "return_message", "start_time", "end_time"]),
        ("pageperfect.task_schedule", 'v', &["jobid", "runid", "status", "start_time", "end_time"]),
        ("pageperfect.queues", 'r', &["queue_name", "created_at"]),
        ("pageperfect.queue_messages", 'r', &["msg_id", "read_ct", "enqueued_at", "vt", "message"]),
        ("pageperfect.queue_archive", 'r', &["msg_id", "read_ct", "enqueued_at", "vt", "message", "archived_at"]),
        ("pageperfect.jobs", 'r', &["id", "url", "page_id", "owner", "status", "stage", "priority", "attempt_count", "result", "created_at", "updated_at", "last_completed_at"]),
        ("pageperfect.job_stages", 'r', &["job_id", "stage", "status", "attempt_count", "max_attempts", "retry_delay_seconds", "started_at", "completed_at", "last_error"]),
        ("pageperfect.payloads", 'r', &["job_id", "stage", "data"]),
        ("pageperfect.job_events", 'r', &["job_id", "stage", "event", "message", "data", "created_at"]),
        ("pageperfect.processing_events", 'v', &["job_id", "stage", "event", "message", "data", "created_at"]),
        ("pageperfect.dead_letters", 'r', &["id", "queue", "msg_id", "job_id", "stage", "message", "reason", "error", "attempt_count", "routed_at"]),
        ("pageperfect.stage_config", 'r', &["stage", "max_attempts", "retry_delay_seconds", "concurrency", "timeout_seconds"]),
        ("pageperfect.v_job_status", 'v', &["job_id", "url", "status", "stage", "attempt_count", "last_error", "created_at", "updated_at"]),
        ("pageperfect.pages", 'r', &["id", "url", "owner", "final_url", "status_code", "content_hash", "fetched_at", "html"]),
        ("pageperfect.page_embeddings", 'r', &["page_id", "content", "embedding", "provider"]),
        ("pageperfect.keyword_clusters", 'r', &["page_id", "label", "queries", "impressions", "centroid"]),
        ("pageperfect.rewrite_recommendations", 'r', &["page_id", "cluster_id", "similarity", "opportunity_score", "estimated_clicks_gain"]),
        ("pageperfect.rewrite_drafts", 'r', &["page_id", "recommendation_id", "provider", "model", "draft", "prompt_tokens", "completion_tokens", "latency_ms"]),
        ("pageperfect.gsc_page_query_daily", 'r', &["date", "site", "page", "query", "clicks", "impressions", "ctr", "position"]),
        ("pageperfect.gsc_keywords", 'r', &["site", "page", "query", "clicks", "impressions", "ctr", "position"]),
        ("pageperfect.ctr_fits", 'r', &["fitted_at", "alpha", "beta", "rows_used"]),
        ("pageperfect.http_requests", 'r', &["id", "method", "url", "params", "headers", "body", "timeout_milliseconds"]),
        ("pageperfect.http_responses", 'r', &["id", "status_code", "content_type", "headers", "content", "timed_out", "error_msg", "attempts", "created"]),
        ("pageperfect.parameters", 'r', &["name", "value"]),
        ("pageperfect.secrets", 'r', &["name", "value"]),
        ("pageperfect.cron_secrets", 'r', &["name", "salt", "hash"]),
        ("pageperfect.workers", 'u', &["worker_name", "pid", "started_at", "last_heartbeat", "state"]),
        ("pageperfect.monitoring_alerts", 'r', &["alert_type", "severity", "message", "status", "created_at", "resolved_at"]),
        ("pageperfect.metrics_data", 'r', &["metric_name", "value", "collected_at"]),
        ("pageperfect.health_checks", 'r', &["component", "status", "response_time_ms", "checked_at"]),
        ("pageperfect.sweeper_logs", 'r', &["ran_at", "stages_requeued", "stages_failed", "runs_failed"]),
        ("pageperfect.cleanup_logs", 'r', &["ran_at", "table_name", "deleted_count"]),
    ];

    #[pg_test]
    fn every_spec_relation_exists_with_its_columns() {
        for (relation, kind, columns) in SPEC_RELATIONS {
            let found = Spi::get_two_with_args::<String, Vec<String>>(
                "SELECT CASE WHEN c.relpersistence = 'u' THEN 'u' ELSE c.relkind::text END,
                        array_agg(a.attname::text ORDER BY a.attnum)
                   FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
                  WHERE c.oid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
                  GROUP BY c.relkind, c.relpersistence",
                &[(*relation).into()],
            );
            let (found_kind, found_columns) = match found {
                Ok((Some(k), Some(c))) => (k, c),
                other => panic!("{relation} is missing: {other:?}"),
            };
            assert_eq!(found_kind, kind.to_string(), "{relation} has the wrong kind");
            for column in *columns {
                assert!(found_columns.iter().any(|c| c == column), "{relation} lacks column {column}: {found_columns:?}");
            }
        }
    }

    #[pg_test]
    fn status_columns_are_checked() {
        let checked = Spi::get_one::<Vec<String>>(
            "SELECT array_agg(DISTINCT conrelid::regclass::text ORDER BY conrelid::regclass::text)
               FROM pg_constraint
              WHERE contype = 'c' AND connamespace = 'pageperfect'::regnamespace
                AND pg_get_constraintdef(oid) ~ '\\m(status|state)\\M'",
        )
        .unwrap()
        .unwrap();
        for table in [
            "pageperfect.job_run_details", "pageperfect.jobs", "pageperfect.job_stages", "pageperfect.http_requests",
            "pageperfect.gsc_ingestions", "pageperfect.workers", "pageperfect.monitoring_alerts", "pageperfect.health_checks",
        ] {
            assert!(checked.iter().any(|t| t == table), "{table} has no status CHECK: {checked:?}");
        }
    }

    #[pg_test(error = "new row for relation \"jobs\" violates check constraint \"jobs_status_check\"")]
    fn a_job_cannot_take_an_unknown_status() {
        Spi::run("INSERT INTO pageperfect.jobs (url, status) VALUES ('https://example.com/', 'paused')").unwrap();
    }

    #[pg_test]
    fn stage_config_is_seeded_in_pipeline_order() {
        let seeded = Spi::get_one::<String>(
            "SELECT string_agg(format('%s %s/%s', stage, max_attempts, concurrency), ', ' ORDER BY position)
               FROM pageperfect.stage_config WHERE position IS NOT NULL",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            seeded,
            "submit_crawl 3/4, wait_crawl 2/1, segment_embed 3/1, keyword_clustering 2/1, gap_analysis 2/1, rewrite_draft 2/1"
        );
    }

    #[pg_test]
    fn hot_paths_have_indexes() {
        for (table, index) in [
            ("queue_messages", "queue_messages_dequeue_idx"),
            ("jobs", "jobs_status_owner_idx"),
            ("job_stages", "job_stages_processing_idx"),
            ("job_stages", "job_stages_msg_idx"),
        ] {
            let exists = Spi::get_one_with_args::<bool>(
                "SELECT EXISTS (SELECT FROM pg_indexes WHERE schemaname = 'pageperfect' AND tablename = $1 AND indexname = $2)",
                &[table.into(), index.into()],
            )
            .unwrap()
            .unwrap();
            assert!(exists, "{table} lacks {index}");
        }
    }

    #[pg_test]
    fn every_setting_is_defined_and_secrets_are_hidden() {
        for name in [
            "database_name", "timezone", "max_running_jobs", "pipeline_workers", "http_concurrency",
            "embedding_provider", "embedding_url", "embedding_model",
            "embedding_dimensions", "llm_provider", "llm_url", "llm_model", "crawl_user_agent",
            "crawl_timeout_ms", "crawl_max_bytes", "crawl_allow_private", "crawl_provider", "crawl_api_url",
            "alert_webhook_url", "gsc_api_url", "gsc_token_url", "embedding_batch_tokens", "llm_token_limit",
            "log_statement", "enable_superuser_jobs",
        ] {
            let listed = Spi::get_one_with_args::<bool>(
                "SELECT EXISTS (SELECT FROM pg_settings WHERE name = 'pageperfect.' || $1)",
                &[name.into()],
            )
            .unwrap()
            .unwrap();
            assert!(listed, "pageperfect.{name} is not in pg_settings");
        }
        for secret in ["api_key", "crawl_api_key"] {
            // Defined (a superuser reads it) but never listed, not even to a superuser.
            let (value, listed) = Spi::get_two_with_args::<String, bool>(
                "SELECT current_setting('pageperfect.' || $1),
                        EXISTS (SELECT FROM pg_settings WHERE name = 'pageperfect.' || $1)",
                &[secret.into()],
            )
            .unwrap();
            assert_eq!(value.as_deref(), Some(""), "pageperfect.{secret}");
            assert_eq!(listed, Some(false), "pageperfect.{secret} is listed in pg_settings");
        }
        assert_eq!(Spi::get_one::<String>("SHOW pageperfect.embedding_dimensions").unwrap().unwrap(), "0", "the model's own");
        assert_eq!(Spi::get_one::<String>("SHOW pageperfect.embedding_provider").unwrap().unwrap(), "local");
    }
}

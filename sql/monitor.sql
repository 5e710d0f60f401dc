-- monitor: worker heartbeats, health checks, metrics, alerts, and the sweeper/cleanup logs.

-- One row per background worker, rewritten at least once a second. Unlogged: a heartbeat says
-- nothing after a crash, and crash recovery empties the table, which reads as "down" until the
-- restarted workers write again.
CREATE UNLOGGED TABLE pageperfect.workers (
    worker_name    text PRIMARY KEY,
    kind           text NOT NULL CHECK (kind IN ('scheduler', 'pipeline')),
    pid            int NOT NULL,
    started_at     timestamptz NOT NULL,
    last_heartbeat timestamptz NOT NULL,
    state          text NOT NULL CHECK (state IN ('idle', 'busy', 'stopped')),
    database       text NOT NULL,
    -- The last time one of the worker's transactions gave up waiting for a lock (or hit its
    -- statement timeout), and the error: another session is holding up its work.
    blocked_at     timestamptz,
    blocked_by     text
);

CREATE TABLE pageperfect.monitoring_alerts (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_key   text NOT NULL,
    alert_type  text NOT NULL,
    severity    text NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    message     text NOT NULL,
    data        jsonb,
    status      text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'resolved')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    resolved_at timestamptz,
    notified_at timestamptz,
    notify_error text
);
-- At most one open alert per condition: it is posted once and resolved when the condition clears.
CREATE UNIQUE INDEX monitoring_alerts_open_key ON pageperfect.monitoring_alerts (alert_key) WHERE status = 'open';

CREATE TABLE pageperfect.metrics_data (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    metric_name  text NOT NULL,
    value        float8,
    labels       jsonb NOT NULL DEFAULT '{}',
    collected_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX metrics_data_name_idx ON pageperfect.metrics_data (metric_name, collected_at);

CREATE TABLE pageperfect.health_checks (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    component        text NOT NULL,
    status           text NOT NULL CHECK (status IN ('healthy', 'degraded', 'down')),
    response_time_ms float8,
    details          jsonb,
    checked_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX health_checks_component_idx ON pageperfect.health_checks (component, checked_at);

-- What each trigger_sweeper() run returned to the queue or failed.
CREATE TABLE pageperfect.sweeper_logs (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ran_at           timestamptz NOT NULL DEFAULT now(),
    -- Stages whose worker died, put back in the queue.
    stages_requeued  int NOT NULL DEFAULT 0,
    -- Stages processing past their time limit although their worker lives, failed (and retried).
    stages_failed    int NOT NULL DEFAULT 0,
    -- Cron runs left unfinished by a process that is gone while the scheduler is down.
    runs_failed      int NOT NULL DEFAULT 0,
    details          jsonb
);

-- One row per table and trigger_cleanup() run: how many rows it deleted, and the retention.
CREATE TABLE pageperfect.cleanup_logs (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ran_at         timestamptz NOT NULL DEFAULT now(),
    table_name     text NOT NULL,
    deleted_count  bigint NOT NULL DEFAULT 0,
    retention      interval NOT NULL
);

-- The scheduler and pipeline_worker_1..N, in order.
CREATE FUNCTION pageperfect.expected_workers()
RETURNS TABLE (component text, ordinal int)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 'scheduler'::text, 0
    UNION ALL
    SELECT 'pipeline_worker_' || n, n
      FROM generate_series(1, coalesce(nullif(current_setting('pageperfect.pipeline_workers', true), '')::int, 2)) AS n
$$;

-- The expected workers (scheduler and pipeline_worker_1..N). A worker is healthy when its
-- heartbeat is fresh and its process (pid and start time) is alive, stalled when alive with a
-- stale heartbeat, and down otherwise -- also when the library was never preloaded. On a hot
-- standby every worker is 'standby': none runs until promotion (and the unlogged heartbeat
-- table cannot be read during recovery).
CREATE FUNCTION pageperfect.worker_health()
RETURNS TABLE (component text, status text, pid int, started_at timestamptz, last_heartbeat timestamptz)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF pg_is_in_recovery() THEN
        RETURN QUERY
            SELECT e.component, 'standby'::text, NULL::int, NULL::timestamptz, NULL::timestamptz
              FROM pageperfect.expected_workers() e ORDER BY e.ordinal;
        RETURN;
    END IF;
    RETURN QUERY
        SELECT e.component,
               CASE WHEN a.pid IS NULL THEN 'down'
                    WHEN w.last_heartbeat > clock_timestamp() - interval '5 seconds' THEN 'healthy'
                    ELSE 'stalled' END,
               w.pid, w.started_at, w.last_heartbeat
          FROM pageperfect.expected_workers() e
          LEFT JOIN pageperfect.workers w ON w.worker_name = e.component
          LEFT JOIN pg_stat_activity a ON a.pid = w.pid AND a.backend_start = w.started_at
         ORDER BY e.ordinal;
END
$$;

-- Workers whose transactions gave up waiting for a lock in the last 5 minutes (none on a standby).
CREATE FUNCTION pageperfect.blocked_workers()
RETURNS TABLE (worker_name text, blocked_at timestamptz, blocked_by text)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT pg_is_in_recovery() THEN
        RETURN QUERY SELECT w.worker_name, w.blocked_at, w.blocked_by FROM pageperfect.workers w
                      WHERE w.blocked_at > now() - interval '5 minutes';
    END IF;
END
$$;


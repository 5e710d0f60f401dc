-- bootstrap: the pageperfect schema, the pageperfect_user role, parameters and secrets.
-- Runs first; every other sql/*.sql file builds on it.

CREATE SCHEMA pageperfect;
COMMENT ON SCHEMA pageperfect IS 'pageperfect: SEO content pipeline, scheduler, queue and workers';

-- Roles are cluster-wide, so they outlive DROP EXTENSION; create it only when missing.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'pageperfect_user') THEN
        CREATE ROLE pageperfect_user NOLOGIN;
    END IF;
END
$$;
GRANT USAGE ON SCHEMA pageperfect TO pageperfect_user;

-- Tunables read by SQL and workers at run time (GUCs hold the connection-level settings).
CREATE TABLE pageperfect.parameters (
    name        text PRIMARY KEY,
    value       jsonb NOT NULL,
    description text,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO pageperfect.parameters (name, value, description) VALUES
    ('max_jobs_per_owner',         '2',     'pipeline jobs one owner may have in processing at once'),
    ('gap_similarity_threshold',   '0.7',   'a keyword cluster whose best paragraph similarity is below this is a gap'),
    ('run_details_retention_days', '30',    'cleanup deletes cron.job_run_details older than this'),
    ('events_retention_days',      '30',    'cleanup deletes job_events older than this'),
    ('logs_retention_days',        '14',    'cleanup deletes sweeper/cleanup logs, health checks and resolved alerts older than this'),
    ('metrics_retention_days',     '30',    'cleanup deletes metrics_data older than this'),
    ('priority_aging_seconds',     '300',   'a waiting message or pipeline stage below the top priority of its queue or stage gains 1 per this many seconds'),
    ('max_missed_runs',            '60',    'cron jobs with missed = all run at most this many missed ticks (the latest) after a downtime'),
    ('cleanup_interval_seconds',   '60',    'how often pipeline worker 1 applies the retention settings (in batches)'),
    ('run_details_per_job',        '10000', 'cleanup keeps at most this many finished runs of each job'),
    ('jobs_retention_days',        '30',    'cleanup deletes finished workflows (with their stages, payloads, events and dead letters) older than this'),
    ('dead_letters_retention_days', '30',   'cleanup deletes dead letters older than this'),
    ('archive_retention_days',     '30',    'cleanup deletes archived queue messages older than this'),
    ('embedding_cache_retention_days', '90', 'cleanup deletes cached embeddings older than this'),
    ('drafts_retention_days',      '90',    'cleanup deletes rewrite drafts older than this, except each page''s latest'),
    ('scores_retention_days',      '365',   'cleanup deletes content scores older than this, except each page''s latest'),
    ('page_html_retention_days',   '30',    'cleanup forgets the HTML of pages not crawled for this long'),
    ('crawl_min_delay_ms',         '0',     'least time between the starts of two crawls of one host (see stage_config.per_host_limit)'),
    ('crawl_delay_max_seconds',    '30',    'a site''s robots.txt Crawl-delay is honoured up to this many seconds'),
    ('http_max_in_flight_per_owner', '24',  'durable HTTP requests one owner may have in flight at once (of pipeline_workers x http_concurrency slots)'),
    ('alert_failure_rate',         '0.2',   'monitoring alerts when the failure rate of the last hour is above this'),
    ('stuck_after_minutes',        '30',    'monitoring alerts on work processing for longer than this'),
    ('gsc_window_days',            '4',     'ingest_gsc() fetches this many days up to yesterday (Google finalises a day two or three days after it), and every earlier day not final yet'),
    ('gsc_backfill_days',          '486',   'a site''s first ingest_gsc() run fetches this many days (16 months, what Search Console keeps)'),
    ('gsc_data_state',             '"all"', 'all: fetch fresh (not yet final) days too and replace them when final; final: finished days only'),
    ('ctr_alpha',                  '-0.51', 'CTR curve intercept: ctr(p) = 1 / (1 + exp(-(alpha + beta * p)))'),
    ('ctr_beta',                   '-0.34', 'CTR curve slope per position'),
    ('ctr_fitted_at',              'null',  'when recalibrate_ctr() last fitted alpha and beta (null: built-in defaults)');
-- Tunables, no secrets: every role may read them (expected_ctr() does, as its caller).
GRANT SELECT ON pageperfect.parameters TO pageperfect_user;

-- Credentials (e.g. gsc_credentials, the service-account JSON). No role but a superuser reads them.
CREATE TABLE pageperfect.secrets (
    name       text PRIMARY KEY,
    value      text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON pageperfect.secrets FROM PUBLIC;

-- Secrets that callers of cron endpoints present: only a salted hash is kept.
CREATE TABLE pageperfect.cron_secrets (
    name       text PRIMARY KEY,
    algorithm  text NOT NULL CHECK (algorithm IN ('pbkdf2-sha256')),
    iterations int NOT NULL CHECK (iterations > 0),
    salt       bytea NOT NULL,
    hash       bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON pageperfect.cron_secrets FROM PUBLIC;

-- Install-time helper (dropped by finalize.sql): rows of child tables are visible to a role
-- (which may read them) exactly when it can see the parent row they hang off (child.parent_key
-- = parent.parent_column), whose own policy checks the owner.
CREATE FUNCTION pageperfect.scope_rows_to_parent(child_tables text[], parent_table text, parent_key text,
                                                 parent_column text DEFAULT 'id')
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY child_tables LOOP
        EXECUTE format('ALTER TABLE pageperfect.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY %I ON pageperfect.%I USING
                            (EXISTS (SELECT FROM pageperfect.%I p WHERE p.%I = %I.%I))',
                       t || '_owner', t, parent_table, parent_column, t, parent_key);
        EXECUTE format('GRANT SELECT ON pageperfect.%I TO pageperfect_user', t);
    END LOOP;
END
$$;

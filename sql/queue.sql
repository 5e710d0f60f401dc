-- queue: pgmq-shaped message queues, and the pipeline job engine (jobs, their stages, payloads,
-- audit events and dead letters) that runs on them.

-- Queues hold no foreign keys to `queues`: a key-share lock per sent message would turn every
-- concurrent send into a MultiXact. The API functions check the queue and drop_queue cleans up.
CREATE TABLE pageperfect.queues (
    -- Names starting with `pageperfect_` are pageperfect's own queues (see queue_api.sql).
    queue_name text PRIMARY KEY,
    -- The role that created it: it and its members (and superusers) use the queue.
    owner      name NOT NULL DEFAULT CURRENT_USER,
    created_at timestamptz NOT NULL DEFAULT now(),
    -- pause_queue(): reads return nothing until resume_queue(); sends are still accepted.
    paused     boolean NOT NULL DEFAULT false,
    -- set_dead_letter(): a message read this many times that comes round again is moved to
    -- dead_letter_queue (or the archive) instead of being read again (pgmq#274's ask).
    max_reads  int CHECK (max_reads >= 1),
    dead_letter_queue text
);

-- Reads update vt, read_ct and last_read_at only, none indexed, so with free space on the page
-- they are HOT updates that touch no index. Messages are read in the order they were sent, so
-- the messages of a page are read (each rewritten once) together: fillfactor 40 leaves room for
-- a second version of every message on its page. At 70, a batch read of a page's messages found
-- room for about a third of them; the rest went to other pages with new entries in both indexes
-- (batch 100: 0.71-0.82 of plain SQL at 70, 0.95-1.00 at 40).
CREATE TABLE pageperfect.queue_messages (
    msg_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue_name  text NOT NULL,
    enqueued_at timestamptz NOT NULL DEFAULT now(),
    priority    int NOT NULL DEFAULT 0,
    message     jsonb NOT NULL,
    -- pgmq 1.10+'s sender's headers.
    headers     jsonb,
    -- What a read rewrites, last: the WAL record of a (HOT) update logs only the bytes that
    -- differ from the old version's prefix and suffix, so with these at the end it carries
    -- them alone, not the message before them.
    read_ct     int NOT NULL DEFAULT 0,
    vt          timestamptz NOT NULL DEFAULT now(),
    -- pgmq 1.10+'s: when a read last took it.
    last_read_at timestamptz
) WITH (fillfactor = 40);
-- The dequeue order: highest priority first, then oldest; invisible messages are filtered.
CREATE INDEX queue_messages_dequeue_idx ON pageperfect.queue_messages (queue_name, priority DESC, msg_id);

CREATE TABLE pageperfect.queue_archive (
    msg_id      bigint PRIMARY KEY,
    queue_name  text NOT NULL,
    read_ct     int NOT NULL,
    enqueued_at timestamptz NOT NULL,
    vt          timestamptz NOT NULL,
    priority    int NOT NULL,
    message     jsonb NOT NULL,
    archived_at timestamptz NOT NULL DEFAULT now(),
    last_read_at timestamptz,
    headers     jsonb
);
CREATE INDEX queue_archive_queue_idx ON pageperfect.queue_archive (queue_name, archived_at);

-- Messages ever sent per queue (metrics' total_messages). Striped by backend so that concurrent
-- senders rarely wait for each other's row lock on one counter.
CREATE TABLE pageperfect.queue_sent_counts (
    queue_name text NOT NULL,
    stripe     int NOT NULL,
    sent       bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (queue_name, stripe)
);

-- The job engine's queue: one message per stage of a job that waits to run.
INSERT INTO pageperfect.queues (queue_name) VALUES ('pageperfect_pipeline');

-- Every stage the workers can run, with its retry, concurrency and time policy. `position` orders
-- the default pipeline; stages without one run only in jobs that name them.
CREATE TABLE pageperfect.stage_config (
    stage               text PRIMARY KEY,
    position            int UNIQUE,
    max_attempts        int NOT NULL CHECK (max_attempts >= 1),
    retry_delay_seconds int NOT NULL CHECK (retry_delay_seconds >= 0),
    concurrency         int NOT NULL CHECK (concurrency >= 1),
    timeout_seconds     int NOT NULL CHECK (timeout_seconds >= 1),
    -- Roles may enqueue it (enqueue_job); the others (alerts, Search Console ingestion) are
    -- created only by the functions meant for them.
    user_runnable       boolean NOT NULL DEFAULT false,
    -- pause_stage(): no work of it is claimed until resume_stage().
    paused              boolean NOT NULL DEFAULT false,
    -- Stages that fetch from the job's site: at most this many of its attempts at once per host,
    -- each started no sooner than the host's delay after the last (host_politeness). NULL: no limit.
    per_host_limit      int CHECK (per_host_limit >= 1)
);
INSERT INTO pageperfect.stage_config (stage, position, max_attempts, retry_delay_seconds, concurrency, timeout_seconds, user_runnable, per_host_limit) VALUES
    ('submit_crawl',       1, 3, 5,  4, 120, true, 1),
    ('wait_crawl',         2, 2, 5,  1, 300, true, NULL),
    ('segment_embed',      3, 3, 5,  1, 300, true, NULL),
    ('keyword_clustering', 4, 2, 5,  1, 300, true, NULL),
    ('gap_analysis',       5, 2, 5,  1, 120, true, NULL),
    ('rewrite_draft',      6, 2, 10, 1, 300, true, NULL);

CREATE TABLE pageperfect.jobs (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    url               text NOT NULL,
    page_id           bigint REFERENCES pageperfect.pages (id) ON DELETE SET NULL,
    owner             name NOT NULL DEFAULT CURRENT_USER,
    status            text NOT NULL DEFAULT 'queued'
                          CHECK (status IN ('queued', 'processing', 'completed', 'failed', 'dead', 'cancelled')),
    stage             text REFERENCES pageperfect.stage_config (stage),
    priority          int NOT NULL DEFAULT 0,
    -- Attempts of the current stage that have started.
    attempt_count     int NOT NULL DEFAULT 0 CHECK (attempt_count >= 0),
    skip_steps        text[] NOT NULL DEFAULT '{}',
    force_update      boolean NOT NULL DEFAULT false,
    options           jsonb NOT NULL DEFAULT '{}',
    result            jsonb,
    -- enqueue_job(unique_key => …): another enqueue with this key returns this job while it is
    -- queued or running (or within the caller's window) instead of starting a second one.
    unique_key        text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    last_completed_at timestamptz
);
CREATE INDEX jobs_status_owner_idx ON pageperfect.jobs (status, owner);
CREATE INDEX jobs_page_idx ON pageperfect.jobs (page_id);
CREATE INDEX jobs_unique_key_idx ON pageperfect.jobs (owner, unique_key) WHERE unique_key IS NOT NULL;
-- A stage's earlier runs for the same page (owner and URL): reuse of unchanged results.
CREATE INDEX jobs_owner_url_idx ON pageperfect.jobs (owner, url);

CREATE TABLE pageperfect.job_stages (
    job_id                uuid NOT NULL REFERENCES pageperfect.jobs (id) ON DELETE CASCADE,
    stage                 text NOT NULL REFERENCES pageperfect.stage_config (stage),
    -- Order within the job: the job runs its stages by position.
    position              int NOT NULL,
    -- The job's priority, kept here so that claims read each stage's work in order from one index.
    priority              int NOT NULL DEFAULT 0,
    -- The host of the job's URL (lowercase), kept here for the same reason: stages with a
    -- per_host_limit are claimed host by host.
    host                  text NOT NULL DEFAULT '',
    -- pending: not reached yet; queued: its message waits; processing: a worker runs it;
    -- failed: the last attempt failed and a retry is due at next_attempt_at.
    status                text NOT NULL DEFAULT 'pending'
                              CHECK (status IN ('pending', 'queued', 'processing', 'completed', 'failed', 'dead', 'skipped', 'cancelled')),
    attempt_count         int NOT NULL DEFAULT 0 CHECK (attempt_count >= 0),
    max_attempts          int NOT NULL CHECK (max_attempts >= 1),
    retry_delay_seconds   int NOT NULL CHECK (retry_delay_seconds >= 0),
    next_attempt_at       timestamptz,
    -- The queue message that stands for this stage while it is queued or processing.
    msg_id                bigint,
    -- Attempts cut short because their worker died; they do not count against max_attempts.
    orphaned_count        int NOT NULL DEFAULT 0,
    -- The claim: which backend runs this stage. Work whose backend is gone is requeued at once.
    claimed_pid           int,
    claimed_backend_start timestamptz,
    input_hash            text,
    started_at            timestamptz,
    completed_at          timestamptz,
    last_error            text,
    PRIMARY KEY (job_id, stage)
);
CREATE UNIQUE INDEX job_stages_position_idx ON pageperfect.job_stages (job_id, position);
CREATE INDEX job_stages_processing_idx ON pageperfect.job_stages (stage, host) WHERE status = 'processing';
-- Claims find a stage by the message that stands for it.
CREATE INDEX job_stages_msg_idx ON pageperfect.job_stages (msg_id) WHERE msg_id IS NOT NULL;
-- Each stage's claimable work in claim order (claim_candidates), and the retries that wait.
CREATE INDEX job_stages_ready_idx ON pageperfect.job_stages (stage, priority DESC, msg_id) WHERE status IN ('queued', 'failed');
-- The same per host, for the stages with a per_host_limit.
CREATE INDEX job_stages_host_ready_idx ON pageperfect.job_stages (stage, host, priority DESC, msg_id) WHERE status IN ('queued', 'failed');
CREATE INDEX job_stages_retry_idx ON pageperfect.job_stages (msg_id) WHERE status = 'failed';

-- Politeness per host, for the stages with a per_host_limit (crawling): when the host's next
-- attempt may start. A claim sets it to now plus the host's delay (host_delay: the
-- crawl_min_delay_ms parameter, or the site's robots.txt Crawl-delay if longer, capped by
-- crawl_delay_max_seconds); a crawl that read the site's Crawl-delay pushes it out from its end.
CREATE TABLE pageperfect.host_politeness (
    host                text PRIMARY KEY,
    -- The site's robots.txt Crawl-delay for our user agent, as the last crawl read it.
    crawl_delay_seconds float8 CHECK (crawl_delay_seconds >= 0),
    next_start_at       timestamptz NOT NULL
);
CREATE INDEX host_politeness_next_start_idx ON pageperfect.host_politeness (next_start_at);

CREATE TABLE pageperfect.payloads (
    job_id     uuid NOT NULL REFERENCES pageperfect.jobs (id) ON DELETE CASCADE,
    stage      text NOT NULL REFERENCES pageperfect.stage_config (stage),
    data       jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, stage)
);

CREATE TABLE pageperfect.job_events (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id     uuid NOT NULL REFERENCES pageperfect.jobs (id) ON DELETE CASCADE,
    stage      text,
    event      text NOT NULL,
    message    text,
    data       jsonb,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX job_events_job_idx ON pageperfect.job_events (job_id, id);
CREATE INDEX job_events_created_idx ON pageperfect.job_events (created_at);

-- The older design's name for the same rows.
CREATE VIEW pageperfect.processing_events WITH (security_invoker = true) AS
    SELECT * FROM pageperfect.job_events;

CREATE TABLE pageperfect.dead_letters (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue         text,
    msg_id        bigint,
    job_id        uuid REFERENCES pageperfect.jobs (id) ON DELETE CASCADE,
    stage         text,
    message       jsonb,
    reason        text NOT NULL,
    error         text,
    attempt_count int NOT NULL DEFAULT 0,
    routed_at     timestamptz NOT NULL DEFAULT now(),
    retried_at    timestamptz
);
CREATE INDEX dead_letters_open_idx ON pageperfect.dead_letters (routed_at) WHERE retried_at IS NULL;

CREATE VIEW pageperfect.v_job_status WITH (security_invoker = true) AS
    SELECT j.id AS job_id, j.url, j.status, j.stage, j.attempt_count,
           -- The error behind a retry or a dead letter; a completed job has none left.
           (SELECT s.last_error FROM pageperfect.job_stages s
             WHERE s.job_id = j.id AND s.last_error IS NOT NULL AND j.status <> 'completed'
             ORDER BY s.started_at DESC NULLS LAST LIMIT 1) AS last_error,
           j.created_at, j.updated_at
      FROM pageperfect.jobs j;

-- pageperfect_user runs workflows and sees only its own jobs and what hangs off them.
ALTER TABLE pageperfect.jobs ENABLE ROW LEVEL SECURITY;
CREATE POLICY jobs_owner ON pageperfect.jobs USING (owner = CURRENT_USER);
SELECT pageperfect.scope_rows_to_parent(ARRAY['job_stages', 'payloads', 'job_events', 'dead_letters'], 'jobs', 'job_id');
GRANT SELECT ON pageperfect.jobs, pageperfect.v_job_status, pageperfect.processing_events,
                pageperfect.stage_config TO pageperfect_user;

-- engine: the pipeline job engine's state transitions, on the tables of queue.sql.
--
-- A job runs its stages in position order. The stage that is up has a message in the
-- `pageperfect_pipeline` queue; a pipeline worker claims it (`claim_stages`), runs it with no
-- transaction open, and then, in one transaction, stores its results and either completes it
-- (`complete_stage`: payload, stage completed, next stage queued, message deleted, events) or
-- records the failure (`fail_stage`: retry with backoff, or dead letter). Each step is one
-- transaction, so a crash between two of them leaves the state of the last one; a claim
-- records its backend (pid and start time), so work of a dead backend goes back to the queue
-- (`requeue_orphaned_stages`), and completion checks the claim, so nothing completes twice.
--
-- These functions are internal: only superusers (the workers) run them. Users call
-- enqueue_job / run_workflow and retry_dead_letter (src/queue/api.rs), and the read-only
-- reports at the end of this file (finalize.sql grants what roles may call).

CREATE FUNCTION pageperfect.log_job_event(p_job uuid, p_stage text, p_event text, p_message text, p_data jsonb DEFAULT NULL)
RETURNS void
LANGUAGE sql AS $$
    INSERT INTO pageperfect.job_events (job_id, stage, event, message, data)
    VALUES (p_job, p_stage, p_event, p_message, p_data)
$$;

-- Queues the job's first pending stage, or completes the job when none is left.
CREATE FUNCTION pageperfect.queue_next_stage(p_job uuid)
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    next_stage text;
    job_priority int;
    msg bigint;
BEGIN
    SELECT s.stage INTO next_stage
      FROM pageperfect.job_stages s
     WHERE s.job_id = p_job AND s.status = 'pending'
     ORDER BY s.position LIMIT 1;
    IF next_stage IS NULL THEN
        UPDATE pageperfect.jobs j
           SET status = 'completed', stage = NULL, attempt_count = 0,
               last_completed_at = pg_catalog.clock_timestamp(), updated_at = pg_catalog.clock_timestamp(),
               result = (SELECT p.data FROM pageperfect.payloads p JOIN pageperfect.job_stages s USING (job_id, stage)
                          WHERE p.job_id = p_job ORDER BY s.position DESC LIMIT 1)
         WHERE j.id = p_job;
        PERFORM pageperfect.log_job_event(p_job, NULL, 'job_completed', 'every stage is done');
        RETURN 'job_completed';
    END IF;
    SELECT j.priority INTO job_priority FROM pageperfect.jobs j WHERE j.id = p_job;
    msg := pageperfect.push_messages('pageperfect_pipeline',
               ARRAY[pg_catalog.jsonb_build_object('job_id', p_job, 'stage', next_stage)], 0, job_priority);
    UPDATE pageperfect.job_stages s SET status = 'queued', msg_id = msg, next_attempt_at = pg_catalog.clock_timestamp()
     WHERE s.job_id = p_job AND s.stage = next_stage;
    UPDATE pageperfect.jobs j
       SET status = 'queued', stage = next_stage, attempt_count = 0, updated_at = pg_catalog.clock_timestamp()
     WHERE j.id = p_job;
    RETURN 'queued';
END
$$;

-- Refuses anything but an absolute http:// or https:// URL; p_use ends the message ("crawled",
-- "requested"). Jobs and durable HTTP requests both check their URL with it.
CREATE FUNCTION pageperfect.check_http_url(p_url text, p_use text) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF p_url IS NULL OR p_url !~* '^https?://[^/?#\s]+' THEN
        RAISE EXCEPTION 'invalid URL "%": only absolute http:// and https:// URLs can be %', p_url, p_use
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;

-- Creates a job owned by p_owner that runs p_stages (NULL: the default pipeline) in order,
-- minus p_skip_steps, and queues its first stage.
-- The owner's job with uniqueness key p_key that is queued or running, or was created within
-- p_window (NULL: only while queued or running), if any. It first takes a transaction lock on
-- the key, so that two sessions enqueuing the same key at once create one job between them.
CREATE FUNCTION pageperfect.unique_job(p_owner name, p_key text, p_window interval)
RETURNS uuid
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_catalog.pg_advisory_xact_lock(1885957735, pg_catalog.hashtext(p_owner || '/' || p_key));
    RETURN (SELECT j.id FROM pageperfect.jobs j
             WHERE j.owner = p_owner AND j.unique_key = p_key
               AND (j.status IN ('queued', 'processing') OR j.created_at > pg_catalog.now() - p_window)
             ORDER BY j.created_at DESC LIMIT 1);
END
$$;

CREATE FUNCTION pageperfect.create_job(p_owner name, p_url text, p_stages text[], p_options jsonb,
                                       p_priority int, p_skip_steps text[], p_force_update boolean,
                                       p_unique_key text DEFAULT NULL)
RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE
    job uuid;
    stages text[] := coalesce(p_stages,
        ARRAY(SELECT c.stage FROM pageperfect.stage_config c WHERE c.position IS NOT NULL ORDER BY c.position));
    unknown text;
BEGIN
    PERFORM pageperfect.check_http_url(p_url, 'crawled');
    SELECT s INTO unknown FROM pg_catalog.unnest(stages || coalesce(p_skip_steps, '{}')) s
     WHERE NOT EXISTS (SELECT FROM pageperfect.stage_config c WHERE c.stage = s) LIMIT 1;
    IF pg_catalog.cardinality(stages) = 0 THEN
        RAISE EXCEPTION 'a job needs at least one stage' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF unknown IS NOT NULL THEN
        RAISE EXCEPTION 'unknown stage "%"', unknown
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'The stages are: ' || (SELECT pg_catalog.string_agg(c.stage, ', ' ORDER BY c.position NULLS LAST, c.stage)
                                                  FROM pageperfect.stage_config c) || '.';
    END IF;
    IF (SELECT count(DISTINCT s) FROM pg_catalog.unnest(stages) s) <> pg_catalog.cardinality(stages) THEN
        RAISE EXCEPTION 'a job runs each stage once: %', stages USING ERRCODE = 'invalid_parameter_value';
    END IF;

    INSERT INTO pageperfect.jobs (url, owner, priority, skip_steps, force_update, options, unique_key)
    VALUES (p_url, p_owner, coalesce(p_priority, 0), coalesce(p_skip_steps, '{}'), coalesce(p_force_update, false),
            coalesce(p_options, '{}'), p_unique_key)
    RETURNING id INTO job;
    INSERT INTO pageperfect.job_stages (job_id, stage, position, priority, host, status, max_attempts, retry_delay_seconds)
    SELECT job, u.stage, u.position, coalesce(p_priority, 0), coalesce(pageperfect.url_host(p_url), ''),
           CASE WHEN u.stage = ANY (coalesce(p_skip_steps, '{}')) THEN 'skipped' ELSE 'pending' END,
           c.max_attempts, c.retry_delay_seconds
      FROM pg_catalog.unnest(stages) WITH ORDINALITY AS u (stage, position)
      JOIN pageperfect.stage_config c ON c.stage = u.stage;
    PERFORM pageperfect.log_job_event(job, NULL, 'created', 'job created for ' || p_url,
                                      pg_catalog.jsonb_build_object('stages', stages, 'skip_steps', p_skip_steps));
    PERFORM pageperfect.log_job_event(job, s.stage, 'skipped', 'skipped on request')
       FROM pageperfect.job_stages s WHERE s.job_id = job AND s.status = 'skipped';
    PERFORM pageperfect.queue_next_stage(job);
    RETURN job;
END
$$;

-- The hosts that have queued or retrying work of p_stage, in host order, at most p_max of them:
-- one index probe per host (a skip scan), however many messages each has waiting.
CREATE FUNCTION pageperfect.hosts_with_work(p_stage text, p_max int)
RETURNS SETOF text
LANGUAGE sql STABLE AS $$
    WITH RECURSIVE hosts (host, n) AS (
        (SELECT s.host, 1 FROM pageperfect.job_stages s
          WHERE s.stage = p_stage AND s.status IN ('queued', 'failed') ORDER BY s.host LIMIT 1)
        UNION ALL
        SELECT (SELECT s.host FROM pageperfect.job_stages s
                 WHERE s.stage = p_stage AND s.status IN ('queued', 'failed') AND s.host > h.host
                 ORDER BY s.host LIMIT 1),
               h.n + 1
          FROM hosts h WHERE h.host IS NOT NULL AND h.n < p_max
    )
    SELECT h.host FROM hosts h WHERE h.host IS NOT NULL
$$;

-- How long a host's next attempt waits after one starts: the crawl_min_delay_ms parameter, or
-- p_crawl_delay (the site's robots.txt Crawl-delay) when longer, at most crawl_delay_max_seconds.
CREATE FUNCTION pageperfect.host_delay(p_crawl_delay float8)
RETURNS interval
LANGUAGE sql STABLE AS $$
    SELECT pg_catalog.make_interval(secs => least(
               greatest(coalesce(p_crawl_delay, 0),
                        coalesce((SELECT (p.value #>> '{}')::float8 FROM pageperfect.parameters p
                                   WHERE p.name = 'crawl_min_delay_ms'), 0) / 1000),
               coalesce((SELECT (p.value #>> '{}')::float8 FROM pageperfect.parameters p
                          WHERE p.name = 'crawl_delay_max_seconds'), 30)))
$$;

-- Records the Crawl-delay a crawl of p_host read from its site's robots.txt (NULL: none), and
-- holds the host's next attempt until that long after now, when the crawl ends.
CREATE FUNCTION pageperfect.note_crawl_delay(p_host text, p_crawl_delay float8)
RETURNS void
LANGUAGE sql AS $$
    INSERT INTO pageperfect.host_politeness AS hp (host, crawl_delay_seconds, next_start_at)
    VALUES (p_host, p_crawl_delay, pg_catalog.clock_timestamp() + pageperfect.host_delay(p_crawl_delay))
    ON CONFLICT (host) DO UPDATE
       SET crawl_delay_seconds = excluded.crawl_delay_seconds,
           next_start_at = greatest(hp.next_start_at, excluded.next_start_at)
$$;

-- Visible pipeline messages whose stage can be claimed, with the load their stage and owner have
-- now; the worker picks among them under the limits (src/queue/claim.rs). Each stage offers its
-- own: of its first p_lookahead ready messages, as many as it has free slots, passing over owners
-- at their limit. So a stage at its limit with a long backlog does not hide the work of the
-- stages after it, and a claim reads a bounded number of rows however long the backlog. Work
-- furthest along its job comes first (after priority), so jobs finish in the order they came
-- instead of every job waiting until the first stage of all of them has run. System stages
-- (alerts, Search Console ingestion: not user_runnable) come before any backlog and are not held
-- by their owner's job limit.
--
-- A stage with a per_host_limit offers its work host by host instead: of each host (at most
-- 16 x p_lookahead of them) below the limit and past its delay, its first ready messages up to
-- the free slots of that host. So a thousand pages of one site wait behind each other, not in
-- front of another site's, and a slow host holds only its own slots.
CREATE FUNCTION pageperfect.claim_candidates(p_lookahead int)
RETURNS TABLE (msg_id bigint, job_id uuid, stage text, owner name,
               stage_busy bigint, stage_limit int, owner_busy bigint, owner_limit int)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    -- PL/pgSQL rather than SQL: the plan is made once per worker, not at every claim.
    RETURN QUERY
    WITH stage_load AS (
        SELECT s.stage, count(*) AS busy FROM pageperfect.job_stages s WHERE s.status = 'processing' GROUP BY s.stage
    ), host_load AS (
        SELECT s.stage, s.host, count(*) AS busy FROM pageperfect.job_stages s
         WHERE s.status = 'processing' GROUP BY s.stage, s.host
    ), owner_load AS (
        SELECT j.owner, count(*) AS busy FROM pageperfect.jobs j WHERE j.status = 'processing' GROUP BY j.owner
    ), per_owner AS (
        SELECT coalesce((SELECT (p.value #>> '{}')::int FROM pageperfect.parameters p
                          WHERE p.name = 'max_jobs_per_owner'), 2) AS max_jobs
    )
    SELECT ready.msg_id, ready.job_id, c.stage, ready.owner,
           coalesce(sl.busy, 0), c.concurrency, ready.owner_busy,
           -- System work (alerts, Search Console ingestion) is not held by its owner's limit:
           -- the superuser that owns it also owns every workflow cron starts.
           CASE WHEN c.user_runnable THEN per_owner.max_jobs ELSE 2147483647 END
      FROM (SELECT * FROM pageperfect.stage_config sc WHERE NOT sc.paused) c
      LEFT JOIN stage_load sl ON sl.stage = c.stage
     CROSS JOIN per_owner
     CROSS JOIN LATERAL (
        SELECT first.*
          FROM ((SELECT m.msg_id, s.priority, s.job_id, s.position, j.owner, coalesce(ol.busy, 0) AS owner_busy
                   FROM pageperfect.job_stages s
                   JOIN pageperfect.queue_messages m ON m.msg_id = s.msg_id
                   JOIN pageperfect.jobs j ON j.id = s.job_id
                   LEFT JOIN owner_load ol ON ol.owner = j.owner
                  WHERE c.per_host_limit IS NULL
                    AND s.stage = c.stage AND s.status IN ('queued', 'failed') AND m.vt <= pg_catalog.clock_timestamp()
                    AND coalesce(sl.busy, 0) < c.concurrency
                    AND (coalesce(ol.busy, 0) < per_owner.max_jobs OR NOT c.user_runnable)
                  ORDER BY s.priority DESC, s.msg_id
                  LIMIT p_lookahead)
                UNION ALL
                (SELECT per_host.*
                   FROM pageperfect.hosts_with_work(c.stage, 16 * p_lookahead) AS h (host)
                   LEFT JOIN host_load hl ON hl.stage = c.stage AND hl.host = h.host
                   LEFT JOIN pageperfect.host_politeness hp ON hp.host = h.host
                  CROSS JOIN LATERAL (
                     SELECT m.msg_id, s.priority, s.job_id, s.position, j.owner, coalesce(ol.busy, 0) AS owner_busy
                       FROM pageperfect.job_stages s
                       JOIN pageperfect.queue_messages m ON m.msg_id = s.msg_id
                       JOIN pageperfect.jobs j ON j.id = s.job_id
                       LEFT JOIN owner_load ol ON ol.owner = j.owner
                      WHERE s.stage = c.stage AND s.host = h.host AND s.status IN ('queued', 'failed')
                        AND m.vt <= pg_catalog.clock_timestamp()
                        AND coalesce(ol.busy, 0) < per_owner.max_jobs
                      ORDER BY s.priority DESC, s.msg_id
                      LIMIT c.per_host_limit - coalesce(hl.busy, 0)
                  ) per_host
                  WHERE c.per_host_limit IS NOT NULL AND coalesce(sl.busy, 0) < c.concurrency
                    AND coalesce(hl.busy, 0) < c.per_host_limit
                    AND (hp.next_start_at IS NULL OR hp.next_start_at <= pg_catalog.clock_timestamp()))
               ) first
         ORDER BY first.priority DESC, first.msg_id
         LIMIT greatest(c.concurrency - coalesce(sl.busy, 0), 0)
     ) ready
     -- System work first, then by priority, furthest along its job, oldest.
     ORDER BY c.user_runnable, ready.priority DESC, ready.position DESC, ready.msg_id
     LIMIT p_lookahead;
END
$$;

-- Claims the stages behind these messages for the calling backend and starts their attempt.
CREATE FUNCTION pageperfect.claim_stages(p_msg_ids bigint[])
RETURNS TABLE (job_id uuid, stage text, attempt int, url text, page_id bigint, owner name,
               options jsonb, force_update boolean, timeout_seconds int)
LANGUAGE plpgsql AS $$
DECLARE
    my_start timestamptz := (SELECT a.backend_start FROM pg_catalog.pg_stat_activity a
                              WHERE a.pid = pg_catalog.pg_backend_pid());
BEGIN
    RETURN QUERY
    WITH claimed AS (
        UPDATE pageperfect.job_stages s
           SET status = 'processing', attempt_count = s.attempt_count + 1,
               claimed_pid = pg_catalog.pg_backend_pid(), claimed_backend_start = my_start,
               started_at = pg_catalog.clock_timestamp(), next_attempt_at = NULL
          FROM pageperfect.stage_config c
         WHERE s.msg_id = ANY (p_msg_ids) AND s.status IN ('queued', 'failed') AND c.stage = s.stage
           -- Never before its message is visible (a retry's backoff, a delay).
           AND EXISTS (SELECT FROM pageperfect.queue_messages m
                        WHERE m.msg_id = s.msg_id AND m.vt <= pg_catalog.clock_timestamp())
        RETURNING s.job_id, s.stage, s.attempt_count, s.msg_id, c.timeout_seconds, s.host, c.per_host_limit
    ), politeness AS (
        -- The next attempt on the same host waits the host's delay from now.
        INSERT INTO pageperfect.host_politeness AS hp (host, next_start_at)
        SELECT DISTINCT ON (claimed.host) claimed.host, pg_catalog.clock_timestamp() + pageperfect.host_delay(NULL)
          FROM claimed WHERE claimed.per_host_limit IS NOT NULL
        ON CONFLICT (host) DO UPDATE
           SET next_start_at = pg_catalog.clock_timestamp() + pageperfect.host_delay(hp.crawl_delay_seconds)
    ), message AS (
        -- Visibility is the second line of defence: past the stage's time limit (plus a margin
        -- for the worker to report) the sweeper may take the work back.
        UPDATE pageperfect.queue_messages m
           SET vt = pg_catalog.clock_timestamp() + pg_catalog.make_interval(secs => claimed.timeout_seconds + 60),
               read_ct = m.read_ct + 1
          FROM claimed WHERE m.msg_id = claimed.msg_id
    ), job AS (
        UPDATE pageperfect.jobs j
           SET status = 'processing', stage = claimed.stage, attempt_count = claimed.attempt_count,
               updated_at = pg_catalog.clock_timestamp()
          FROM claimed WHERE j.id = claimed.job_id
        RETURNING j.id, j.url, j.page_id, j.owner, j.options, j.force_update
    ), events AS (
        INSERT INTO pageperfect.job_events (job_id, stage, event, message, data)
        SELECT claimed.job_id, claimed.stage, 'started', 'attempt ' || claimed.attempt_count,
               pg_catalog.jsonb_build_object('attempt', claimed.attempt_count, 'pid', pg_catalog.pg_backend_pid())
          FROM claimed
    )
    SELECT claimed.job_id, claimed.stage, claimed.attempt_count, job.url, job.page_id, job.owner,
           job.options, job.force_update, claimed.timeout_seconds
      FROM claimed JOIN job ON job.id = claimed.job_id;
END
$$;

-- The stage row of an attempt that p_pid still holds, locked; NULL when the claim is gone
-- (the sweeper took the work back, or the job was deleted): then the caller's result is stale.
CREATE FUNCTION pageperfect.held_attempt(p_job uuid, p_stage text, p_attempt int)
RETURNS pageperfect.job_stages
LANGUAGE sql AS $$
    SELECT s.* FROM pageperfect.job_stages s
     WHERE s.job_id = p_job AND s.stage = p_stage AND s.status = 'processing'
       AND s.attempt_count = p_attempt AND s.claimed_pid = pg_catalog.pg_backend_pid()
       FOR UPDATE
$$;

-- Locks the rows that recording a held attempt writes (its stage, its message, its job) in the
-- order complete_stage and fail_stage take them. A worker calls it before it writes anything:
-- when another session holds one of them past the worker's lock_timeout, the worker keeps the
-- attempt's output and tries again later instead of losing it.
CREATE FUNCTION pageperfect.lock_held_attempt(p_job uuid, p_stage text, p_attempt int)
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    held pageperfect.job_stages := pageperfect.held_attempt(p_job, p_stage, p_attempt);
BEGIN
    IF held.job_id IS NULL THEN
        -- Taken back (swept, or the job cancelled): the attempt writes nothing.
        RETURN false;
    END IF;
    PERFORM FROM pageperfect.queue_messages m WHERE m.msg_id = held.msg_id FOR UPDATE;
    PERFORM FROM pageperfect.jobs j WHERE j.id = p_job FOR UPDATE;
    RETURN true;
END
$$;

CREATE FUNCTION pageperfect.set_stage_paused(p_stage text, p_paused boolean)
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    changed int;
BEGIN
    IF NOT EXISTS (SELECT FROM pageperfect.stage_config c WHERE c.stage = p_stage) THEN
        RAISE EXCEPTION 'stage "%" does not exist', p_stage USING ERRCODE = 'undefined_object';
    END IF;
    UPDATE pageperfect.stage_config c SET paused = p_paused WHERE c.stage = p_stage AND c.paused <> p_paused;
    GET DIAGNOSTICS changed = ROW_COUNT;
    RETURN changed > 0;
END
$$;

-- Completes an attempt: 'completed' or 'job_completed', or 'stale' (nothing changed) when this
-- backend no longer holds it.
CREATE FUNCTION pageperfect.complete_stage(p_job uuid, p_stage text, p_attempt int, p_payload jsonb,
                                           p_input_hash text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    held pageperfect.job_stages := pageperfect.held_attempt(p_job, p_stage, p_attempt);
BEGIN
    IF held.job_id IS NULL THEN
        RETURN 'stale';
    END IF;
    UPDATE pageperfect.job_stages s
       SET status = 'completed', completed_at = pg_catalog.clock_timestamp(), claimed_pid = NULL,
           claimed_backend_start = NULL, msg_id = NULL, input_hash = p_input_hash
     WHERE s.job_id = p_job AND s.stage = p_stage;
    INSERT INTO pageperfect.payloads AS p (job_id, stage, data) VALUES (p_job, p_stage, coalesce(p_payload, '{}'))
        ON CONFLICT (job_id, stage) DO UPDATE SET data = excluded.data, created_at = excluded.created_at;
    DELETE FROM pageperfect.queue_messages m WHERE m.msg_id = held.msg_id;
    IF (p_payload ->> 'reused_from') IS NOT NULL AND p_input_hash IS NOT NULL THEN
        PERFORM pageperfect.log_job_event(p_job, p_stage, 'reused',
            'inputs unchanged since job ' || (p_payload ->> 'reused_from') || ': its result is kept');
    END IF;
    PERFORM pageperfect.log_job_event(p_job, p_stage, 'completed', 'attempt ' || p_attempt || ' succeeded',
        pg_catalog.jsonb_build_object('attempt', p_attempt,
            'duration_ms', round(extract(epoch FROM pg_catalog.clock_timestamp() - held.started_at) * 1000)));
    IF pageperfect.queue_next_stage(p_job) = 'job_completed' THEN
        RETURN 'job_completed';
    END IF;
    RETURN 'completed';
END
$$;

-- Moves a failed stage to the dead letters and the job to `dead`.
CREATE FUNCTION pageperfect.dead_letter_stage(p_stage pageperfect.job_stages, p_reason text, p_error text)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO pageperfect.dead_letters (queue, msg_id, job_id, stage, message, reason, error, attempt_count)
    SELECT 'pageperfect_pipeline', p_stage.msg_id, p_stage.job_id, p_stage.stage,
           coalesce(m.message, pg_catalog.jsonb_build_object('job_id', p_stage.job_id, 'stage', p_stage.stage)),
           p_reason, p_error, p_stage.attempt_count
      FROM (SELECT) AS one LEFT JOIN pageperfect.queue_messages m ON m.msg_id = p_stage.msg_id;
    DELETE FROM pageperfect.queue_messages m WHERE m.msg_id = p_stage.msg_id;
    UPDATE pageperfect.job_stages s
       SET status = 'dead', last_error = p_error, claimed_pid = NULL, claimed_backend_start = NULL,
           msg_id = NULL, next_attempt_at = NULL
     WHERE s.job_id = p_stage.job_id AND s.stage = p_stage.stage;
    UPDATE pageperfect.jobs j SET status = 'dead', updated_at = pg_catalog.clock_timestamp()
     WHERE j.id = p_stage.job_id;
    PERFORM pageperfect.log_job_event(p_stage.job_id, p_stage.stage, 'dead_lettered', p_reason,
        pg_catalog.jsonb_build_object('attempt', p_stage.attempt_count, 'error', p_error));
END
$$;

-- A failed attempt of a stage in `processing`: retried after retry_delay_seconds() unless the
-- error is permanent or it was the last attempt, then dead-lettered. Returns 'retry' or 'dead'.
CREATE FUNCTION pageperfect.record_failure(p_stage pageperfect.job_stages, p_error text, p_permanent boolean,
                                           p_retry_after_seconds float8)
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    delay float8;
    data jsonb := pg_catalog.jsonb_build_object('attempt', p_stage.attempt_count, 'error', p_error,
        'duration_ms', round(extract(epoch FROM pg_catalog.clock_timestamp() - p_stage.started_at) * 1000));
BEGIN
    PERFORM pageperfect.log_job_event(p_stage.job_id, p_stage.stage, 'failed', p_error, data);
    IF p_permanent THEN
        PERFORM pageperfect.dead_letter_stage(p_stage, 'permanent error', p_error);
        RETURN 'dead';
    END IF;
    IF p_stage.attempt_count >= p_stage.max_attempts THEN
        PERFORM pageperfect.dead_letter_stage(p_stage, 'failed ' || p_stage.attempt_count || ' of '
                                              || p_stage.max_attempts || ' attempts', p_error);
        RETURN 'dead';
    END IF;
    delay := pageperfect.retry_delay_seconds(p_stage.retry_delay_seconds, p_stage.attempt_count, p_retry_after_seconds);
    UPDATE pageperfect.job_stages s
       SET status = 'failed', last_error = p_error, claimed_pid = NULL, claimed_backend_start = NULL,
           next_attempt_at = pg_catalog.clock_timestamp() + pg_catalog.make_interval(secs => delay)
     WHERE s.job_id = p_stage.job_id AND s.stage = p_stage.stage;
    UPDATE pageperfect.queue_messages m
       SET vt = pg_catalog.clock_timestamp() + pg_catalog.make_interval(secs => delay)
     WHERE m.msg_id = p_stage.msg_id;
    UPDATE pageperfect.jobs j SET status = 'failed', updated_at = pg_catalog.clock_timestamp()
     WHERE j.id = p_stage.job_id;
    PERFORM pageperfect.log_job_event(p_stage.job_id, p_stage.stage, 'retry_scheduled',
        pg_catalog.format('attempt %s in %s s', p_stage.attempt_count + 1, round(delay::numeric, 3)),
        data || pg_catalog.jsonb_build_object('delay_seconds', delay, 'retry_after_seconds', p_retry_after_seconds));
    RETURN 'retry';
END
$$;

-- Records a failed attempt this backend holds: 'retry', 'dead', or 'stale' (nothing changed).
CREATE FUNCTION pageperfect.fail_stage(p_job uuid, p_stage text, p_attempt int, p_error text,
                                       p_permanent boolean, p_retry_after_seconds float8)
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    held pageperfect.job_stages := pageperfect.held_attempt(p_job, p_stage, p_attempt);
BEGIN
    IF held.job_id IS NULL THEN
        RETURN 'stale';
    END IF;
    RETURN pageperfect.record_failure(held, p_error, p_permanent, p_retry_after_seconds);
END
$$;

-- Stages in `processing` whose backend is gone (its pid has exited, or belongs to a newer
-- backend) go back to the queue at once. The cut-short attempt does not count against
-- max_attempts; a stage whose worker died 10 times goes to the dead letters instead.
CREATE FUNCTION pageperfect.requeue_orphaned_stages()
RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    orphan pageperfect.job_stages;
    requeued int := 0;
BEGIN
    FOR orphan IN
        SELECT s.* FROM pageperfect.job_stages s
         WHERE s.status = 'processing'
           AND NOT EXISTS (SELECT FROM pg_catalog.pg_stat_activity a
                            WHERE a.pid = s.claimed_pid AND a.backend_start = s.claimed_backend_start)
           FOR UPDATE SKIP LOCKED
    LOOP
        requeued := requeued + 1;
        IF orphan.orphaned_count + 1 >= 10 THEN
            PERFORM pageperfect.dead_letter_stage(orphan, 'its worker died 10 times while running it',
                                                  'worker (pid ' || orphan.claimed_pid || ') is gone');
            CONTINUE;
        END IF;
        UPDATE pageperfect.job_stages s
           SET status = 'queued', attempt_count = s.attempt_count - 1, orphaned_count = s.orphaned_count + 1,
               claimed_pid = NULL, claimed_backend_start = NULL, next_attempt_at = pg_catalog.clock_timestamp()
         WHERE s.job_id = orphan.job_id AND s.stage = orphan.stage;
        UPDATE pageperfect.queue_messages m SET vt = pg_catalog.clock_timestamp() WHERE m.msg_id = orphan.msg_id;
        UPDATE pageperfect.jobs j SET status = 'queued', attempt_count = orphan.attempt_count - 1,
                                      updated_at = pg_catalog.clock_timestamp()
         WHERE j.id = orphan.job_id;
        PERFORM pageperfect.log_job_event(orphan.job_id, orphan.stage, 'requeued',
            'its worker (pid ' || orphan.claimed_pid || ') is gone; attempt ' || orphan.attempt_count || ' runs again',
            pg_catalog.jsonb_build_object('attempt', orphan.attempt_count, 'pid', orphan.claimed_pid));
    END LOOP;
    RETURN requeued;
END
$$;

-- Stages processing for longer than p_older_than although their backend lives (a hung worker):
-- each counts as a failed attempt, retried or dead-lettered as any failure. The worker's late
-- result is then stale and discarded.
CREATE FUNCTION pageperfect.fail_overdue_stages(p_older_than interval DEFAULT NULL)
RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    overdue record;
    failed int := 0;
BEGIN
    FOR overdue IN
        SELECT s AS stage_row, coalesce(p_older_than, pg_catalog.make_interval(secs => c.timeout_seconds + 60)) AS limit_
          FROM pageperfect.job_stages s JOIN pageperfect.stage_config c ON c.stage = s.stage
         WHERE s.status = 'processing'
           AND s.started_at < pg_catalog.clock_timestamp()
                              - coalesce(p_older_than, pg_catalog.make_interval(secs => c.timeout_seconds + 60))
           FOR UPDATE OF s SKIP LOCKED
    LOOP
        failed := failed + 1;
        PERFORM pageperfect.record_failure(overdue.stage_row,
            'stuck in processing for more than ' || overdue.limit_ || ' (worker pid ' || (overdue.stage_row).claimed_pid || ')',
            false, NULL);
    END LOOP;
    RETURN failed;
END
$$;

-- The sweeper's core: orphaned work back to the queue at once, overdue work failed. Serialised
-- with claims, so a stage is never requeued while a worker claims it.
CREATE FUNCTION pageperfect.sweep_stages(p_older_than interval DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pageperfect.lock_claims();
    RETURN pg_catalog.jsonb_build_object('requeued_orphans', pageperfect.requeue_orphaned_stages(),
                                         'failed_overdue', pageperfect.fail_overdue_stages(p_older_than));
END
$$;

-- Claims, sweeps and requeues take this lock, so the concurrency limits hold across workers.
CREATE FUNCTION pageperfect.lock_claims()
RETURNS void
LANGUAGE sql AS $$
    SELECT pg_catalog.pg_advisory_xact_lock(1885957734, 1)
$$;

-- Returns work stuck in processing to the queue: at once when its worker is gone, and after
-- p_timeout when its worker lives (counted as a failed attempt). Returns how many stages.
CREATE FUNCTION pageperfect.reset_stuck_jobs(timeout interval DEFAULT '5 minutes')
RETURNS int
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    swept jsonb := pageperfect.sweep_stages(timeout);
BEGIN
    RETURN (swept ->> 'requeued_orphans')::int + (swept ->> 'failed_overdue')::int;
END
$$;

-- Puts a dead letter back: a pipeline stage gets a fresh set of attempts; a plain message is
-- sent to its queue again. Returns the new message's id.
CREATE FUNCTION pageperfect.requeue_dead_letter(p_id bigint)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    letter pageperfect.dead_letters;
    msg bigint;
BEGIN
    SELECT * INTO letter FROM pageperfect.dead_letters d WHERE d.id = p_id FOR UPDATE;
    IF letter.id IS NULL THEN
        RAISE EXCEPTION 'dead letter % does not exist', p_id USING ERRCODE = 'no_data_found';
    END IF;
    IF letter.retried_at IS NOT NULL THEN
        RAISE EXCEPTION 'dead letter % was already retried at %', p_id, letter.retried_at
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF letter.job_id IS NULL THEN
        msg := pageperfect.push_messages(pageperfect.queue_must_allow(letter.queue, CURRENT_USER), ARRAY[letter.message], 0, 0);
    ELSE
        PERFORM pageperfect.lock_claims();
        IF NOT EXISTS (SELECT FROM pageperfect.job_stages s
                        WHERE s.job_id = letter.job_id AND s.stage = letter.stage AND s.status = 'dead') THEN
            RAISE EXCEPTION 'job % is not dead at stage "%"', letter.job_id, letter.stage
                USING ERRCODE = 'object_not_in_prerequisite_state';
        END IF;
        msg := pageperfect.push_messages('pageperfect_pipeline',
                   ARRAY[pg_catalog.jsonb_build_object('job_id', letter.job_id, 'stage', letter.stage)], 0,
                   (SELECT j.priority FROM pageperfect.jobs j WHERE j.id = letter.job_id));
        UPDATE pageperfect.job_stages s
           SET status = 'queued', attempt_count = 0, orphaned_count = 0, msg_id = msg,
               next_attempt_at = pg_catalog.clock_timestamp()
         WHERE s.job_id = letter.job_id AND s.stage = letter.stage;
        UPDATE pageperfect.jobs j SET status = 'queued', stage = letter.stage, attempt_count = 0,
                                      updated_at = pg_catalog.clock_timestamp()
         WHERE j.id = letter.job_id;
        PERFORM pageperfect.log_job_event(letter.job_id, letter.stage, 'retried',
                                          'dead letter ' || p_id || ' put back in the queue');
    END IF;
    UPDATE pageperfect.dead_letters d SET retried_at = pg_catalog.clock_timestamp() WHERE d.id = p_id;
    RETURN msg;
END
$$;

-- When the next retry becomes visible or a host's crawl delay ends (NULL: nothing waits), so that
-- a worker knows how long it may sleep. Only a failed stage's message waits hidden; visible work
-- that the limits held back is claimed when a slot frees, and every recorded attempt wakes the
-- workers.
CREATE FUNCTION pageperfect.next_pipeline_wakeup()
RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    SELECT least(
        (SELECT min(m.vt) FROM pageperfect.job_stages s JOIN pageperfect.queue_messages m ON m.msg_id = s.msg_id
          WHERE s.status = 'failed' AND m.vt > pg_catalog.clock_timestamp()),
        -- A host whose delay ends (it may have work waiting).
        (SELECT min(hp.next_start_at) FROM pageperfect.host_politeness hp
          WHERE hp.next_start_at > pg_catalog.clock_timestamp()))
$$;

-- Reports. They run as the caller: pageperfect_user sees its own jobs only.

-- Per stage: its limit and how much of its work is where.
CREATE FUNCTION pageperfect.processor_status()
RETURNS TABLE (stage text, concurrency int, queued bigint, processing bigint, waiting_retry bigint,
               dead bigint, completed_last_hour bigint, oldest_queued_at timestamptz)
LANGUAGE sql STABLE AS $$
    SELECT c.stage, c.concurrency,
           count(*) FILTER (WHERE s.status = 'queued'),
           count(*) FILTER (WHERE s.status = 'processing'),
           count(*) FILTER (WHERE s.status = 'failed'),
           count(*) FILTER (WHERE s.status = 'dead'),
           count(*) FILTER (WHERE s.status = 'completed' AND s.completed_at > pg_catalog.now() - interval '1 hour'),
           min(j.updated_at) FILTER (WHERE s.status = 'queued')
      FROM pageperfect.stage_config c
      LEFT JOIN pageperfect.job_stages s ON s.stage = c.stage
      LEFT JOIN pageperfect.jobs j ON j.id = s.job_id
     GROUP BY c.stage, c.concurrency, c.position
     ORDER BY c.position NULLS LAST, c.stage
$$;

-- Attempts that ended between from_ts and to_ts, per stage and in total ('*'): throughput per
-- minute, success rate, latency percentiles and the most frequent errors.
CREATE FUNCTION pageperfect.execution_insights(from_ts timestamptz DEFAULT now() - interval '1 day',
                                               to_ts timestamptz DEFAULT now())
RETURNS TABLE (stage text, attempts bigint, succeeded bigint, failed bigint, success_rate float8,
               throughput_per_minute float8, latency_p50_ms float8, latency_p95_ms float8, top_errors jsonb)
LANGUAGE sql STABLE AS $$
    WITH ended AS (
        SELECT coalesce(e.stage, '?') AS stage, e.event, (e.data ->> 'duration_ms')::float8 AS duration_ms,
               e.data ->> 'error' AS error
          FROM pageperfect.job_events e
         WHERE e.event IN ('completed', 'failed') AND e.created_at >= from_ts AND e.created_at < to_ts
    ), grouped AS (
        SELECT coalesce(ended.stage, '*') AS stage, GROUPING(ended.stage) AS total,
               count(*) AS attempts,
               count(*) FILTER (WHERE ended.event = 'completed') AS succeeded,
               count(*) FILTER (WHERE ended.event = 'failed') AS failed,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY ended.duration_ms) AS p50,
               percentile_cont(0.95) WITHIN GROUP (ORDER BY ended.duration_ms) AS p95
          FROM ended
         GROUP BY ROLLUP (ended.stage)
    )
    SELECT g.stage, g.attempts, g.succeeded, g.failed,
           g.succeeded::float8 / nullif(g.attempts, 0),
           g.succeeded / greatest(extract(epoch FROM to_ts - from_ts) / 60, 1e-9),
           g.p50, g.p95,
           coalesce((SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object('error', t.error, 'count', t.n) ORDER BY t.n DESC, t.error)
                       FROM (SELECT ended.error, count(*) AS n FROM ended
                              WHERE ended.error IS NOT NULL AND (g.total = 1 OR ended.stage = g.stage)
                              GROUP BY ended.error ORDER BY n DESC, ended.error LIMIT 5) t), '[]')
      FROM grouped g
     ORDER BY g.total, g.stage
$$;

-- Dead letters the caller can see (those of its own jobs; superusers: all, with plain queue
-- messages), newest first; retried ones only when asked.
CREATE FUNCTION pageperfect.list_dead_letters(include_retried boolean DEFAULT false, max_rows int DEFAULT 100)
RETURNS TABLE (id bigint, job_id uuid, url text, stage text, queue text, reason text, error text,
               attempt_count int, routed_at timestamptz, retried_at timestamptz)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF max_rows IS NULL OR max_rows < 1 OR max_rows > 1000 THEN
        RAISE EXCEPTION 'max_rows must be between 1 and 1000 (got %)', coalesce(max_rows::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY
        SELECT d.id, d.job_id, j.url, d.stage, d.queue, d.reason, d.error, d.attempt_count, d.routed_at, d.retried_at
          FROM pageperfect.dead_letters d
          LEFT JOIN pageperfect.jobs j ON j.id = d.job_id
         WHERE include_retried OR d.retried_at IS NULL
         ORDER BY d.id DESC
         LIMIT max_rows;
END
$$;

-- cancel_job(): a queued or running job stops. Its messages go, its unfinished stages end
-- 'cancelled' and the job with them; an attempt in progress finds at its end that it no longer
-- holds its stage (lock_held_attempt) and writes nothing. False when the job had ended.
CREATE FUNCTION pageperfect.cancel_job_stages(p_job uuid)
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    current_status text;
BEGIN
    PERFORM pageperfect.lock_claims();
    SELECT j.status INTO current_status FROM pageperfect.jobs j WHERE j.id = p_job FOR UPDATE;
    IF current_status IS NULL OR current_status NOT IN ('queued', 'processing') THEN
        RETURN false;
    END IF;
    DELETE FROM pageperfect.queue_messages m USING pageperfect.job_stages s
     WHERE s.job_id = p_job AND m.msg_id = s.msg_id;
    UPDATE pageperfect.job_stages s
       SET status = 'cancelled', claimed_pid = NULL, claimed_backend_start = NULL, msg_id = NULL
     WHERE s.job_id = p_job AND s.status IN ('pending', 'queued', 'processing', 'failed');
    UPDATE pageperfect.jobs j SET status = 'cancelled', updated_at = pg_catalog.clock_timestamp() WHERE j.id = p_job;
    PERFORM pageperfect.log_job_event(p_job, NULL, 'cancelled', 'cancelled by cancel_job()');
    RETURN true;
END
$$;

-- pause_stage() / resume_stage() (superusers): workers claim no work of a paused stage; its
-- queued work waits, and attempts in progress finish. True when the stage changed state.
CREATE FUNCTION pageperfect.pause_stage(p_stage text)
RETURNS boolean
LANGUAGE sql AS $$
    SELECT pageperfect.set_stage_paused(p_stage, true)
$$;
CREATE FUNCTION pageperfect.resume_stage(p_stage text)
RETURNS boolean
LANGUAGE sql AS $$
    SELECT pageperfect.set_stage_paused(p_stage, false)
$$;

-- Priority aging: every waiting queue message and ready pipeline stage that has waited longer
-- than priority_aging_seconds, and is below the highest priority waiting beside it (same queue,
-- same stage), gains 1. Pipeline worker 1 calls it every priority_aging_seconds, so what waits
-- rises by one step per interval until it competes in arrival order with the highest: low
-- priority still progresses under a steady stream of high. Returns how many rose.
CREATE FUNCTION pageperfect.age_priorities()
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    waited interval := pg_catalog.make_interval(secs => coalesce(
        (SELECT (p.value #>> '{}')::float8 FROM pageperfect.parameters p WHERE p.name = 'priority_aging_seconds'), 300));
    messages bigint;
    stages bigint;
BEGIN
    WITH top AS (
        SELECT m.queue_name, max(m.priority) AS priority FROM pageperfect.queue_messages m
         GROUP BY m.queue_name HAVING min(m.priority) < max(m.priority))
    UPDATE pageperfect.queue_messages m SET priority = m.priority + 1
      FROM top
     WHERE m.queue_name = top.queue_name AND m.priority < top.priority
       AND m.enqueued_at < pg_catalog.clock_timestamp() - waited;
    GET DIAGNOSTICS messages = ROW_COUNT;
    WITH top AS (
        SELECT s.stage, max(s.priority) AS priority FROM pageperfect.job_stages s
         WHERE s.status IN ('queued', 'failed') GROUP BY s.stage HAVING min(s.priority) < max(s.priority))
    UPDATE pageperfect.job_stages s SET priority = s.priority + 1
      FROM top, pageperfect.queue_messages m
     WHERE s.stage = top.stage AND s.status IN ('queued', 'failed') AND s.priority < top.priority
       AND m.msg_id = s.msg_id AND m.enqueued_at < pg_catalog.clock_timestamp() - waited;
    GET DIAGNOSTICS stages = ROW_COUNT;
    RETURN pg_catalog.jsonb_build_object('messages', messages, 'stages', stages,
                                         'interval_seconds', extract(epoch FROM waited));
END
$$;

-- pgmq: pgmq 1.13's schema for pgmq's own clients (the `pgmq` Rust crate, the Python client,
-- hand-written SQL), over pageperfect's queues. Every function here is a thin SQL wrapper over
-- pageperfect's queue API (src/queue/gate.rs), which checks that the caller may use the queue,
-- so the rules are the same whichever name a client calls. Built in a staging schema and renamed
-- to `pgmq` by finalize.sql only when no schema `pgmq` exists (pgmq itself is not installed).
--
-- Names, argument names, defaults and result types are pgmq 1.13.0's: clients call with named
-- arguments and read rows by column name (sqlx) or position (psycopg). What differs is listed in
-- docs/compat.md. The bodies never name the staging schema (it is renamed): shared steps are
-- pageperfect.pgmq_* functions.

-- A delay or visibility time as whole seconds from now (rounded up; past times are now).
CREATE FUNCTION pageperfect.pgmq_seconds_until(at timestamptz) RETURNS integer
LANGUAGE sql STABLE AS $$
    SELECT greatest(pg_catalog.ceil(extract(epoch FROM at - pg_catalog.clock_timestamp())), 0)::integer
$$;

-- pgmq's queue name check (its only rule: at most 47 characters).
CREATE FUNCTION pageperfect.pgmq_validate_queue_name(queue_name text) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF pg_catalog.length(queue_name) > 47 THEN
        RAISE EXCEPTION 'queue name is too long, maximum length is 47 characters';
    END IF;
END
$$;

-- pgmq's send_batch with its checks and messages.
CREATE FUNCTION pageperfect.pgmq_send_batch(queue_name text, msgs jsonb[], headers jsonb[], delay integer)
RETURNS SETOF bigint
LANGUAGE plpgsql AS $$
BEGIN
    IF msgs IS NULL OR pg_catalog.cardinality(msgs) = 0 THEN
        RAISE EXCEPTION 'msgs cannot be NULL or empty';
    END IF;
    RETURN QUERY SELECT pageperfect.send_batch(queue_name, msgs, greatest(delay, 0), 0, headers);
END
$$;

-- The queues the caller may use, as pgmq's meta table lists them; never pageperfect's own.
CREATE FUNCTION pageperfect.pgmq_queues()
RETURNS TABLE (queue_name varchar, is_partitioned boolean, is_unlogged boolean, created_at timestamptz)
LANGUAGE sql STABLE AS $$
    SELECT q.queue_name::varchar, false, false, q.created_at
      FROM pageperfect.queues q
     WHERE q.queue_name NOT LIKE 'pageperfect\_%'
     ORDER BY q.queue_name
$$;

CREATE SCHEMA pageperfect_pgmq_staging;

CREATE TYPE pageperfect_pgmq_staging.message_record AS (
    msg_id       bigint,
    read_ct      integer,
    enqueued_at  timestamptz,
    last_read_at timestamptz,
    vt           timestamptz,
    message      jsonb,
    headers      jsonb
);

CREATE TYPE pageperfect_pgmq_staging.queue_record AS (
    queue_name     varchar,
    is_partitioned boolean,
    is_unlogged    boolean,
    created_at     timestamptz
);

CREATE TYPE pageperfect_pgmq_staging.metrics_result AS (
    queue_name               text,
    queue_length             bigint,
    newest_msg_age_sec       integer,
    oldest_msg_age_sec       integer,
    total_messages           bigint,
    scrape_time              timestamptz,
    queue_visible_length     bigint,
    default_partition_length bigint
);

-- pgmq's catalogue of queues (the Rust client looks a queue up here before creating it): the
-- queues the caller may use, never pageperfect's own.
CREATE VIEW pageperfect_pgmq_staging.meta WITH (security_invoker = true) AS
    SELECT * FROM pageperfect.pgmq_queues();

-- Queue management. Every queue is logged and unpartitioned: create_unlogged makes a durable
-- queue, create_partitioned says it cannot.
CREATE FUNCTION pageperfect_pgmq_staging.validate_queue_name(queue_name text) RETURNS void
LANGUAGE sql IMMUTABLE AS $$ SELECT pageperfect.pgmq_validate_queue_name(queue_name) $$;

CREATE FUNCTION pageperfect_pgmq_staging."create"(queue_name text) RETURNS void
LANGUAGE sql AS $$
    SELECT pageperfect.pgmq_validate_queue_name(queue_name);
    SELECT pageperfect.create_queue(queue_name)
$$;

CREATE FUNCTION pageperfect_pgmq_staging.create_non_partitioned(queue_name text) RETURNS void
LANGUAGE sql AS $$
    SELECT pageperfect.pgmq_validate_queue_name(queue_name);
    SELECT pageperfect.create_queue(queue_name)
$$;

CREATE FUNCTION pageperfect_pgmq_staging.create_unlogged(queue_name text) RETURNS void
LANGUAGE sql AS $$
    SELECT pageperfect.pgmq_validate_queue_name(queue_name);
    SELECT pageperfect.create_queue(queue_name)
$$;

CREATE FUNCTION pageperfect_pgmq_staging.create_partitioned(queue_name text, partition_interval text DEFAULT '10000',
                                                            retention_interval text DEFAULT '100000', premake integer DEFAULT 4)
RETURNS void
LANGUAGE plpgsql AS $$
-- pgmq's signature, refused whatever its arguments:
-- @plpgsql_check_options: extra_warnings = off
BEGIN
    RAISE EXCEPTION 'partitioned queues are not supported by pageperfect''s pgmq'
        USING ERRCODE = 'feature_not_supported',
              HINT = 'Use pgmq.create(); its retention settings keep the archive bounded.';
END
$$;

CREATE FUNCTION pageperfect.pgmq_drop_queue(queue_name text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    IF pageperfect.drop_queue(queue_name) THEN
        RETURN true;
    END IF;
    RAISE NOTICE 'pgmq queue `%` does not exist', queue_name;
    RETURN false;
END
$$;

CREATE FUNCTION pageperfect_pgmq_staging.drop_queue(queue_name text) RETURNS boolean
LANGUAGE sql AS $$ SELECT pageperfect.pgmq_drop_queue(queue_name) $$;

-- pgmq's deprecated form: warns, then drops.
CREATE FUNCTION pageperfect_pgmq_staging.drop_queue(queue_name text, partitioned boolean) RETURNS boolean
LANGUAGE plpgsql AS $$
-- `partitioned` is pgmq's and means nothing here:
-- @plpgsql_check_options: extra_warnings = off
BEGIN
    RAISE WARNING 'drop_queue(queue_name, partitioned) is deprecated; use drop_queue(queue_name)';
    RETURN pageperfect.pgmq_drop_queue(queue_name);
END
$$;

-- pgmq's lock on a queue's name for the rest of the transaction (its Rust client takes it
-- around create()).
CREATE FUNCTION pageperfect_pgmq_staging.acquire_queue_lock(queue_name text) RETURNS void
LANGUAGE sql AS $$ SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('pgmq.queue_' || queue_name)) $$;

CREATE FUNCTION pageperfect_pgmq_staging.purge_queue(queue_name text) RETURNS bigint
LANGUAGE sql AS $$ SELECT pageperfect.purge_queue(queue_name) $$;

CREATE FUNCTION pageperfect_pgmq_staging.list_queues() RETURNS SETOF pageperfect_pgmq_staging.queue_record
LANGUAGE sql STABLE AS $$
    SELECT * FROM pageperfect.pgmq_queues()
$$;

-- Sending: a delay is seconds, or the time the message becomes visible (to the whole second up).

CREATE FUNCTION pageperfect_pgmq_staging.send(queue_name text, msg jsonb, headers jsonb, delay integer)
RETURNS SETOF bigint
LANGUAGE sql AS $$
    SELECT pageperfect.send(queue_name, msg, greatest(delay, 0), 0, headers)
$$;

CREATE FUNCTION pageperfect_pgmq_staging.send(queue_name text, msg jsonb, headers jsonb, delay timestamptz)
RETURNS SETOF bigint
LANGUAGE sql AS $$
    SELECT pageperfect.send(queue_name, msg, pageperfect.pgmq_seconds_until(delay), 0, headers)
$$;

CREATE FUNCTION pageperfect_pgmq_staging.send(queue_name text, msg jsonb)
RETURNS SETOF bigint
LANGUAGE sql AS $$ SELECT pageperfect.send(queue_name, msg) $$;

CREATE FUNCTION pageperfect_pgmq_staging.send(queue_name text, msg jsonb, headers jsonb)
RETURNS SETOF bigint
LANGUAGE sql AS $$ SELECT pageperfect.send(queue_name, msg, 0, 0, headers) $$;

CREATE FUNCTION pageperfect_pgmq_staging.send(queue_name text, msg jsonb, delay integer)
RETURNS SETOF bigint
LANGUAGE sql AS $$ SELECT pageperfect.send(queue_name, msg, greatest(delay, 0)) $$;

CREATE FUNCTION pageperfect_pgmq_staging.send(queue_name text, msg jsonb, delay timestamptz)
RETURNS SETOF bigint
LANGUAGE sql AS $$ SELECT pageperfect.send(queue_name, msg, pageperfect.pgmq_seconds_until(delay)) $$;

CREATE FUNCTION pageperfect_pgmq_staging.send_batch(queue_name text, msgs jsonb[], headers jsonb[], delay integer)
RETURNS SETOF bigint
LANGUAGE sql AS $$ SELECT pageperfect.pgmq_send_batch(queue_name, msgs, headers, delay) $$;

CREATE FUNCTION pageperfect_pgmq_staging.send_batch(queue_name text, msgs jsonb[], headers jsonb[], delay timestamptz)
RETURNS SETOF bigint
LANGUAGE sql AS $$
    SELECT pageperfect.pgmq_send_batch(queue_name, msgs, headers, pageperfect.pgmq_seconds_until(delay))
$$;

CREATE FUNCTION pageperfect_pgmq_staging.send_batch(queue_name text, msgs jsonb[])
RETURNS SETOF bigint
LANGUAGE sql AS $$ SELECT pageperfect.pgmq_send_batch(queue_name, msgs, NULL::jsonb[], 0) $$;

CREATE FUNCTION pageperfect_pgmq_staging.send_batch(queue_name text, msgs jsonb[], headers jsonb[])
RETURNS SETOF bigint
LANGUAGE sql AS $$ SELECT pageperfect.pgmq_send_batch(queue_name, msgs, headers, 0) $$;

CREATE FUNCTION pageperfect_pgmq_staging.send_batch(queue_name text, msgs jsonb[], delay integer)
RETURNS SETOF bigint
LANGUAGE sql AS $$ SELECT pageperfect.pgmq_send_batch(queue_name, msgs, NULL::jsonb[], delay) $$;

CREATE FUNCTION pageperfect_pgmq_staging.send_batch(queue_name text, msgs jsonb[], delay timestamptz)
RETURNS SETOF bigint
LANGUAGE sql AS $$ SELECT pageperfect.pgmq_send_batch(queue_name, msgs, NULL::jsonb[], delay) $$;

-- Reading.
CREATE FUNCTION pageperfect_pgmq_staging.read(queue_name text, vt integer, qty integer, conditional jsonb DEFAULT '{}')
RETURNS SETOF pageperfect_pgmq_staging.message_record
LANGUAGE sql AS $$ SELECT * FROM pageperfect.read(queue_name, vt, qty, conditional) $$;

CREATE FUNCTION pageperfect_pgmq_staging.read_with_poll(queue_name text, vt integer, qty integer,
                                                        max_poll_seconds integer DEFAULT 5, poll_interval_ms integer DEFAULT 100,
                                                        conditional jsonb DEFAULT '{}')
RETURNS SETOF pageperfect_pgmq_staging.message_record
LANGUAGE sql AS $$
    SELECT * FROM pageperfect.read_with_poll(queue_name, vt, qty, max_poll_seconds, poll_interval_ms, conditional)
$$;

CREATE FUNCTION pageperfect_pgmq_staging.pop(queue_name text, qty integer DEFAULT 1)
RETURNS SETOF pageperfect_pgmq_staging.message_record
LANGUAGE sql AS $$ SELECT * FROM pageperfect.pop(queue_name, qty) $$;

-- Deleting and archiving.
CREATE FUNCTION pageperfect_pgmq_staging.delete(queue_name text, msg_id bigint) RETURNS boolean
LANGUAGE sql AS $$ SELECT pageperfect.delete(queue_name, msg_id) $$;

CREATE FUNCTION pageperfect_pgmq_staging.delete(queue_name text, msg_ids bigint[]) RETURNS SETOF bigint
LANGUAGE sql AS $$ SELECT pageperfect.delete(queue_name, msg_ids) $$;

CREATE FUNCTION pageperfect_pgmq_staging.archive(queue_name text, msg_id bigint) RETURNS boolean
LANGUAGE sql AS $$ SELECT pageperfect.archive(queue_name, msg_id) $$;

CREATE FUNCTION pageperfect_pgmq_staging.archive(queue_name text, msg_ids bigint[]) RETURNS SETOF bigint
LANGUAGE sql AS $$ SELECT pageperfect.archive(queue_name, msg_ids) $$;

-- Visibility: seconds from now, or a time (to the whole second up); one message or many.
CREATE FUNCTION pageperfect_pgmq_staging.set_vt(queue_name text, msg_id bigint, vt integer)
RETURNS SETOF pageperfect_pgmq_staging.message_record
LANGUAGE sql AS $$ SELECT * FROM pageperfect.set_vt(queue_name, msg_id, greatest(vt, 0)) $$;

CREATE FUNCTION pageperfect_pgmq_staging.set_vt(queue_name text, msg_id bigint, vt timestamptz)
RETURNS SETOF pageperfect_pgmq_staging.message_record
LANGUAGE sql AS $$ SELECT * FROM pageperfect.set_vt(queue_name, msg_id, pageperfect.pgmq_seconds_until(vt)) $$;

CREATE FUNCTION pageperfect_pgmq_staging.set_vt(queue_name text, msg_ids bigint[], vt integer)
RETURNS SETOF pageperfect_pgmq_staging.message_record
LANGUAGE sql AS $$
    SELECT s.* FROM pg_catalog.unnest(msg_ids) AS id, pageperfect.set_vt(queue_name, id, greatest(vt, 0)) AS s
$$;

CREATE FUNCTION pageperfect_pgmq_staging.set_vt(queue_name text, msg_ids bigint[], vt timestamptz)
RETURNS SETOF pageperfect_pgmq_staging.message_record
LANGUAGE sql AS $$
    SELECT s.* FROM pg_catalog.unnest(msg_ids) AS id,
                    pageperfect.set_vt(queue_name, id, pageperfect.pgmq_seconds_until(vt)) AS s
$$;

-- Metrics.
CREATE FUNCTION pageperfect_pgmq_staging.metrics(queue_name text) RETURNS pageperfect_pgmq_staging.metrics_result
LANGUAGE sql STABLE AS $$ SELECT (pageperfect.metrics(queue_name)).* $$;

CREATE FUNCTION pageperfect_pgmq_staging.metrics_all() RETURNS SETOF pageperfect_pgmq_staging.metrics_result
LANGUAGE sql STABLE AS $$
    SELECT (pageperfect.metrics(q.queue_name)).* FROM pageperfect.pgmq_queues() q
$$;

GRANT USAGE ON SCHEMA pageperfect_pgmq_staging TO pageperfect_user;
GRANT SELECT ON pageperfect_pgmq_staging.meta TO pageperfect_user;

-- queue API: pgmq's functions, names and results on pageperfect's queue tables.
--
-- A queue belongs to the role that created it: it, its members and superusers use it; to
-- everyone else it does not exist. Roles have no write privilege on the queue tables: the
-- pgmq-named functions (src/queue/gate.rs) take their caller and run the `*_for(caller, …)`
-- functions below as the owner, which check that the caller may use the queue. Every function
-- touches one queue's rows through the dequeue index. Queues whose names start with
-- `pageperfect_` belong to pageperfect itself.

-- pgmq 1.13's message_record and metrics_result, column for column (clients read them by
-- position).
CREATE TYPE pageperfect.message_record AS (
    msg_id       bigint,
    read_ct      int,
    enqueued_at  timestamptz,
    last_read_at timestamptz,
    vt           timestamptz,
    message      jsonb,
    headers      jsonb
);

CREATE TYPE pageperfect.queue_metrics AS (
    queue_name           text,
    queue_length         bigint,
    newest_msg_age_sec   int,
    oldest_msg_age_sec   int,
    total_messages       bigint,
    scrape_time          timestamptz,
    queue_visible_length bigint,
    -- Partitioned pgmq queues only: always NULL here.
    default_partition_length bigint
);

-- The queue's name when it exists and p_caller may use it (its owner, a member of its owner,
-- a superuser); otherwise the error a missing queue gives, so other roles' queues stay unseen.
CREATE FUNCTION pageperfect.queue_must_allow(queue_name text, p_caller name) RETURNS text
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF queue_name IS NULL THEN
        RAISE EXCEPTION 'queue name must not be NULL' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT EXISTS (SELECT FROM pageperfect.queues q
                    WHERE q.queue_name OPERATOR(pg_catalog.=) queue_must_allow.queue_name AND pg_catalog.pg_has_role(p_caller, q.owner, 'USAGE')) THEN
        RAISE EXCEPTION 'queue "%" does not exist', queue_name
            USING ERRCODE = 'undefined_table', HINT = 'Create it with pageperfect.create_queue().';
    END IF;
    RETURN queue_name;
END
$$;

-- queue_must_allow for reads, in the same one probe: false when the queue is paused (reads
-- then return nothing).
CREATE FUNCTION pageperfect.queue_readable(queue_name text, p_caller name) RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
DECLARE
    paused boolean;
BEGIN
    SELECT q.paused INTO paused FROM pageperfect.queues q
     WHERE q.queue_name OPERATOR(pg_catalog.=) queue_readable.queue_name AND pg_catalog.pg_has_role(p_caller, q.owner, 'USAGE');
    IF NOT FOUND THEN
        PERFORM pageperfect.queue_must_allow(queue_name, p_caller);
    END IF;
    RETURN NOT paused;
END
$$;

-- pause_queue() and resume_queue(): true when the caller's queue changed state.
CREATE FUNCTION pageperfect.set_queue_paused_for(p_caller name, queue_name text, p_paused boolean) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    changed int;
BEGIN
    PERFORM pageperfect.queue_must_allow(queue_name, p_caller);
    UPDATE pageperfect.queues q SET paused = p_paused
     WHERE q.queue_name = set_queue_paused_for.queue_name AND q.paused <> p_paused;
    GET DIAGNOSTICS changed = ROW_COUNT;
    RETURN changed > 0;
END
$$;

CREATE FUNCTION pageperfect.check_seconds(what text, seconds int) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF seconds IS NULL OR seconds OPERATOR(pg_catalog.<) 0 THEN
        RAISE EXCEPTION '% must be 0 or more seconds, not %', what, coalesce(seconds::pg_catalog.text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;

-- Idempotent, as pgmq.create; a name another role's queue has is refused.
CREATE FUNCTION pageperfect.create_queue_for(p_caller name, queue_name text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF queue_name IS NULL OR queue_name !~ '^[A-Za-z0-9_][A-Za-z0-9_-]{0,62}$' THEN
        RAISE EXCEPTION 'invalid queue name "%"', queue_name
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A queue name is 1 to 63 letters, digits, underscores and hyphens.';
    END IF;
    IF queue_name LIKE 'pageperfect\_%' THEN
        RAISE EXCEPTION 'queue names starting with "pageperfect_" are reserved for pageperfect'
            USING ERRCODE = 'reserved_name';
    END IF;
    INSERT INTO pageperfect.queues AS q (queue_name, owner) VALUES (create_queue_for.queue_name, p_caller)
        ON CONFLICT DO NOTHING;
    IF NOT EXISTS (SELECT FROM pageperfect.queues q
                    WHERE q.queue_name = create_queue_for.queue_name AND pg_catalog.pg_has_role(p_caller, q.owner, 'USAGE')) THEN
        RAISE EXCEPTION 'queue "%" already exists and belongs to another role', queue_name
            USING ERRCODE = 'insufficient_privilege';
    END IF;
END
$$;

-- Sends messages with a priority (the pgmq API has none): send_batch and the job engine use it.
-- p_headers, when given, holds one value (or NULL) per message.
CREATE FUNCTION pageperfect.push_messages(p_queue text, p_messages jsonb[], p_delay_seconds float8, p_priority int,
                                          p_headers jsonb[] DEFAULT NULL)
RETURNS SETOF bigint
LANGUAGE plpgsql AS $$
DECLARE
    sent bigint;
BEGIN
    RETURN QUERY
        INSERT INTO pageperfect.queue_messages (queue_name, vt, priority, message, headers)
        SELECT p_queue, pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+) pg_catalog.make_interval(secs => p_delay_seconds), p_priority, m,
               p_headers[n]
          FROM pg_catalog.unnest(p_messages) WITH ORDINALITY AS u (m, n)
         ORDER BY n
        RETURNING msg_id;
    GET DIAGNOSTICS sent = ROW_COUNT;
    INSERT INTO pageperfect.queue_sent_counts AS c (queue_name, stripe, sent)
    VALUES (p_queue, pg_catalog.pg_backend_pid() OPERATOR(pg_catalog.%) 16, sent)
    ON CONFLICT (queue_name, stripe) DO UPDATE SET sent = c.sent OPERATOR(pg_catalog.+) excluded.sent;
END
$$;

-- Checks a send and holds the queue until commit: the lock is shared with concurrent senders and
-- taken exclusively by drop_queue, so no message lands in a queue that is being dropped.
CREATE FUNCTION pageperfect.check_send(p_caller name, queue_name text, messages jsonb[], delay_seconds int,
                                       headers jsonb[] DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF headers IS NOT NULL AND pg_catalog.cardinality(headers) OPERATOR(pg_catalog.<>) pg_catalog.cardinality(messages) THEN
        RAISE EXCEPTION 'headers array length (%) must match msgs array length (%)',
            pg_catalog.cardinality(headers), pg_catalog.cardinality(messages) USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF delay_seconds IS NULL OR delay_seconds OPERATOR(pg_catalog.<) 0 THEN
        PERFORM pageperfect.check_seconds('delay_seconds', delay_seconds);
    END IF;
    IF messages IS NULL OR pg_catalog.array_position(messages, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'a message must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM pg_catalog.pg_advisory_xact_lock_shared(1885957734, pg_catalog.hashtext(queue_name));
    PERFORM pageperfect.queue_must_allow(queue_name, p_caller);
END
$$;

CREATE FUNCTION pageperfect.send_batch_for(p_caller name, queue_name text, messages jsonb[], delay_seconds int,
                                           priority int DEFAULT 0, headers jsonb[] DEFAULT NULL)
RETURNS SETOF bigint
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pageperfect.check_send(p_caller, queue_name, messages, delay_seconds, headers);
    RETURN QUERY SELECT pageperfect.push_messages(queue_name, messages, delay_seconds, coalesce(priority, 0), headers);
END
$$;

-- send_batch of one, without its set-returning call: each level of those costs more than the
-- INSERT itself.
CREATE FUNCTION pageperfect.send_for(p_caller name, queue_name text, message jsonb, delay_seconds int,
                                     priority int DEFAULT 0, headers jsonb DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pageperfect.check_send(p_caller, queue_name, ARRAY[message], delay_seconds);
    RETURN (SELECT pageperfect.push_messages(queue_name, ARRAY[message], delay_seconds, coalesce(priority, 0), ARRAY[headers]));
END
$$;

-- Up to qty visible messages, oldest first, each invisible to other readers for vt seconds.
-- SKIP LOCKED passes over messages another reader is taking; a message it took and committed
-- fails the vt recheck, so no two readers get the same message while it is invisible.
--
-- Small reads walk a cursor and take messages one at a time: its plan has no LIMIT parameter,
-- so it is planned once per session. A LIMIT qty query would be planned anew on every call
-- (its generic plan is costed for a tenth of the queue and never chosen), which costs more
-- than the read itself; for large reads that cost is shared by many messages.
-- conditional (pgmq's): only messages that contain it (jsonb @>); '{}' or NULL: all.
--
-- A queue with max_reads (set_dead_letter) is read with the cursor whatever qty: a message read
-- max_reads times that comes round again is moved to its dead letter queue (or the archive) as
-- the cursor reaches it, and the read goes on to the next.
CREATE FUNCTION pageperfect.read_for(p_caller name, queue_name text, vt int, qty int, conditional jsonb DEFAULT NULL)
RETURNS SETOF pageperfect.message_record
LANGUAGE plpgsql AS $$
DECLARE
    visible pg_catalog.refcursor;
    next_id bigint;
    next_read_ct int;
    taken int := 0;
    paused boolean;
    max_reads int;
    dead_letter_queue pg_catalog.text;
BEGIN
    -- One probe for the permission, the pause and the dead-letter option.
    SELECT q.paused, q.max_reads, q.dead_letter_queue INTO paused, max_reads, dead_letter_queue
      FROM pageperfect.queues q
     WHERE q.queue_name OPERATOR(pg_catalog.=) read_for.queue_name AND pg_catalog.pg_has_role(p_caller, q.owner, 'USAGE');
    IF NOT FOUND THEN
        PERFORM pageperfect.queue_must_allow(queue_name, p_caller);
    END IF;
    IF paused THEN
        RETURN;
    END IF;
    IF vt IS NULL OR vt OPERATOR(pg_catalog.<) 0 THEN
        PERFORM pageperfect.check_seconds('vt', vt);
    END IF;
    IF qty IS NULL OR qty OPERATOR(pg_catalog.<) 1 THEN
        RAISE EXCEPTION 'qty must be at least 1, not %', coalesce(qty::pg_catalog.text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF conditional OPERATOR(pg_catalog.=) '{}'::pg_catalog.jsonb THEN
        conditional := NULL;
    END IF;
    IF qty OPERATOR(pg_catalog.<=) 10 OR max_reads IS NOT NULL THEN
        OPEN visible FOR
            SELECT m.msg_id, m.read_ct FROM pageperfect.queue_messages m
             WHERE m.queue_name OPERATOR(pg_catalog.=) read_for.queue_name AND m.vt OPERATOR(pg_catalog.<=) pg_catalog.clock_timestamp()
               AND (conditional IS NULL OR m.message OPERATOR(pg_catalog.@>) conditional)
             ORDER BY m.priority DESC, m.msg_id
               FOR UPDATE SKIP LOCKED;
        LOOP
            FETCH visible INTO next_id, next_read_ct;
            EXIT WHEN NOT FOUND;
            IF next_read_ct OPERATOR(pg_catalog.>=) max_reads THEN
                PERFORM pageperfect.dead_letter_message(next_id, read_for.queue_name, dead_letter_queue);
                CONTINUE;
            END IF;
            RETURN QUERY
                UPDATE pageperfect.queue_messages m
                   SET vt = pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+) pg_catalog.make_interval(secs => read_for.vt),
                       read_ct = m.read_ct OPERATOR(pg_catalog.+) 1, last_read_at = pg_catalog.clock_timestamp()
                 WHERE m.msg_id OPERATOR(pg_catalog.=) next_id
                RETURNING m.msg_id, m.read_ct, m.enqueued_at, m.last_read_at, m.vt, m.message, m.headers;
            taken := taken OPERATOR(pg_catalog.+) 1;
            EXIT WHEN taken OPERATOR(pg_catalog.>=) qty;
        END LOOP;
        CLOSE visible;
    ELSE
        RETURN QUERY
            WITH taken AS (
                SELECT m.msg_id
                  FROM pageperfect.queue_messages m
                 WHERE m.queue_name OPERATOR(pg_catalog.=) read_for.queue_name AND m.vt OPERATOR(pg_catalog.<=) pg_catalog.clock_timestamp()
                   AND (conditional IS NULL OR m.message OPERATOR(pg_catalog.@>) conditional)
                 ORDER BY m.priority DESC, m.msg_id
                 LIMIT qty
                   FOR UPDATE SKIP LOCKED
            ), updated AS (
                UPDATE pageperfect.queue_messages m
                   SET vt = pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+) pg_catalog.make_interval(secs => read_for.vt),
                       read_ct = m.read_ct OPERATOR(pg_catalog.+) 1, last_read_at = pg_catalog.clock_timestamp()
                  FROM taken
                 WHERE m.msg_id OPERATOR(pg_catalog.=) taken.msg_id
                RETURNING m.msg_id, m.read_ct, m.enqueued_at, m.last_read_at, m.vt, m.message, m.headers
            )
            SELECT * FROM updated ORDER BY msg_id;
    END IF;
END
$$;

-- Moves a message that was read too often out of its queue: to p_dead_letter_queue (visible at
-- once, with headers saying where it came from and how often it was read), or to the archive.
CREATE FUNCTION pageperfect.dead_letter_message(p_msg_id bigint, p_queue text, p_dead_letter_queue text)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    dead pageperfect.queue_messages;
BEGIN
    DELETE FROM pageperfect.queue_messages m WHERE m.msg_id = p_msg_id RETURNING m.* INTO dead;
    IF p_dead_letter_queue IS NULL THEN
        INSERT INTO pageperfect.queue_archive (msg_id, queue_name, read_ct, enqueued_at, vt, priority, message, last_read_at, headers)
        VALUES (dead.msg_id, dead.queue_name, dead.read_ct, dead.enqueued_at, dead.vt, dead.priority, dead.message,
                dead.last_read_at, dead.headers);
    ELSE
        PERFORM pageperfect.push_messages(p_dead_letter_queue, ARRAY[dead.message], 0, dead.priority,
            ARRAY[coalesce(dead.headers, '{}') || pg_catalog.jsonb_build_object(
                'x-dead-letter-from', p_queue, 'x-read-ct', dead.read_ct, 'x-original-msg-id', dead.msg_id)]);
    END IF;
END
$$;

-- set_dead_letter(): messages of the caller's queue read max_reads times go to
-- dead_letter_queue (one of the caller's queues, not this one) or, when NULL, to the archive;
-- max_reads NULL turns it off.
CREATE FUNCTION pageperfect.set_dead_letter_for(p_caller name, queue_name text, max_reads int, dead_letter_queue text)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pageperfect.queue_must_allow(queue_name, p_caller);
    IF max_reads < 1 THEN
        RAISE EXCEPTION 'max_reads must be at least 1 (got %)', max_reads USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF dead_letter_queue IS NOT NULL THEN
        PERFORM pageperfect.queue_must_allow(dead_letter_queue, p_caller);
        IF dead_letter_queue = queue_name THEN
            RAISE EXCEPTION 'a queue cannot be its own dead letter queue' USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END IF;
    UPDATE pageperfect.queues q
       SET max_reads = set_dead_letter_for.max_reads,
           dead_letter_queue = CASE WHEN set_dead_letter_for.max_reads IS NULL THEN NULL ELSE set_dead_letter_for.dead_letter_queue END
     WHERE q.queue_name = set_dead_letter_for.queue_name;
END
$$;

-- Reads and deletes at once: the message is gone whether or not the caller's work succeeds.
CREATE FUNCTION pageperfect.pop_for(p_caller name, queue_name text, qty int)
RETURNS SETOF pageperfect.message_record
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT pageperfect.queue_readable(queue_name, p_caller) THEN
        RETURN;
    END IF;
    IF qty IS NULL OR qty OPERATOR(pg_catalog.<) 1 THEN
        RAISE EXCEPTION 'qty must be at least 1, not %', coalesce(qty::pg_catalog.text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY
        WITH taken AS (
            SELECT m.msg_id
              FROM pageperfect.queue_messages m
             WHERE m.queue_name OPERATOR(pg_catalog.=) pop_for.queue_name AND m.vt OPERATOR(pg_catalog.<=) pg_catalog.clock_timestamp()
             ORDER BY m.priority DESC, m.msg_id
             LIMIT qty
               FOR UPDATE SKIP LOCKED
        ), deleted AS (
            DELETE FROM pageperfect.queue_messages m USING taken
             WHERE m.msg_id OPERATOR(pg_catalog.=) taken.msg_id
            RETURNING m.msg_id, m.read_ct, m.enqueued_at, m.last_read_at, m.vt, m.message, m.headers
        )
        SELECT * FROM deleted ORDER BY msg_id;
END
$$;

CREATE FUNCTION pageperfect.delete_batch_for(p_caller name, queue_name text, msg_ids bigint[])
RETURNS SETOF bigint
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pageperfect.queue_must_allow(queue_name, p_caller);
    RETURN QUERY
        DELETE FROM pageperfect.queue_messages m
         WHERE m.msg_id OPERATOR(pg_catalog.=) ANY (msg_ids) AND m.queue_name OPERATOR(pg_catalog.=) delete_batch_for.queue_name
        RETURNING m.msg_id;
END
$$;

-- delete() of one, without the set-returning call (it cost five times the DELETE).
CREATE FUNCTION pageperfect.delete_for(p_caller name, queue_name text, msg_id bigint)
RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pageperfect.queue_must_allow(queue_name, p_caller);
    DELETE FROM pageperfect.queue_messages m WHERE m.msg_id OPERATOR(pg_catalog.=) delete_for.msg_id AND m.queue_name OPERATOR(pg_catalog.=) delete_for.queue_name;
    RETURN FOUND;
END
$$;

-- Moves messages to queue_archive (kept until purge or drop), as pgmq.archive.
CREATE FUNCTION pageperfect.archive_batch_for(p_caller name, queue_name text, msg_ids bigint[])
RETURNS SETOF bigint
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pageperfect.queue_must_allow(queue_name, p_caller);
    RETURN QUERY
        WITH moved AS (
            DELETE FROM pageperfect.queue_messages m
             WHERE m.msg_id OPERATOR(pg_catalog.=) ANY (msg_ids) AND m.queue_name OPERATOR(pg_catalog.=) archive_batch_for.queue_name
            RETURNING m.*
        )
        INSERT INTO pageperfect.queue_archive (msg_id, queue_name, read_ct, enqueued_at, vt, priority, message,
                                               last_read_at, headers)
        SELECT moved.msg_id, moved.queue_name, moved.read_ct, moved.enqueued_at, moved.vt, moved.priority, moved.message,
               moved.last_read_at, moved.headers
          FROM moved
        RETURNING queue_archive.msg_id;
END
$$;

CREATE FUNCTION pageperfect.archive_for(p_caller name, queue_name text, msg_id bigint)
RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    RETURN EXISTS (SELECT FROM pageperfect.archive_batch_for(p_caller, queue_name, ARRAY[msg_id]));
END
$$;

-- Makes a message invisible for vt seconds from now (0: visible at once); returns it, or no row
-- when it does not exist.
CREATE FUNCTION pageperfect.set_vt_for(p_caller name, queue_name text, msg_id bigint, vt int)
RETURNS SETOF pageperfect.message_record
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pageperfect.check_seconds('vt', vt);
    PERFORM pageperfect.queue_must_allow(queue_name, p_caller);
    RETURN QUERY
        UPDATE pageperfect.queue_messages m
           SET vt = pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+) pg_catalog.make_interval(secs => set_vt_for.vt)
         WHERE m.msg_id OPERATOR(pg_catalog.=) set_vt_for.msg_id AND m.queue_name OPERATOR(pg_catalog.=) set_vt_for.queue_name
        RETURNING m.msg_id, m.read_ct, m.enqueued_at, m.last_read_at, m.vt, m.message, m.headers;
END
$$;

CREATE FUNCTION pageperfect.metrics(queue_name text)
RETURNS pageperfect.queue_metrics
LANGUAGE plpgsql STABLE AS $$
DECLARE
    result pageperfect.queue_metrics;
BEGIN
    PERFORM pageperfect.queue_must_allow(queue_name, CURRENT_USER);
    SELECT metrics.queue_name,
           count(*),
           extract(epoch FROM pg_catalog.clock_timestamp() - max(m.enqueued_at))::int,
           extract(epoch FROM pg_catalog.clock_timestamp() - min(m.enqueued_at))::int,
           (SELECT coalesce(sum(c.sent), 0)::bigint FROM pageperfect.queue_sent_counts c
             WHERE c.queue_name = metrics.queue_name),
           pg_catalog.clock_timestamp(),
           count(*) FILTER (WHERE m.vt <= pg_catalog.clock_timestamp()),
           NULL::bigint
      INTO result
      FROM pageperfect.queue_messages m
     WHERE m.queue_name = metrics.queue_name;
    RETURN result;
END
$$;

CREATE FUNCTION pageperfect.metrics_all()
RETURNS SETOF pageperfect.queue_metrics
LANGUAGE sql STABLE AS $$
    SELECT (pageperfect.metrics(q.queue_name)).* FROM pageperfect.queues q ORDER BY q.queue_name
$$;

CREATE FUNCTION pageperfect.list_queues()
RETURNS TABLE (queue_name text, created_at timestamptz)
LANGUAGE sql STABLE AS $$
    SELECT q.queue_name, q.created_at FROM pageperfect.queues q ORDER BY q.queue_name
$$;

-- Deletes every message of the queue (not its archive); returns how many.
CREATE FUNCTION pageperfect.purge_queue_for(p_caller name, queue_name text)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    purged bigint;
BEGIN
    PERFORM pageperfect.queue_must_allow(queue_name, p_caller);
    DELETE FROM pageperfect.queue_messages m WHERE m.queue_name = purge_queue_for.queue_name;
    GET DIAGNOSTICS purged = ROW_COUNT;
    RETURN purged;
END
$$;

-- Drops the queue with its messages, archive and counters; false when there was no such queue.
CREATE FUNCTION pageperfect.drop_queue_for(p_caller name, queue_name text)
RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_catalog.pg_advisory_xact_lock(1885957734, pg_catalog.hashtext(queue_name));
    DELETE FROM pageperfect.queues q
     WHERE q.queue_name = drop_queue_for.queue_name AND pg_catalog.pg_has_role(p_caller, q.owner, 'USAGE');
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    DELETE FROM pageperfect.queue_messages m WHERE m.queue_name = drop_queue_for.queue_name;
    DELETE FROM pageperfect.queue_archive a WHERE a.queue_name = drop_queue_for.queue_name;
    DELETE FROM pageperfect.queue_sent_counts c WHERE c.queue_name = drop_queue_for.queue_name;
    RETURN true;
END
$$;

-- Roles read the queues they may use (and their messages) directly, and change them only
-- through the functions.
ALTER TABLE pageperfect.queues ENABLE ROW LEVEL SECURITY;
CREATE POLICY queues_owner ON pageperfect.queues USING (pg_catalog.pg_has_role(CURRENT_USER, owner, 'USAGE'));
GRANT SELECT ON pageperfect.queues TO pageperfect_user;
SELECT pageperfect.scope_rows_to_parent(ARRAY['queue_messages', 'queue_archive', 'queue_sent_counts'], 'queues',
                                        'queue_name', 'queue_name');

-- http API: pg_net's functions (http_get, http_post, http_delete, http_collect_response) over
-- the durable request table. A request is a row: the workers see it only once the calling
-- transaction commits, so a rolled-back transaction sends nothing. Delivery, retries and
-- responses: src/http/delivery.rs.

CREATE TYPE pageperfect.request_status AS ENUM ('PENDING', 'SUCCESS', 'ERROR');
CREATE TYPE pageperfect.http_response AS (status_code int, headers jsonb, body text);
CREATE TYPE pageperfect.http_response_result AS (status pageperfect.request_status, message text,
                                                 response pageperfect.http_response);

-- The one way in (called as the owner by queue_http_request, src/http/api.rs, which knows the
-- caller): checks the arguments as pg_net would, stores p_owner's request, and wakes the
-- pipeline workers at commit. A p_guarded request passes the SSRF guard when it is sent.
CREATE FUNCTION pageperfect.store_http_request(p_owner name, p_guarded boolean, p_method text, p_url text,
                                               p_params jsonb, p_headers jsonb, p_body bytea,
                                               p_timeout_milliseconds int)
RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    id bigint;
BEGIN
    PERFORM pageperfect.check_http_url(p_url, 'requested');
    IF pg_catalog.jsonb_typeof(coalesce(p_params, '{}')) <> 'object' OR pg_catalog.jsonb_typeof(coalesce(p_headers, '{}')) <> 'object'
       OR EXISTS (SELECT FROM pg_catalog.jsonb_each(coalesce(p_params, '{}') || coalesce(p_headers, '{}')) e
                   WHERE pg_catalog.jsonb_typeof(e.value) <> 'string') THEN
        RAISE EXCEPTION 'params and headers must be JSON objects of strings'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'For example ''{"Authorization": "Bearer …"}''::jsonb.';
    END IF;
    IF p_timeout_milliseconds IS NULL OR p_timeout_milliseconds < 1 THEN
        RAISE EXCEPTION 'timeout_milliseconds must be at least 1 (got %)', coalesce(p_timeout_milliseconds::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO pageperfect.http_requests (method, url, params, headers, body, timeout_milliseconds, owner, guarded)
    VALUES (p_method, p_url, coalesce(p_params, '{}'), coalesce(p_headers, '{}'), p_body, p_timeout_milliseconds,
            p_owner, p_guarded)
    RETURNING http_requests.id INTO id;
    PERFORM pageperfect.wake_pipeline_workers();
    RETURN id;
END
$$;

CREATE FUNCTION pageperfect.http_get(url text, params jsonb DEFAULT '{}', headers jsonb DEFAULT '{}',
                                     timeout_milliseconds int DEFAULT 5000)
RETURNS bigint
LANGUAGE sql VOLATILE AS $$
    SELECT pageperfect.queue_http_request('GET', url, params, headers, NULL, timeout_milliseconds)
$$;

CREATE FUNCTION pageperfect.http_post(url text, body jsonb DEFAULT '{}', params jsonb DEFAULT '{}',
                                      headers jsonb DEFAULT '{"Content-Type": "application/json"}',
                                      timeout_milliseconds int DEFAULT 5000)
RETURNS bigint
LANGUAGE sql VOLATILE AS $$
    SELECT pageperfect.queue_http_request('POST', url, params, headers, pg_catalog.convert_to(body::text, 'UTF8'),
                                          timeout_milliseconds)
$$;

CREATE FUNCTION pageperfect.http_delete(url text, params jsonb DEFAULT '{}', headers jsonb DEFAULT '{}',
                                        timeout_milliseconds int DEFAULT 5000, body jsonb DEFAULT NULL)
RETURNS bigint
LANGUAGE sql VOLATILE AS $$
    SELECT pageperfect.queue_http_request('DELETE', url, params, headers, pg_catalog.convert_to(body::text, 'UTF8'),
                                          timeout_milliseconds)
$$;

-- pg_net's http_collect_response: the response when one is stored, else PENDING; with
-- async = false it waits for it (only a committed request can ever be answered).
CREATE FUNCTION pageperfect.http_collect_response(request_id bigint, async boolean DEFAULT true)
RETURNS pageperfect.http_response_result
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    answer pageperfect.http_responses;
BEGIN
    IF NOT EXISTS (SELECT FROM pageperfect.http_requests r WHERE r.id = request_id) THEN
        RETURN ROW('ERROR'::pageperfect.request_status, 'request ' || request_id || ' does not exist (or its response expired)',
                   NULL::pageperfect.http_response);
    END IF;
    LOOP
        SELECT * INTO answer FROM pageperfect.http_responses s WHERE s.id = request_id;
        EXIT WHEN answer.id IS NOT NULL OR async;
        PERFORM pg_catalog.pg_sleep(0.05);
    END LOOP;
    IF answer.id IS NULL THEN
        RETURN ROW('PENDING'::pageperfect.request_status, 'request is pending processing'::text, NULL::pageperfect.http_response);
    END IF;
    IF answer.status_code IS NULL THEN
        RETURN ROW('ERROR'::pageperfect.request_status, answer.error_msg, NULL::pageperfect.http_response);
    END IF;
    RETURN ROW('SUCCESS'::pageperfect.request_status, 'ok'::text,
               ROW(answer.status_code, answer.headers, answer.content)::pageperfect.http_response);
END
$$;

-- Requests claimed by a backend that is gone (a killed or restarted worker) are pending again.
-- Their attempt may have reached the server, but no response was stored, so it is sent again.
CREATE FUNCTION pageperfect.requeue_orphaned_http_requests()
RETURNS int
LANGUAGE sql VOLATILE AS $$
    WITH orphaned AS (
        UPDATE pageperfect.http_requests r
           SET status = 'pending', claimed_pid = NULL, claimed_backend_start = NULL,
               next_attempt_at = pg_catalog.clock_timestamp()
         WHERE r.status = 'in_flight'
           AND NOT EXISTS (SELECT FROM pg_catalog.pg_stat_activity a
                            WHERE a.pid = r.claimed_pid AND a.backend_start = r.claimed_backend_start)
        RETURNING 1
    )
    SELECT count(*)::int FROM orphaned
$$;


-- pg_net's names, built in a staging schema that finalize.sql renames to `net` when no such
-- schema exists (pg_net not installed).
CREATE SCHEMA pageperfect_net_staging;
CREATE FUNCTION pageperfect_net_staging.http_get(url text, params jsonb DEFAULT '{}', headers jsonb DEFAULT '{}',
                                                 timeout_milliseconds int DEFAULT 5000) RETURNS bigint
    LANGUAGE sql VOLATILE AS $$ SELECT pageperfect.http_get(url, params, headers, timeout_milliseconds) $$;
CREATE FUNCTION pageperfect_net_staging.http_post(url text, body jsonb DEFAULT '{}', params jsonb DEFAULT '{}',
                                                  headers jsonb DEFAULT '{"Content-Type": "application/json"}',
                                                  timeout_milliseconds int DEFAULT 5000) RETURNS bigint
    LANGUAGE sql VOLATILE AS $$ SELECT pageperfect.http_post(url, body, params, headers, timeout_milliseconds) $$;
CREATE FUNCTION pageperfect_net_staging.http_delete(url text, params jsonb DEFAULT '{}', headers jsonb DEFAULT '{}',
                                                    timeout_milliseconds int DEFAULT 5000, body jsonb DEFAULT NULL) RETURNS bigint
    LANGUAGE sql VOLATILE AS $$ SELECT pageperfect.http_delete(url, params, headers, timeout_milliseconds, body) $$;
CREATE FUNCTION pageperfect_net_staging.http_collect_response(request_id bigint, async boolean DEFAULT true)
    RETURNS pageperfect.http_response_result
    LANGUAGE sql VOLATILE AS $$ SELECT pageperfect.http_collect_response(request_id, async) $$;
-- pg_net's response table, as its users query it.
CREATE VIEW pageperfect_net_staging._http_response WITH (security_invoker = true) AS
    SELECT id, status_code, content_type, headers, content, timed_out, error_msg, created
      FROM pageperfect.http_responses;
GRANT USAGE ON SCHEMA pageperfect_net_staging TO pageperfect_user;
GRANT SELECT ON pageperfect_net_staging._http_response TO pageperfect_user;

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
-- (The URL was checked by the gate, with pg_net's messages.) Values of params and headers are
-- sent as their text, as pg_net sends them; JSON nulls are left out.
CREATE FUNCTION pageperfect.store_http_request(p_owner name, p_guarded boolean, p_method text, p_url text,
                                               p_params jsonb, p_headers jsonb, p_body bytea,
                                               p_timeout_milliseconds int, p_max_attempts int)
RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    id bigint;
BEGIN
    IF pg_catalog.jsonb_typeof(coalesce(p_params, '{}')) <> 'object' OR pg_catalog.jsonb_typeof(coalesce(p_headers, '{}')) <> 'object' THEN
        RAISE EXCEPTION 'params and headers must be JSON objects'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'For example ''{"Authorization": "Bearer …"}''::jsonb.';
    END IF;
    IF p_timeout_milliseconds IS NULL THEN
        RAISE EXCEPTION 'null value in column "timeout_milliseconds" of relation "http_request_queue" violates not-null constraint'
            USING ERRCODE = 'not_null_violation';
    END IF;
    IF p_timeout_milliseconds < 1 THEN
        RAISE EXCEPTION 'timeout_milliseconds must be at least 1 (got %)', p_timeout_milliseconds
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_max_attempts IS NULL OR p_max_attempts NOT BETWEEN 1 AND 10 THEN
        RAISE EXCEPTION 'max_attempts must be between 1 and 10 (got %)', coalesce(p_max_attempts::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO pageperfect.http_requests (method, url, params, headers, body, timeout_milliseconds, owner, guarded, max_attempts)
    VALUES (p_method, p_url, coalesce(p_params, '{}'), coalesce(p_headers, '{}'), p_body, p_timeout_milliseconds,
            p_owner, p_guarded, p_max_attempts)
    RETURNING http_requests.id INTO id;
    PERFORM pageperfect.wake_pipeline_workers();
    RETURN id;
END
$$;

-- pg_net's functions, plus max_attempts: above 1, transport failures, 408, 429 and 5xx are
-- retried with backoff (not before a Retry-After) until the last attempt's outcome is stored.
CREATE FUNCTION pageperfect.http_get(url text, params jsonb DEFAULT '{}', headers jsonb DEFAULT '{}',
                                     timeout_milliseconds int DEFAULT 5000, max_attempts int DEFAULT 1)
RETURNS bigint
LANGUAGE sql VOLATILE AS $$
    SELECT pageperfect.queue_http_request('GET', url, params, headers, NULL, timeout_milliseconds, max_attempts)
$$;

-- As pg_net: a JSON body, so a Content-Type is added when there is none, and any other than
-- application/json is refused.
CREATE FUNCTION pageperfect.http_post(url text, body jsonb DEFAULT '{}', params jsonb DEFAULT '{}',
                                      headers jsonb DEFAULT '{"Content-Type": "application/json"}',
                                      timeout_milliseconds int DEFAULT 5000, max_attempts int DEFAULT 1)
RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    content_type text := (SELECT h.value FROM pg_catalog.jsonb_each_text(coalesce(headers, '{}')) h
                           WHERE pg_catalog.lower(h.key) = 'content-type' LIMIT 1);
BEGIN
    IF content_type IS NULL THEN
        headers := coalesce(headers, '{}') || '{"Content-Type": "application/json"}';
    ELSIF content_type <> 'application/json' THEN
        RAISE EXCEPTION 'Content-Type header must be "application/json"';
    END IF;
    RETURN pageperfect.queue_http_request('POST', url, params, headers, pg_catalog.convert_to(body::text, 'UTF8'),
                                          timeout_milliseconds, max_attempts);
END
$$;

CREATE FUNCTION pageperfect.http_delete(url text, params jsonb DEFAULT '{}', headers jsonb DEFAULT '{}',
                                        timeout_milliseconds int DEFAULT 5000, body jsonb DEFAULT NULL,
                                        max_attempts int DEFAULT 1)
RETURNS bigint
LANGUAGE sql VOLATILE AS $$
    SELECT pageperfect.queue_http_request('DELETE', url, params, headers, pg_catalog.convert_to(body::text, 'UTF8'),
                                          timeout_milliseconds, max_attempts)
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

-- pg_net's _http_collect_response, word for word: SUCCESS with the response for any answer (a
-- 500 too), ERROR with the failure's message, and ERROR 'request matching request_id not found'
-- while there is no response yet (pg_net cannot tell pending from unknown); with async = false it
-- first waits for the response.
CREATE FUNCTION pageperfect.net_collect_response(request_id bigint, async boolean DEFAULT true)
RETURNS pageperfect.http_response_result
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    answer pageperfect.http_responses;
BEGIN
    LOOP
        SELECT * INTO answer FROM pageperfect.http_responses s WHERE s.id = request_id;
        EXIT WHEN answer.id IS NOT NULL OR async
                  OR NOT EXISTS (SELECT FROM pageperfect.http_requests r WHERE r.id = request_id);
        PERFORM pg_catalog.pg_sleep(0.05);
    END LOOP;
    IF answer.id IS NULL OR answer.error_msg IS NOT NULL THEN
        RETURN ROW('ERROR'::pageperfect.request_status, coalesce(answer.error_msg, 'request matching request_id not found'),
                   NULL::pageperfect.http_response);
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
CREATE FUNCTION pageperfect_net_staging._http_collect_response(request_id bigint, async boolean DEFAULT true)
    RETURNS pageperfect.http_response_result
    LANGUAGE sql VOLATILE AS $$ SELECT pageperfect.net_collect_response(request_id, async) $$;
-- pg_net deprecated this name (and its own version of it fails); here it still answers.
CREATE FUNCTION pageperfect_net_staging.http_collect_response(request_id bigint, async boolean DEFAULT true)
    RETURNS pageperfect.http_response_result
    LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RAISE NOTICE 'The net.http_collect_response function is deprecated.';
    RETURN pageperfect.net_collect_response(request_id, async);
END
$$;
-- pg_net's tables, as its users query them: the requests not answered yet, and the responses.
CREATE VIEW pageperfect_net_staging.http_request_queue WITH (security_invoker = true) AS
    SELECT id, method, url, headers, body, timeout_milliseconds
      FROM pageperfect.http_requests WHERE status IN ('pending', 'in_flight');
CREATE VIEW pageperfect_net_staging._http_response WITH (security_invoker = true) AS
    SELECT id, status_code, content_type, headers, content, timed_out, error_msg, created
      FROM pageperfect.http_responses;
-- pg_net's helpers around its worker. pageperfect's pipeline workers deliver the requests.
CREATE FUNCTION pageperfect_net_staging.wake() RETURNS void
    LANGUAGE sql VOLATILE AS $$ SELECT pageperfect.wake_pipeline_workers() $$;
-- Reloading the server's configuration is a superuser's decision here (pg_net lets any role):
-- this wakes the workers, which pick up changed settings on the reload a superuser makes.
CREATE FUNCTION pageperfect_net_staging.worker_restart() RETURNS boolean
    LANGUAGE sql VOLATILE AS $$ SELECT pageperfect.wake_pipeline_workers(); SELECT true $$;
CREATE FUNCTION pageperfect_net_staging.wait_until_running() RETURNS void
    LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    WHILE NOT pageperfect.pipeline_workers_up() LOOP
        PERFORM pg_catalog.pg_sleep(0.05);
    END LOOP;
END
$$;
CREATE FUNCTION pageperfect_net_staging.check_worker_is_up() RETURNS void
    LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF NOT pageperfect.pipeline_workers_up() THEN
        RAISE EXCEPTION USING
            MESSAGE = 'the pg_net background worker is not up',
            DETAIL = 'no pageperfect pipeline worker is running, so no request is sent',
            HINT = 'Add pageperfect to shared_preload_libraries and check pageperfect.get_scheduler_health().';
    END IF;
END
$$;
COMMENT ON FUNCTION pageperfect_net_staging.check_worker_is_up() IS 'raises an exception if the pg_net background worker is not up, otherwise it doesn''t return anything';
COMMENT ON FUNCTION pageperfect_net_staging.wait_until_running() IS 'waits until the worker is running';
CREATE FUNCTION pageperfect_net_staging._urlencode_string(string varchar) RETURNS text
    LANGUAGE sql IMMUTABLE AS $$ SELECT pageperfect.urlencode(string) $$;
CREATE FUNCTION pageperfect_net_staging._encode_url_with_params_array(url text, params_array text[]) RETURNS text
    LANGUAGE sql IMMUTABLE AS $$ SELECT pageperfect.url_with_params(url, params_array) $$;
-- As pg_net: every role may use net (each sees and sends only its own requests).
GRANT USAGE ON SCHEMA pageperfect_net_staging TO PUBLIC;
GRANT SELECT ON pageperfect_net_staging._http_response, pageperfect_net_staging.http_request_queue TO PUBLIC;

-- Whether a pipeline worker (which sends the requests) is running.
CREATE FUNCTION pageperfect.pipeline_workers_up() RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT FROM pg_catalog.pg_stat_activity a WHERE a.backend_type LIKE 'pageperfect pipeline%')
$$;

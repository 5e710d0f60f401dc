-- http: durable outgoing requests (pg_net-compatible API) and their stored responses.
-- Both tables are logged: a request survives crashes until its response or final failure lands.

CREATE TABLE pageperfect.http_requests (
    id                    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    method                text NOT NULL CHECK (method IN ('GET', 'POST', 'DELETE')),
    url                   text NOT NULL,
    params                jsonb NOT NULL DEFAULT '{}',
    headers               jsonb NOT NULL DEFAULT '{}',
    body                  bytea,
    timeout_milliseconds  int NOT NULL CHECK (timeout_milliseconds > 0),
    -- Attempts before a transport failure, 408, 429 or 5xx is the final answer: 1 (pg_net's way:
    -- every answer, a 500 too, is the response) unless the caller asked for retries.
    max_attempts          int NOT NULL DEFAULT 1 CHECK (max_attempts BETWEEN 1 AND 10),
    status                text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'in_flight', 'done', 'failed')),
    attempts              int NOT NULL DEFAULT 0,
    next_attempt_at       timestamptz NOT NULL DEFAULT now(),
    claimed_pid           int,
    claimed_backend_start timestamptz,
    owner                 name NOT NULL DEFAULT CURRENT_USER,
    -- Sent through the SSRF guard (requests of non-superusers unless http_allow_private is on).
    guarded               boolean NOT NULL DEFAULT true,
    created               timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX http_requests_due_idx ON pageperfect.http_requests (next_attempt_at) WHERE status = 'pending';
-- The per-owner limit of requests in flight counts these.
CREATE INDEX http_requests_in_flight_idx ON pageperfect.http_requests (owner) WHERE status = 'in_flight';

CREATE TABLE pageperfect.http_responses (
    id           bigint PRIMARY KEY REFERENCES pageperfect.http_requests (id) ON DELETE CASCADE,
    status_code  int,
    content_type text,
    headers      jsonb,
    content      text,
    timed_out    boolean NOT NULL DEFAULT false,
    error_msg    text,
    attempts     int NOT NULL DEFAULT 1,
    created      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX http_responses_created_idx ON pageperfect.http_responses (created);

ALTER TABLE pageperfect.http_requests ENABLE ROW LEVEL SECURITY;
CREATE POLICY http_requests_owner ON pageperfect.http_requests USING (owner = CURRENT_USER);
SELECT pageperfect.scope_rows_to_parent(ARRAY['http_responses'], 'http_requests', 'id');
-- pg_net lets every role send requests and read its own: so do these tables (row-level
-- security shows a role only its own requests and their responses).
GRANT SELECT ON pageperfect.http_requests, pageperfect.http_responses TO PUBLIC;

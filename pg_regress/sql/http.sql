-- pg_net's calls: what is stored, and the errors for bad arguments. (Delivery is tested in
-- tests/tests/http.rs against a loopback server.)
\set VERBOSITY terse
SELECT net.http_get('https://example.com/a', params := '{"q": "x y"}', timeout_milliseconds := 1500) > 0 AS queued;
SELECT net.http_post(url := 'https://example.com/b', headers := '{"Content-Type": "application/json", "X-Key": "k"}',
                     body := '{"n": 1}') > 0 AS queued;
SELECT pageperfect.http_delete('https://example.com/c') > 0 AS queued;
SELECT method, url, params, headers, convert_from(body, 'UTF8') AS body, timeout_milliseconds, status, attempts
  FROM pageperfect.http_requests ORDER BY id;
-- pg_net's collect: no answer yet and no such request look alike, as in pg_net; pageperfect's own
-- says PENDING. The deprecated name still answers (pg_net's own fails), with its notice.
SELECT (net._http_collect_response(id)).* FROM pageperfect.http_requests ORDER BY id LIMIT 1;
SELECT (net._http_collect_response(-1, async := true)).*;
SELECT (pageperfect.http_collect_response(id)).status FROM pageperfect.http_requests ORDER BY id LIMIT 1;
SELECT status FROM net.http_collect_response(-1);
-- The requests not answered yet, as pg_net's queue table shows them.
SELECT method, url, headers, timeout_milliseconds FROM net.http_request_queue ORDER BY id;

-- http_post: a JSON body, so a Content-Type is added when missing and any other refused.
SELECT net.http_post('https://example.com/d', '{}', headers := '{"other": "val"}') AS posted \gset
SELECT headers FROM pageperfect.http_requests WHERE id = :posted;
SELECT net.http_post('https://example.com/e', '{}', headers := '{"Content-Type": "application/text"}');
-- Values that are not strings are sent as their text; JSON nulls are left out.
SELECT net.http_get('https://example.com/', headers := '{"X-Count": 3}') > 0 AS queued;
-- Retries are a per-request choice (pg_net makes one attempt): pageperfect.http_get(max_attempts).
SELECT pageperfect.http_get('https://example.com/retried', max_attempts := 5) AS retried \gset
SELECT max_attempts FROM pageperfect.http_requests WHERE id = :retried;
SELECT pageperfect.http_get('https://example.com/', max_attempts := 11);
-- pg_net's URL helpers.
SELECT net._urlencode_string('a b&c=ñ') AS encoded, net._urlencode_string(NULL) IS NULL AS null_stays_null;
SELECT net._encode_url_with_params_array('http://h/anything?x=1', ARRAY['hello=world', NULL]) AS url,
       net._encode_url_with_params_array(NULL, NULL) IS NULL AS null_stays_null;

-- pg_net's errors for bad URLs, word for word.
SELECT net.http_get('ftp://example.com/');
SELECT net.http_get('example.com');
SELECT net.http_get('localhost:6666');
SELECT net.http_get('/malformed_url');
SELECT net.http_get('http://');
SELECT net.http_get(NULL);
SELECT net.http_post(NULL, '{"hello": "world"}');
SELECT net.http_delete(NULL);
SELECT net.http_get('https://example.com/', timeout_milliseconds := NULL);
SELECT net.http_get('https://example.com/', params := '["a"]');
SELECT net.http_get('https://example.com/', timeout_milliseconds := 0);

-- A rolled-back call leaves nothing behind.
BEGIN;
SELECT net.http_get('https://example.com/rolled-back') > 0 AS queued;
ROLLBACK;
SELECT count(*) AS requests FROM pageperfect.http_requests WHERE url LIKE '%rolled-back';
DELETE FROM pageperfect.http_requests;

-- pg_net's settings, with pg_net's defaults: how long responses are kept, how many requests a
-- worker takes at once.
SELECT name, setting, context FROM pg_settings WHERE name LIKE 'pg\_net.%' ORDER BY name;

-- pg_net's calls: what is stored, and the errors for bad arguments. (Delivery is tested in
-- tests/tests/http.rs against a loopback server.)
\set VERBOSITY terse
SELECT net.http_get('https://example.com/a', params := '{"q": "x y"}', timeout_milliseconds := 1500) > 0 AS queued;
SELECT net.http_post(url := 'https://example.com/b', headers := '{"Content-Type": "application/json", "X-Key": "k"}',
                     body := '{"n": 1}') > 0 AS queued;
SELECT pageperfect.http_delete('https://example.com/c') > 0 AS queued;
SELECT method, url, params, headers, convert_from(body, 'UTF8') AS body, timeout_milliseconds, status, attempts
  FROM pageperfect.http_requests ORDER BY id;
SELECT (net.http_collect_response(id)).status FROM pageperfect.http_requests ORDER BY id LIMIT 1;
SELECT (net.http_collect_response(-1)).*;

SELECT net.http_get('ftp://example.com/');
SELECT net.http_get('example.com');
SELECT net.http_get('https://example.com/', headers := '{"X-Count": 3}');
SELECT net.http_get('https://example.com/', params := '["a"]');
SELECT net.http_get('https://example.com/', timeout_milliseconds := 0);

-- A rolled-back call leaves nothing behind.
BEGIN;
SELECT net.http_get('https://example.com/rolled-back') > 0 AS queued;
ROLLBACK;
SELECT count(*) AS requests FROM pageperfect.http_requests WHERE url LIKE '%rolled-back';
DELETE FROM pageperfect.http_requests;

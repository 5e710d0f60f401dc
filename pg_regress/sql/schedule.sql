-- Cron schedules: next fire times, and bad text refused with SQLSTATE 22023 naming the field.
SET TimeZone = 'UTC';
SET pageperfect.timezone = 'UTC';

SELECT pageperfect.next_runs('*/15 * * * *', '2026-11-23 10:07:00+00', 3);
SELECT pageperfect.next_runs('0 0 13 * 5', '2026-10-01 00:00:00+00', 4);  -- the 13th (a Tuesday) OR a Friday
SELECT pageperfect.next_runs('0 23 $ * *', '2028-01-15 00:00:00+00', 2);  -- last day of the month
SELECT pageperfect.next_runs('@weekly', '2026-11-23 10:00:00+00');
SELECT pageperfect.next_runs('20 seconds', '2026-11-23 10:00:05+00', 3);
SELECT count(*) AS never FROM pageperfect.next_runs('0 0 30 2 *', '2026-01-01 00:00:00+00', 5);

-- pageperfect.timezone reads schedules as wall-clock times of that zone.
SET pageperfect.timezone = 'Europe/Berlin';
SELECT pageperfect.next_runs('0 9 * * *', '2026-07-01 00:00:00+00', 1) AS summer,
       pageperfect.next_runs('0 9 * * *', '2026-12-01 00:00:00+00', 1) AS winter;
SET pageperfect.timezone = 'Mars/Olympus_Mons';
SELECT pageperfect.next_runs('0 9 * * *', '2026-07-01 00:00:00+00', 1);
RESET pageperfect.timezone;

-- pg_cron's message names the schedule; the DETAIL says what is wrong with which field.
CREATE FUNCTION pg_temp.schedule_error(schedule text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    detail text;
BEGIN
    PERFORM pageperfect.validate_schedule(schedule);
    RETURN 'ok';
EXCEPTION WHEN others THEN
    GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
    RETURN SQLSTATE || ': ' || detail;
END
$$;
SELECT schedule, pg_temp.schedule_error(schedule)
  FROM unnest(ARRAY['61 * * * *', '* 24 * * *', '* * 0 * *', '* * * 13 *', '* * * * 8', '* * * * $',
                    '*/0 * * * *', '5/10 * * * *', '10-5 * * * *', '* * * *', '@reboot', '0 seconds',
                    '60 seconds', 'every day', '0 0 1 JAN *', '15 seconds', '@annually',
                    -- pg_cron 1.6's limits: no step past the field's largest value, `$` alone.
                    '*/60 * * * *', '0 */24 * * *', '0 0 1 */13 *', '0 0 1,$ * *', '0 0 $ * *', '@restart', '@every']) AS schedule;
-- pg_cron's message and hint, word for word, with the field-by-field reason as the DETAIL.
SELECT cron.schedule('*/60 10 * * *', 'SELECT 1');

-- The table refuses bad schedules however they arrive; nothing is written.
\set VERBOSITY terse
INSERT INTO pageperfect.job (schedule, command) VALUES ('61 * * * *', 'SELECT 1');
INSERT INTO pageperfect.job (schedule, command, jobname) VALUES ('*/5 * * * *', 'SELECT 1', 'ok-job');
UPDATE pageperfect.job SET schedule = '* * * * mon-xyz' WHERE jobname = 'ok-job';
SELECT jobname, schedule FROM pageperfect.job;
DELETE FROM pageperfect.job;

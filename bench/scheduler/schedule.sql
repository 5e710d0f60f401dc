SET client_min_messages = warning;
-- Scheduler benchmark (scripts/bench.sh), run with psql -v jobs=N -v side=NAME -v minute=M -v hour=H
-- in the database of one side: pageperfect's (database postgres) or pg_cron's (database pgcron).
-- Both sides get the same commands through the same API, cron.schedule: N jobs due in the same
-- minute (H:M UTC, once a day), each recording when it started. Its lag is that time minus the due time.
CREATE TABLE IF NOT EXISTS bench_lag (side text, jobs int, job int, started timestamptz);
SELECT count(cron.schedule(format('bench-%s-%s', :jobs, i), format('%s %s * * *', :minute, :hour),
                           format('INSERT INTO bench_lag VALUES (%L, %s, %s, clock_timestamp())', :'side', :jobs, i)))
         AS scheduled
  FROM generate_series(1, :jobs) AS i;

-- Lag of the runs of the N-job round (psql -v jobs=N -v due='timestamp'): how many ran, and
-- p50/p99/max milliseconds from the due time to the job's first statement, as one CSV line.
SELECT count(*) || ',' ||
       coalesce(round(percentile_cont(0.50) WITHIN GROUP (ORDER BY lag))::text, '') || ',' ||
       coalesce(round(percentile_cont(0.99) WITHIN GROUP (ORDER BY lag))::text, '') || ',' ||
       coalesce(round(max(lag))::text, '')
  FROM (SELECT extract(epoch FROM started - :'due'::timestamptz) * 1000 AS lag FROM bench_lag WHERE jobs = :jobs) runs;

-- The default jobs: created once, found the second time, a changed schedule kept.
SELECT job_name, schedule, command, action FROM pageperfect.initialize_scheduler();
SELECT pageperfect.alter_job(jobid, schedule => '*/2 * * * *') FROM pageperfect.job WHERE jobname = 'content_pipeline_main';
SELECT job_name, schedule, action FROM pageperfect.initialize_scheduler() WHERE job_name LIKE 'content_pipeline_m%';
SELECT count(*) AS jobs FROM pageperfect.job;

-- Each trigger returns a summary of what it did.
SELECT pageperfect.trigger_sweeper();
SELECT pageperfect.trigger_cleanup() -> 'deleted' AS deleted;
SELECT jsonb_object_keys(pageperfect.trigger_metrics_collection()) AS metrics_summary_keys;
SELECT jsonb_object_keys(pageperfect.trigger_health_checks()) AS health_summary_keys;
SELECT DISTINCT component FROM pageperfect.health_checks WHERE component NOT LIKE 'pipeline_worker_%' ORDER BY 1;
SELECT pageperfect.trigger_metrics_collection(interval '-1 minute');
SELECT pageperfect.trigger_content_automation(0);

-- They are an administrator's: a pageperfect_user may not run them.
CREATE ROLE pp_dave LOGIN IN ROLE pageperfect_user;
SET ROLE pp_dave;
SELECT pageperfect.initialize_scheduler();
SELECT pageperfect.trigger_cleanup();
SELECT pageperfect.trigger_monitoring();
SELECT pageperfect.ingest_gsc();
RESET ROLE;
DROP ROLE pp_dave;

SELECT count(*) FILTER (WHERE pageperfect.unschedule(jobid)) AS unscheduled FROM pageperfect.job;

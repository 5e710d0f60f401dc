//! In-place upgrades. Every released version's install script (sql/releases/) still installs
//! with today's library; its workers wait and say what to run; `ALTER EXTENSION pageperfect
//! UPDATE`, with the workers running, keeps every row and gives exactly the schema of a fresh
//! install of today's version (pg_dump --schema-only of both, with the extension's objects
//! shown as plain objects, and the same tables kept by pg_dump); then everything works. And a
//! library that finds its database at a version it does not serve touches nothing until that
//! is fixed, saying so in the log and in get_scheduler_health().

use pageperfect_it::site::{Route, Site};
use pageperfect_it::{count, scheduler_health, table_digest, wait_for, Cluster};
use postgres::Client;
use std::collections::BTreeMap;
use std::time::Duration;

/// Every version that CREATE EXTENSION can install, and the one it installs by default.
fn versions(client: &mut Client) -> (Vec<String>, String) {
    let default: String = client
        .query_one("SELECT default_version FROM pg_available_extensions WHERE name = 'pageperfect'", &[])
        .unwrap()
        .get(0);
    let all = client
        .query("SELECT version FROM pg_available_extension_versions WHERE name = 'pageperfect' ORDER BY version", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    (all, default)
}

/// Row count and digest of every table in schema pageperfect.
fn every_row(client: &mut Client) -> BTreeMap<String, String> {
    let tables: Vec<String> = client
        .query("SELECT c.oid::regclass::text FROM pg_class c WHERE c.relnamespace = 'pageperfect'::regnamespace AND c.relkind = 'r' ORDER BY 1", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    tables
        .into_iter()
        .map(|table| {
            let digest = table_digest(client, &table);
            (table, digest)
        })
        .collect()
}

/// The extension's schema in `database` as pg_dump writes plain objects (tables, functions,
/// triggers, policies, grants, comments), and what pg_dump keeps of it (extconfig with each
/// filter). pg_dump writes an extension's members as one CREATE EXTENSION, so they are made
/// plain first: their membership and their install-time privileges are forgotten. This ends
/// the database's use as an extension; call it last.
fn schema_of(cluster: &Cluster, database: &str) -> (String, Vec<String>) {
    let mut client = cluster.connect_to(database, "postgres");
    let kept: Vec<String> = client
        .query(
            "SELECT k.relation::regclass::text || ' ' || k.filter
               FROM pg_extension e, unnest(e.extconfig, e.extcondition) AS k (relation, filter)
              WHERE e.extname = 'pageperfect' ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    client
        .batch_execute(
            "BEGIN;
             DELETE FROM pg_init_privs WHERE privtype = 'e';
             DELETE FROM pg_depend WHERE deptype = 'e' AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pageperfect');
             COMMIT;",
        )
        .unwrap();
    let dump = cluster.client_program("pg_dump", &["--schema-only", database]);
    // pg_dump's \restrict lines carry a random key.
    let dump: String = dump.lines().filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict")).collect::<Vec<_>>().join("\n");
    assert!(dump.contains("CREATE TABLE pageperfect.job_run_details") && dump.contains("GRANT SELECT ON TABLE pageperfect.job TO PUBLIC"));
    (dump, kept)
}

/// Waits for each of the three workers to log `line`, and checks that none repeats it.
fn said_once_by_each_worker(cluster: &Cluster, line: &str) {
    wait_for(Duration::from_secs(20), &format!("each worker to log: {line}"), || {
        (cluster.log().matches(line).count() >= 3).then_some(())
    });
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(cluster.log().matches(line).count(), 3, "said once by each worker: {line}");
}

fn workers_healthy(client: &mut Client) -> bool {
    count(client, "SELECT count(*) FROM pageperfect.worker_health() WHERE status = 'healthy'") == 3
}

fn succeeded_runs(client: &mut Client, job: &str) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM pageperfect.job_run_details d JOIN pageperfect.job j USING (jobid) WHERE j.jobname = $1 AND d.status = 'succeeded'",
            &[&job],
        )
        .unwrap()
        .get(0)
}

#[test]
fn every_released_version_upgrades_in_place_to_a_fresh_installs_schema_keeping_every_row() {
    let site = Site::start(vec![("/guide.html", Route::html("<html><head><title>Guide</title></head><body><main><h1>Guide</h1><p>Brewing coffee at home, step by step, with a scale and a kettle.</p></main></body></html>"))]);
    let (current, released) = {
        let probe = Cluster::start("upgrade-versions", false, &[]);
        let (all, default) = versions(&mut probe.connect());
        let released: Vec<String> = all.into_iter().filter(|v| *v != default).collect();
        (default, released)
    };
    assert!(released.contains(&"0.1.0".to_string()), "the first release stays installable: {released:?}");

    for old in &released {
        let cluster = Cluster::start(&format!("upgrade-{old}"), true, &["pageperfect.crawl_allow_private = on"]);
        let mut client = cluster.connect();
        client.batch_execute(&format!("CREATE EXTENSION pageperfect VERSION '{old}'")).unwrap();
        // The workers wait and say what to run.
        let advice = format!("database \"postgres\" has pageperfect {old} and the server runs the library of {current}: run ALTER EXTENSION pageperfect UPDATE in it");
        said_once_by_each_worker(&cluster, &advice);
        // Data of every kind the old version's SQL API makes; nothing runs it yet.
        let page = site.url("/guide.html");
        client
            .batch_execute(&format!(
                "CREATE ROLE alice LOGIN IN ROLE pageperfect_user;
                 SELECT cron.schedule('tick', '1 seconds', 'SELECT 1');
                 SELECT pageperfect.alter_job_policy('tick', max_attempts => 2);
                 SELECT pageperfect.set_cron_secret('deploy-hook', 'a-long-random-token');
                 UPDATE pageperfect.parameters SET value = '-0.7' WHERE name = 'ctr_alpha';
                 SELECT pageperfect.create_queue('emails');
                 SELECT pageperfect.send_batch('emails', array_fill('{{\"n\": 1}}'::jsonb, ARRAY[10]));
                 SELECT pageperfect.archive('emails', 1);
                 INSERT INTO pageperfect.gsc_site_owners (site, owner) VALUES ('sc-domain:example', 'postgres');
                 INSERT INTO pageperfect.gsc_page_query_daily (date, site, page, query, clicks, impressions, position)
                      VALUES (current_date - 3, 'sc-domain:example', '{page}', 'coffee at home', 3, 40, 5.5);
                 SELECT pageperfect.run_workflow('{page}');
                 SET ROLE alice;
                 SELECT cron.schedule('alice-yearly', '0 0 1 1 *', 'SELECT 3');
                 RESET ROLE;"
            ))
            .unwrap();
        std::thread::sleep(Duration::from_secs(2));
        assert_eq!(succeeded_runs(&mut client, "tick"), 0, "no job runs while the workers wait");
        let before = every_row(&mut client);

        // In place, with the workers running: every row kept.
        client.batch_execute("BEGIN; ALTER EXTENSION pageperfect UPDATE").unwrap();
        assert_eq!(every_row(&mut client), before, "rows after updating {old} to {current}");
        let extversion: String = client.query_one("SELECT extversion FROM pg_extension WHERE extname = 'pageperfect'", &[]).unwrap().get(0);
        assert_eq!(extversion, current);
        client.batch_execute("COMMIT").unwrap();

        // Everything works: the workers resume, the job runs, the queued workflow finishes, the
        // old messages are read and deleted, new ids follow the old ones, alice sees her job.
        wait_for(Duration::from_secs(20), "the workers to resume", || workers_healthy(&mut client).then_some(()));
        assert!(!scheduler_health(&mut client).iter().any(|(component, _)| component == "extension"));
        wait_for(Duration::from_secs(20), "the job to run", || (succeeded_runs(&mut client, "tick") >= 2).then_some(()));
        wait_for(Duration::from_secs(60), "the workflow queued before the update", || {
            (count(&mut client, "SELECT count(*) FROM pageperfect.jobs WHERE status = 'completed'") == 1).then_some(())
        });
        let read: Vec<i64> = client.query("SELECT msg_id FROM pageperfect.read('emails', 30, 20)", &[]).unwrap().iter().map(|r| r.get(0)).collect();
        assert_eq!(read, (2..=10).collect::<Vec<i64>>());
        assert!(client.query_one("SELECT pageperfect.delete('emails', 2::bigint)", &[]).unwrap().get::<_, bool>(0));
        let newest = count(&mut client, "SELECT max(msg_id) FROM pageperfect.queue_messages");
        assert!(count(&mut client, "SELECT pageperfect.send('emails', '{}')") > newest, "new ids follow the old ones");
        assert_eq!(count(&mut client, "SELECT count(*) FROM pageperfect.queue_archive WHERE msg_id = 1"), 1);
        let mut alice = cluster.connect_to("postgres", "alice");
        assert_eq!(alice.query_one("SELECT string_agg(jobname, ',') FROM cron.job", &[]).unwrap().get::<_, String>(0), "alice-yearly");
        assert!(client.query_one("SELECT pageperfect.verify_cron_secret('deploy-hook', 'a-long-random-token')", &[]).unwrap().get::<_, bool>(0));

        // The schema is exactly a fresh install's.
        client.batch_execute("CREATE DATABASE fresh").unwrap();
        cluster.connect_to("fresh", "postgres").batch_execute("CREATE EXTENSION pageperfect").unwrap();
        let (fresh, fresh_kept) = schema_of(&cluster, "fresh");
        let (upgraded, upgraded_kept) = schema_of(&cluster, "postgres");
        assert_eq!(upgraded_kept, fresh_kept, "what pg_dump keeps after updating {old}");
        if upgraded != fresh {
            let diff: Vec<String> = diff_lines(&upgraded, &fresh);
            panic!("the schema after updating {old} to {current} differs from a fresh install:\n{}", diff.join("\n"));
        }
    }
}

/// The lines only one side has, marked `-` (upgraded) or `+` (fresh), at most 80.
fn diff_lines(upgraded: &str, fresh: &str) -> Vec<String> {
    let (a, b): (Vec<&str>, Vec<&str>) = (upgraded.lines().collect(), fresh.lines().collect());
    let only_a = a.iter().filter(|l| !b.contains(l)).map(|l| format!("- {l}"));
    let only_b = b.iter().filter(|l| !a.contains(l)).map(|l| format!("+ {l}"));
    only_a.chain(only_b).take(80).collect()
}

#[test]
fn a_library_that_does_not_serve_the_databases_version_touches_nothing_and_says_what_to_run() {
    let (cluster, mut client) = Cluster::with_extension("version-mismatch", &[]);
    wait_for(Duration::from_secs(20), "the workers", || workers_healthy(&mut client).then_some(()));
    client.batch_execute("SELECT cron.schedule('tick', '1 seconds', 'SELECT 1')").unwrap();
    wait_for(Duration::from_secs(20), "the job to run", || (succeeded_runs(&mut client, "tick") >= 1).then_some(()));

    // As if the database had been updated by a newer release than the server's library.
    let current: String = client.query_one("SELECT extversion FROM pg_extension WHERE extname = 'pageperfect'", &[]).unwrap().get(0);
    client.batch_execute("UPDATE pg_extension SET extversion = '99.0.0' WHERE extname = 'pageperfect'").unwrap();
    let advice = format!("database \"postgres\" has pageperfect 99.0.0 and the server runs the library of {current}: install the library of 99.0.0 and restart the server (the workers wait until then)");
    said_once_by_each_worker(&cluster, &advice);
    let status: String = client
        .query_one("SELECT status FROM pageperfect.get_scheduler_health() WHERE component = 'extension'", &[])
        .unwrap()
        .get(0);
    assert_eq!(status, advice);
    let runs = succeeded_runs(&mut client, "tick");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(succeeded_runs(&mut client, "tick"), runs, "no job runs meanwhile");
    wait_for(Duration::from_secs(10), "health to show the workers stalled", || {
        (count(&mut client, "SELECT count(*) FROM pageperfect.worker_health() WHERE status = 'stalled'") == 3).then_some(())
    });

    // Back at the library's version, the workers carry on.
    let working = format!("has pageperfect {current}; working");
    let said_working = cluster.log().matches(&working).count();
    client.execute("UPDATE pg_extension SET extversion = $1 WHERE extname = 'pageperfect'", &[&current]).unwrap();
    wait_for(Duration::from_secs(20), "the workers to resume", || workers_healthy(&mut client).then_some(()));
    wait_for(Duration::from_secs(20), "the job to run again", || (succeeded_runs(&mut client, "tick") > runs).then_some(()));
    assert!(!scheduler_health(&mut client).iter().any(|(component, _)| component == "extension"));
    assert_eq!(cluster.log().matches(&working).count(), said_working + 3);
}

//! Day two: a database that uses pageperfect survives pg_dump and a restore. Every kind of data
//! is made through the SQL API on a running cluster (cron jobs and their runs, a cron secret,
//! queues with read, archived and dead-lettered messages, workflows run on a loopback site with a
//! dead one among them, Search Console rows ingested from the loopback Google, a fitted CTR
//! curve, HTTP requests, alerts, metrics, health checks and logs), dumped in one snapshot in
//! custom, plain and data-only format, and restored three ways into other databases of the same
//! cluster: every table the extension keeps comes back row for row with its sequences, the
//! functions behind the dashboard answer as on the source, and the copies run nothing. Restored
//! with --single-transaction into a second cluster whose workers attach to it, the copy works:
//! its jobs run, its queues read and delete, a workflow runs, its roles see what they saw.

use pageperfect_it::google::{GoogleServer, Row};
use pageperfect_it::site::{Route, Site};
use pageperfect_it::{count, table_digest, wait_for, Cluster};
use postgres::Client;
use std::collections::BTreeMap;
use std::time::Duration;

const SITE: &str = "sc-domain:example";

const BREAD: &str = "<!doctype html><html><head><title>Sourdough bread at home</title></head><body>
<nav><a href='/starter.html'>Feeding a starter</a></nav>
<main><h1>Sourdough bread at home</h1>
<p>Baking sourdough bread at home needs flour, water, salt and an active sourdough starter.</p>
<h2>Shaping and baking</h2>
<p>Shape the loaf gently, proof it overnight in the fridge and bake it in a hot dutch oven for forty minutes.</p>
</main></body></html>";

const STARTER: &str = "<!doctype html><html><head><title>Feeding a sourdough starter</title></head><body><main>
<h1>Feeding a sourdough starter</h1>
<p>Our sourdough starter feeding schedule: feed the sourdough starter every twelve hours.</p>
<p>The sourdough starter feeding ratio is one part starter, one part flour and one part water.</p>
</main></body></html>";

/// Yesterday's Search Console rows for the two pages: two topics of two queries each, at
/// several positions (so that a CTR curve can be fitted), and a stray query.
fn search_console_rows(day: &str, pages: &[String]) -> Vec<Row> {
    let queries = [
        ("feeding sourdough starter schedule", 200, 9.0, 4),
        ("sourdough starter feeding ratio", 150, 7.5, 6),
        ("bake sourdough bread dutch oven", 100, 4.0, 9),
        ("sourdough bread dutch oven baking", 90, 4.2, 8),
        ("gluten free pancakes", 20, 30.0, 0),
    ];
    pages
        .iter()
        .flat_map(|page| {
            queries.iter().map(move |(query, impressions, position, clicks)| Row {
                date: day.to_string(),
                page: page.clone(),
                query: query.to_string(),
                clicks: *clicks,
                impressions: *impressions,
                position: *position,
            })
        })
        .collect()
}

/// Every table and sequence that pg_dump keeps of the extension (`extconfig`), by name.
fn kept_relations(client: &mut Client) -> Vec<(String, bool)> {
    client
        .query(
            "SELECT c.oid::regclass::text, c.relkind = 'S'
               FROM pg_extension e, unnest(e.extconfig) AS r (oid) JOIN pg_class c ON c.oid = r.oid
              WHERE e.extname = 'pageperfect' ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// What each kept table holds: its row count and a digest of its rows in a fixed order.
fn fingerprints(client: &mut Client) -> BTreeMap<String, String> {
    kept_relations(client)
        .into_iter()
        .filter(|(_, is_sequence)| !is_sequence)
        .map(|(table, _)| {
            let digest = table_digest(client, &table);
            (table, digest)
        })
        .collect()
}

/// The identity columns of the kept tables whose sequence would hand out an id that is already
/// taken. (A sequence is not read in a snapshot: pg_dump stores where it stood when it read it,
/// at or past the ids of the rows it dumped.)
fn sequences_behind_their_ids(client: &mut Client) -> Vec<String> {
    let columns: Vec<(String, String, String)> = client
        .query(
            "SELECT c.oid::regclass::text, a.attname::text, pg_get_serial_sequence(c.oid::regclass::text, a.attname)
               FROM pg_extension e, unnest(e.extconfig) AS r (oid) JOIN pg_class c ON c.oid = r.oid
               JOIN pg_attribute a ON a.attrelid = c.oid AND a.attidentity <> ''
              WHERE e.extname = 'pageperfect'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(columns.len(), 19, "every identity column: {columns:?}");
    columns
        .into_iter()
        .filter(|(table, column, sequence)| {
            let sql = format!(
                "SELECT CASE WHEN s.is_called THEN s.last_value >= m.max_id ELSE s.last_value > m.max_id END
                   FROM {sequence} s, (SELECT coalesce(max({column}), 0) AS max_id FROM {table}) m"
            );
            !client.query_one(&sql, &[]).unwrap().get::<_, bool>(0)
        })
        .map(|(table, column, _)| format!("{table}.{column}"))
        .collect()
}

/// What the dashboard and the API read, as text: the jobs and their runs, the dead letters, each
/// workflow, the queues, the insights of each page, and each job's next ticks from a fixed time.
fn dashboard(client: &mut Client) -> Vec<String> {
    let queries = [
        "SELECT jobid, job_name, schedule, command, active, last_run, last_status FROM pageperfect.manage_cron_jobs()",
        "SELECT j.jobname, r.* FROM pageperfect.job j, pageperfect.job_runs(j.jobname, 50) r",
        "SELECT * FROM pageperfect.list_dead_letters(true, 100)",
        "SELECT j.id, pageperfect.workflow_detail(j.id) FROM pageperfect.jobs j",
        "SELECT * FROM pageperfect.list_queues()",
        // The score, not its freshness part, which is measured from now.
        "SELECT p.url, (pageperfect.content_score(p.url)).score FROM pageperfect.pages p",
        "SELECT p.url, s.* FROM pageperfect.pages p, pageperfect.link_suggestions(p.url) s",
        "SELECT * FROM pageperfect.cannibalization('sc-domain:example')",
        "SELECT j.jobid, pageperfect.next_runs(j.schedule, '2030-01-01 00:00:00+00', 3, j.timezone) FROM pageperfect.job j",
        "SELECT pageperfect.verify_cron_secret('deploy-hook', 'a-long-random-token')",
        "SELECT pageperfect.expected_ctr(3)",
    ];
    queries
        .iter()
        .map(|q| {
            let sql = format!("SELECT coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '') FROM ({q}) t");
            let text: String = client.query_one(&sql, &[]).unwrap_or_else(|e| panic!("{q}: {e}")).get(0);
            format!("{q}\n{text}")
        })
        .collect()
}

/// Waits until no workflow and no Search Console job is still running.
fn wait_for_jobs(client: &mut Client) {
    wait_for(Duration::from_secs(90), "every job to end", || {
        (count(client, "SELECT count(*) FROM pageperfect.jobs WHERE status NOT IN ('completed', 'dead')") == 0).then_some(())
    });
}

/// Makes every kind of data through the SQL API, as the superuser and as role alice.
fn fill(client: &mut Client, site: &Site, google: &GoogleServer) {
    let (bread, starter) = (site.url("/bread.html"), site.url("/starter.html"));
    let day: String = client.query_one("SELECT (current_date - 1)::text", &[]).unwrap().get(0);
    google.add_site(SITE, search_console_rows(&day, &[bread.clone(), starter.clone()]));
    client
        .batch_execute(
            "CREATE ROLE alice LOGIN IN ROLE pageperfect_user;
             -- Cron: a job that ticks every second, a yearly one with a policy, alice's own, a secret.
             SELECT cron.schedule('tick', '1 seconds', 'SELECT 1');
             SELECT cron.schedule('yearly', '0 0 1 1 *', 'SELECT 2');
             SELECT pageperfect.alter_job_policy('yearly', timeout => '1 minute', max_attempts => 3, timezone => 'Europe/Paris');
             SELECT pageperfect.set_cron_secret('deploy-hook', 'a-long-random-token');
             -- Settings a user changed from their seeded values.
             UPDATE pageperfect.stage_config SET concurrency = 3 WHERE stage = 'gap_analysis';
             UPDATE pageperfect.parameters SET value = '45' WHERE name = 'events_retention_days';
             -- Queues: sent, read, archived, and moved to a dead-letter queue after one read.
             SELECT pageperfect.create_queue('emails');
             SELECT pageperfect.create_queue('emails_dlq');
             SELECT pageperfect.set_dead_letter('emails', 1, 'emails_dlq');
             SELECT pageperfect.send_batch('emails', array_fill('{\"to\": \"reader@example.com\"}'::jsonb, ARRAY[25]));
             SELECT pageperfect.archive('emails', msg_id) FROM pageperfect.read('emails', 0, 3);
             SELECT count(*) FROM pageperfect.read('emails', 0, 2);
             SELECT count(*) FROM pageperfect.read('emails', 30, 2);
             SELECT pageperfect.pause_queue('emails_dlq');
             SET ROLE alice;
             SELECT cron.schedule('alice-yearly', '0 0 1 1 *', 'SELECT 3');
             SELECT pageperfect.create_queue('alice_q');
             SELECT pageperfect.send('alice_q', '{\"mine\": true}');
             RESET ROLE;",
        )
        .unwrap();
    // Search Console: the property's owner, the service account, a night's ingestion, a fit.
    client.execute("INSERT INTO pageperfect.gsc_site_owners (site, owner) VALUES ($1, 'postgres')", &[&SITE]).unwrap();
    client.query_one("SELECT pageperfect.set_gsc_credentials($1)", &[&google.service_account_json()]).unwrap();
    client.query_one("SELECT pageperfect.ingest_gsc($1::text::date, ARRAY[$2])", &[&day, &SITE]).unwrap();
    wait_for_jobs(client);
    client.query_one("SELECT * FROM pageperfect.recalibrate_ctr(90)", &[]).unwrap();
    // Workflows: two pages, and one the site does not have (its crawl fails for good).
    for url in [&bread, &starter, &site.url("/missing.html")] {
        client.query_one("SELECT pageperfect.run_workflow($1)", &[url]).unwrap();
    }
    // A durable HTTP request and its response.
    client.query_one("SELECT net.http_get($1)", &[&site.url("/ping")]).unwrap();
    wait_for_jobs(client);
    wait_for(Duration::from_secs(30), "the HTTP response", || {
        (count(client, "SELECT count(*) FROM pageperfect.http_responses") == 1).then_some(())
    });
    // Monitoring: the dead workflow opens an alert; metrics, health, sweeper and cleanup log.
    client
        .batch_execute(
            "SELECT pageperfect.trigger_monitoring();
             SELECT pageperfect.trigger_metrics_collection();
             SELECT pageperfect.trigger_health_checks();
             SELECT pageperfect.trigger_sweeper();
             SELECT pageperfect.trigger_cleanup();",
        )
        .unwrap();
}

#[test]
fn a_dump_restores_every_table_row_for_row_and_the_copy_works() {
    let site = Site::start(vec![
        ("/bread.html", Route::html(BREAD)),
        ("/starter.html", Route::html(STARTER)),
        ("/ping", Route::status(200, "text/plain", "pong")),
    ]);
    let google = GoogleServer::start();
    let api = format!("pageperfect.gsc_api_url = '{}'", google.api_base());
    let settings = ["pageperfect.crawl_allow_private = on", api.as_str()];
    let (source, mut client) = Cluster::with_extension("backup-source", &settings);
    fill(&mut client, &site, &google);

    // Every table pg_dump keeps has rows to lose, and every table of the extension is kept or
    // left out on purpose (sql/backup.sql refuses to install otherwise).
    let kept = kept_relations(&mut client);
    let empty: Vec<&String> = kept
        .iter()
        .filter(|(relation, is_sequence)| !is_sequence && count(&mut client, &format!("SELECT count(*) FROM {relation}")) == 0)
        .map(|(relation, _)| relation)
        .collect();
    assert!(empty.is_empty(), "tables the test left empty: {empty:?}");
    assert_eq!(kept.iter().filter(|(_, is_sequence)| !is_sequence).count(), 36);
    assert_eq!(kept.iter().filter(|(_, is_sequence)| *is_sequence).count(), 19, "every identity sequence: {kept:?}");
    assert_eq!(sequences_behind_their_ids(&mut client), Vec::<String>::new());

    // Three dumps of one snapshot, and what that snapshot holds, while the cluster goes on.
    let dir = source.dir().to_path_buf();
    let (custom, plain, data_only) = (dir.join("dump.custom"), dir.join("dump.sql"), dir.join("data-only.sql"));
    let mut snapshot = source.connect();
    snapshot.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ").unwrap();
    let exported: String = snapshot.query_one("SELECT pg_export_snapshot()", &[]).unwrap().get(0);
    let path = |p: &std::path::Path| p.to_str().unwrap().to_string();
    source.client_program("pg_dump", &["-Fc", "--snapshot", &exported, "-f", &path(&custom), "postgres"]);
    source.client_program("pg_dump", &["--snapshot", &exported, "-f", &path(&plain), "postgres"]);
    source.client_program("pg_dump", &["--data-only", "--snapshot", &exported, "-f", &path(&data_only), "postgres"]);
    let dumped = fingerprints(&mut snapshot);
    let dumped_dashboard = dashboard(&mut snapshot);
    snapshot.batch_execute("COMMIT").unwrap();

    // Restored three ways into databases of the same cluster, none of them the workers'.
    for database in ["copy_custom", "copy_plain", "copy_data"] {
        client.batch_execute(&format!("CREATE DATABASE {database}")).unwrap();
    }
    source.client_program("pg_restore", &["-d", "copy_custom", &path(&custom)]);
    source.client_program("psql", &["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", "copy_plain", "-f", &path(&plain)]);
    source.connect_to("copy_data", "postgres").batch_execute("CREATE EXTENSION pageperfect").unwrap();
    source.client_program("psql", &["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", "copy_data", "-f", &path(&data_only)]);
    let mut copies: Vec<(&str, Client)> =
        ["copy_custom", "copy_plain", "copy_data"].into_iter().map(|db| (db, source.connect_to(db, "postgres"))).collect();
    for (database, copy) in &mut copies {
        let restored = fingerprints(copy);
        for (relation, value) in &dumped {
            assert_eq!(restored.get(relation), Some(value), "{relation} in {database}");
        }
        assert_eq!(restored.len(), dumped.len(), "{database}");
        assert_eq!(sequences_behind_their_ids(copy), Vec::<String>::new(), "{database}: restored sequences");
        for (restored, dumped) in dashboard(copy).iter().zip(&dumped_dashboard) {
            assert_eq!(restored, dumped, "{database}: what the dashboard shows");
        }
    }

    // The copies run nothing: their jobs, queues, workflows and requests stay as restored, while
    // the source's every-second job goes on, each tick run once.
    let source_runs = count(&mut client, "SELECT count(*) FROM pageperfect.job_run_details");
    std::thread::sleep(Duration::from_secs(3));
    for (database, copy) in &mut copies {
        assert_eq!(&fingerprints(copy), &dumped, "{database} changed by itself");
    }
    assert!(count(&mut client, "SELECT count(*) FROM pageperfect.job_run_details") > source_runs, "the source's jobs go on");
    assert_eq!(
        count(&mut client, "SELECT count(*) FROM (SELECT due_time FROM pageperfect.job_run_details GROUP BY jobid, due_time HAVING count(*) > 1) twice"),
        0,
        "no tick ran twice"
    );

    // New rows in a copy get ids after the restored ones.
    let copy = &mut copies[0].1;
    let max_id = count(copy, "SELECT max(msg_id) FROM pageperfect.queue_messages");
    assert!(count(copy, "SELECT pageperfect.send('emails', '{}')") > max_id);
    let max_job = count(copy, "SELECT max(jobid) FROM pageperfect.job");
    assert!(count(copy, "SELECT cron.schedule('new-one', '0 0 1 1 *', 'SELECT 4')") > max_job);

    // Restored in one transaction into the database another cluster's workers attach to (roles
    // first, as pg_dumpall --globals-only would bring them): it works.
    let target = Cluster::start("backup-target", true, &[&settings[..], &["pageperfect.database_name = 'restored'"]].concat());
    let mut target_admin = target.connect();
    target_admin.batch_execute("CREATE ROLE pageperfect_user NOLOGIN; CREATE ROLE alice LOGIN IN ROLE pageperfect_user").unwrap();
    target_admin.batch_execute("CREATE DATABASE restored").unwrap();
    target.client_program("pg_restore", &["--single-transaction", "-d", "restored", &path(&custom)]);
    let mut restored = target.connect_to("restored", "postgres");
    let version = "SELECT extversion FROM pg_extension WHERE extname = 'pageperfect'";
    assert_eq!(restored.query_one(version, &[]).unwrap().get::<_, String>(0), client.query_one(version, &[]).unwrap().get::<_, String>(0));
    let tick_runs = "SELECT count(*) FROM pageperfect.job_run_details d JOIN pageperfect.job j USING (jobid) WHERE j.jobname = 'tick' AND d.status = 'succeeded'";
    let restored_runs = count(&mut restored, tick_runs);
    wait_for(Duration::from_secs(20), "the restored every-second job to run", || {
        (count(&mut restored, tick_runs) >= restored_runs + 2).then_some(())
    });
    // Its queue reads the restored messages and deletes them.
    let read: Vec<i64> = restored
        .query("SELECT msg_id FROM pageperfect.read('emails', 30, 5)", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(!read.is_empty());
    for id in &read {
        assert!(restored.query_one("SELECT pageperfect.delete('emails', $1::bigint)", &[id]).unwrap().get::<_, bool>(0));
    }
    // A workflow runs again on the restored page (its Search Console rows came along).
    let job: String = restored
        .query_one("SELECT pageperfect.run_workflow($1, force_update => true)::text", &[&site.url("/bread.html")])
        .unwrap()
        .get(0);
    let status = wait_for(Duration::from_secs(60), "the restored database's workflow", || {
        let status: String = restored.query_one("SELECT status FROM pageperfect.jobs WHERE id = $1::text::uuid", &[&job]).unwrap().get(0);
        matches!(status.as_str(), "completed" | "dead").then_some(status)
    });
    assert_eq!(status, "completed");
    // Alice sees her own job and queue there, and none of the superuser's.
    let mut alice = target.connect_to("restored", "alice");
    assert_eq!(alice.query_one("SELECT string_agg(jobname, ',') FROM cron.job", &[]).unwrap().get::<_, String>(0), "alice-yearly");
    assert_eq!(count(&mut alice, "SELECT count(*) FROM pageperfect.read('alice_q', 30, 10)"), 1);
    assert!(alice.query_one("SELECT pageperfect.read('emails', 30, 1)", &[]).is_err(), "another role's queue");
}

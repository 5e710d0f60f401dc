//! Search Console ingestion end to end: a preloaded cluster fetches a day of rows from a
//! loopback stand-in for Google (tests/src/google.rs) that checks the service account's RS256
//! signature at its token endpoint and serves Search Analytics pages of 25,000 rows, and answers
//! with an expired token, a 429 and a 500 on the way. A week of nightly runs against a Google that
//! finalises a day three days after it ends leaves every final day complete. Then the nine
//! default cron jobs of initialize_scheduler() run on a 5-second schedule and succeed.

use pageperfect_it::google::{generated_rows, Fault, GoogleServer, TokenOutcome, CLIENT_EMAIL};
use pageperfect_it::{count, db_message, wait_for, Cluster};
use postgres::Client;
use std::time::Duration;

const SHOP: &str = "https://shop.example/";
const BLOG: &str = "sc-domain:blog.example";
const PENDING: &str = "https://pending.example/";

fn yesterday(client: &mut Client) -> String {
    client.query_one("SELECT (current_date - 1)::text", &[]).unwrap().get(0)
}

/// Runs `call` (an ingest_gsc(…) call giving its jsonb as text), waits up to `within` for the job
/// it queued to end, and returns the job's status and result.
fn run_ingestion(
    client: &mut Client,
    within: Duration,
    call: &str,
    params: &[&(dyn postgres::types::ToSql + Sync)],
) -> (String, serde_json::Value) {
    let queued: String = client.query_one(call, params).unwrap().get(0);
    let queued: serde_json::Value = serde_json::from_str(&queued).unwrap();
    let job = queued["job_id"].as_str().unwrap().to_string();
    wait_for(within, "the ingest_gsc job to end", || {
        let row = client
            .query_one("SELECT status, coalesce(result, '{}')::text FROM pageperfect.jobs WHERE id = $1::text::uuid", &[&job])
            .unwrap();
        let status: String = row.get(0);
        let result: String = row.get(1);
        matches!(status.as_str(), "completed" | "dead").then(|| (status, serde_json::from_str(&result).unwrap()))
    })
}

/// Runs ingest_gsc(for_date, sites) and waits for it (see `run_ingestion`).
fn ingest(client: &mut Client, for_date: &str, sites: Option<&[&str]>) -> (String, serde_json::Value) {
    run_ingestion(client, Duration::from_secs(90), "SELECT pageperfect.ingest_gsc($1::text::date, $2)::text", &[&for_date, &sites.map(|s| s.to_vec())])
}

/// A fingerprint of a site's stored rows, ingestion time left out.
fn fingerprint(client: &mut Client, site: &str) -> String {
    client
        .query_one(
            "SELECT md5(string_agg(concat_ws('|', date, page, query, clicks, impressions, ctr, position), ',' ORDER BY page, query))
               FROM pageperfect.gsc_page_query_daily WHERE site = $1",
            &[&site],
        )
        .unwrap()
        .get(0)
}

#[test]
fn a_day_of_search_console_rows_is_ingested_through_expired_tokens_429s_and_500s() {
    let google = GoogleServer::start();
    let api_base = format!("pageperfect.gsc_api_url = '{}'", google.api_base());
    let (_cluster, mut client) = Cluster::with_extension("gsc", &[&api_base, "pageperfect.pipeline_workers = 2"]);
    let day = yesterday(&mut client);
    google.add_site(SHOP, generated_rows(SHOP, &day, 60_000));
    google.add_site(BLOG, generated_rows(BLOG, &day, 300));
    google.add_unverified_site(PENDING);

    // Before credentials are stored, and with bad arguments, nothing is queued.
    let refused = |client: &mut Client, sql: &str| db_message(client.query_one(sql, &[]).unwrap_err());
    assert_eq!(refused(&mut client, "SELECT pageperfect.ingest_gsc()"), "no Search Console credentials are stored");
    let not_a_key = refused(&mut client, r#"SELECT pageperfect.set_gsc_credentials('{"type": "authorized_user", "client_id": "x"}')"#);
    assert!(not_a_key.contains("\"authorized_user\" credentials file, not a service-account key"), "{not_a_key}");
    let email: String = client
        .query_one("SELECT pageperfect.set_gsc_credentials($1)", &[&google.service_account_json()])
        .unwrap()
        .get(0);
    assert_eq!(email, CLIENT_EMAIL);
    assert!(refused(&mut client, "SELECT pageperfect.ingest_gsc(current_date)").starts_with("the days to ingest must be before today"));
    assert!(refused(&mut client, "SELECT pageperfect.ingest_gsc(sites => '{}')").starts_with("sites must be NULL"));
    assert_eq!(count(&mut client, "SELECT count(*) FROM pageperfect.jobs"), 0);

    // Every readable property (the unverified one is not), through three faults.
    google.fail_next(vec![Fault::ExpireToken, Fault::TooManyRequests { retry_after_seconds: 1 }, Fault::ServerError]);
    let (status, result) = ingest(&mut client, &day, None);
    assert_eq!(status, "completed", "{result}");
    assert_eq!(result["rows_upserted"], 60_300, "{result}");
    assert_eq!(result["sites_failed"], 0, "{result}");
    assert_eq!(count(&mut client, "SELECT count(*) FROM pageperfect.gsc_page_query_daily WHERE site = 'https://shop.example/'"), 60_000);
    assert_eq!(count(&mut client, "SELECT count(*) FROM pageperfect.gsc_page_query_daily WHERE site = 'sc-domain:blog.example'"), 300);
    let expected_clicks: u64 = generated_rows(SHOP, &day, 60_000).iter().map(|r| r.clicks).sum();
    assert_eq!(
        count(&mut client, "SELECT sum(clicks)::bigint FROM pageperfect.gsc_page_query_daily WHERE site = 'https://shop.example/'") as u64,
        expected_clicks
    );
    assert_eq!(count(&mut client, "SELECT count(*) FROM pageperfect.gsc_keywords WHERE site = 'https://shop.example/'"), 60_000);
    assert_eq!(
        client
            .query_one("SELECT string_agg(site || ' ' || status || ' ' || rows_upserted, ', ' ORDER BY site) FROM pageperfect.gsc_ingestions", &[])
            .unwrap()
            .get::<_, String>(0),
        "https://shop.example/ succeeded 60000, sc-domain:blog.example succeeded 300"
    );

    // What went over the wire: the shop's first page was asked five times (expired token, new
    // token, 429, after the Retry-After a 500, then the answer), then the next pages.
    let shop: Vec<_> = google.requests().into_iter().filter(|r| r.site.as_deref() == Some(SHOP)).collect();
    let asked: Vec<(Option<u64>, u16)> = shop.iter().map(|r| (r.start_row, r.status)).collect();
    assert_eq!(
        asked,
        [(Some(0), 401), (Some(0), 429), (Some(0), 500), (Some(0), 200), (Some(25_000), 200), (Some(50_000), 200)]
    );
    assert!(shop.iter().all(|r| r.row_limit == Some(25_000)));
    assert_ne!(shop[0].token, shop[1].token, "the request after the 401 carries a new token");
    assert!(shop[2].at.duration_since(shop[1].at) >= Duration::from_secs(1), "the retry honoured Retry-After: 1");
    let issued = google.token_requests().iter().filter(|t| matches!(t.outcome, TokenOutcome::Issued { .. })).count();
    assert_eq!(issued, 2, "one token at the start and one after the expiry");

    // The same day again changes nothing.
    let before = fingerprint(&mut client, SHOP);
    let (status, again) = ingest(&mut client, &day, Some(&[SHOP]));
    assert_eq!((status.as_str(), &again["rows_upserted"]), ("completed", &serde_json::json!(60_000)));
    assert_eq!(fingerprint(&mut client, SHOP), before);
    assert_eq!(count(&mut client, "SELECT count(*) FROM pageperfect.gsc_page_query_daily"), 60_300);

    // A site the account may not read fails alone; the others still load.
    let (status, mixed) = ingest(&mut client, &day, Some(&[PENDING, BLOG]));
    assert_eq!(status, "completed", "{mixed}");
    assert_eq!(mixed["sites_failed"], 1, "{mixed}");
    let failure: String = client
        .query_one("SELECT error FROM pageperfect.gsc_ingestions WHERE site = 'https://pending.example/' AND status = 'failed'", &[])
        .unwrap()
        .get(0);
    assert!(failure.contains("403") && failure.contains("sufficient permission"), "{failure}");
    assert_eq!(count(&mut client, "SELECT count(*) FROM pageperfect.gsc_ingestions WHERE site = 'sc-domain:blog.example' AND status = 'succeeded'"), 2);

    // A key Google does not know: the job is dead at once with Google's reason, nothing written.
    let stranger = google.service_account_json().replace(CLIENT_EMAIL, "someone-else@elsewhere.iam.gserviceaccount.com");
    client.execute("SELECT pageperfect.set_gsc_credentials($1)", &[&stranger]).unwrap();
    let (status, _) = ingest(&mut client, &day, Some(&[BLOG]));
    assert_eq!(status, "dead");
    let reason: String = client
        .query_one("SELECT error FROM pageperfect.dead_letters WHERE stage = 'ingest_gsc'", &[])
        .unwrap()
        .get(0);
    assert!(reason.starts_with("Google refused the token request: invalid_grant"), "{reason}");
    assert_eq!(count(&mut client, "SELECT count(*) FROM pageperfect.gsc_ingestions"), 5);
}

#[test]
fn the_nine_default_jobs_run_on_their_schedules_and_succeed() {
    let google = GoogleServer::start();
    let api_base = format!("pageperfect.gsc_api_url = '{}'", google.api_base());
    let (_cluster, mut client) = Cluster::with_extension("default_jobs", &[&api_base]);
    let day = yesterday(&mut client);
    google.add_site(BLOG, generated_rows(BLOG, &day, 500));
    client.execute("SELECT pageperfect.set_gsc_credentials($1)", &[&google.service_account_json()]).unwrap();
    // Clicks at several positions, so that recalibrate_ctr has something to fit.
    client
        .batch_execute(
            "INSERT INTO pageperfect.gsc_page_query_daily (date, site, page, query, clicks, impressions, position)
             SELECT current_date - 2, 'sc-domain:blog.example', 'https://blog.example/', 'q' || p, 100 / p, 1000, p
               FROM generate_series(1, 10) p",
        )
        .unwrap();

    let created = count(&mut client, "SELECT count(*) FROM pageperfect.initialize_scheduler() WHERE action = 'created'");
    assert_eq!(created, 9);
    client.batch_execute("SELECT pageperfect.alter_job(jobid, schedule => '5 seconds') FROM pageperfect.job").unwrap();
    let succeeded_jobs = wait_for(Duration::from_secs(60), "every default job to succeed once", || {
        let row = client
            .query_one(
                "SELECT count(DISTINCT d.jobid),
                        string_agg(DISTINCT j.jobname || ': ' || d.return_message, '; ') FILTER (WHERE d.status = 'failed')
                   FROM pageperfect.job_run_details d JOIN pageperfect.job j USING (jobid)
                  WHERE d.status IN ('succeeded', 'failed')",
                &[],
            )
            .unwrap();
        let failures: Option<String> = row.get(1);
        assert!(failures.is_none(), "a default job failed: {failures:?}");
        let succeeded: i64 = row.get(0);
        (succeeded == 9).then_some(succeeded)
    });
    assert_eq!(succeeded_jobs, 9);
    client.batch_execute("SELECT pageperfect.alter_job(jobid, active => false) FROM pageperfect.job").unwrap();
    // Their effects: an ingestion, a fit, metrics, health checks and logs.
    wait_for(Duration::from_secs(30), "the scheduled ingestion to land", || {
        (count(&mut client, "SELECT count(*) FROM pageperfect.gsc_ingestions WHERE status = 'succeeded'") > 0).then_some(())
    });
    for (table, at_least) in [("ctr_fits", 1), ("metrics_data", 1), ("health_checks", 5), ("sweeper_logs", 1), ("cleanup_logs", 9)] {
        let rows = count(&mut client, &format!("SELECT count(*) FROM pageperfect.{table}"));
        assert!(rows >= at_least, "{table} has {rows} rows");
    }
}

/// Runs ingest_gsc(until => until) (the nightly call, on the stand-in's clock), waits for it and
/// returns the job's status.
fn ingest_until(client: &mut Client, until: &str) -> String {
    run_ingestion(client, Duration::from_secs(60), "SELECT pageperfect.ingest_gsc(until => $1::text::date)::text", &[&until]).0
}

#[test]
fn a_week_of_nightly_runs_against_googles_lag_ends_with_every_final_day_complete() {
    let google = GoogleServer::start();
    let api_base = format!("pageperfect.gsc_api_url = '{}'", google.api_base());
    let (_cluster, mut client) = Cluster::with_extension("gsc_lag", &[&api_base]);
    client.query_one("SELECT pageperfect.set_gsc_credentials($1)", &[&google.service_account_json()]).unwrap();
    // Twelve days of data, D0 to D11 (ending yesterday); Google finalises a day three days after it.
    let days: Vec<String> = client
        .query("SELECT (current_date - 12 + n)::text FROM generate_series(0, 11) n ORDER BY n", &[])
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    for day in &days {
        google.add_site(SHOP, generated_rows(SHOP, day, 40));
    }
    let full = |day: &str| generated_rows(SHOP, day, 40).iter().map(|row| row.impressions as i64).sum::<i64>();
    // Seven nights: on night n the stand-in's today is D5 + n and the run asks up to the day before.
    for night in 0..7 {
        let today = &days[5 + night];
        google.set_clock(today, 3);
        let yesterday = &days[4 + night];
        assert_eq!(ingest_until(&mut client, yesterday), "completed", "night {night}");
    }
    // The first night was the site's first run: it went back the whole backfill.
    let first_from: String = client
        .query_one("SELECT from_date::text FROM pageperfect.gsc_ingestions ORDER BY id LIMIT 1", &[])
        .unwrap()
        .get(0);
    let backfill_from: String = client.query_one("SELECT ($1::text::date - 485)::text", &[&days[4]]).unwrap().get(0);
    assert_eq!(first_from, backfill_from);
    // On the last night today is D11: D0 to D8 are final and complete, D9 and D10 fresh.
    for (i, day) in days.iter().enumerate().take(11) {
        let row = client
            .query_one(
                "SELECT coalesce((SELECT sum(impressions) FROM pageperfect.gsc_page_query_daily WHERE site = $1 AND date = $2::text::date), 0)::bigint,
                        (SELECT final FROM pageperfect.gsc_days WHERE site = $1 AND date = $2::text::date)",
                &[&SHOP, day],
            )
            .unwrap();
        let (stored, final_): (i64, Option<bool>) = (row.get(0), row.get(1));
        if i <= 8 {
            assert_eq!((stored, final_), (full(day), Some(true)), "{day} (D{i}) is final and complete");
        } else {
            let partial = generated_rows(SHOP, day, 40).iter().map(|row| (row.impressions / 2) as i64).sum::<i64>();
            assert_eq!((stored, final_), (partial, Some(false)), "{day} (D{i}) is fresh: Google's numbers so far");
        }
    }
}

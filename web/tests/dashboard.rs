//! The dashboard in a real browser (headless Chromium over the DevTools protocol) against a
//! cluster with cron jobs and runs, queue traffic with backlog samples, a dead letter and a
//! finished workflow: sign in with the token, read the rendered page, click "Run now" and see
//! the run, retry the dead letter, start a workflow, and save a screenshot
//! (`target/tmp/dashboard.png`). Forms without the session's CSRF token are refused.

mod common;

use common::browser::Browser;
use common::*;
use pageperfect_it::count;
use pageperfect_it::site::{Route, Site};
use std::path::Path;

const ESPRESSO: &str = "<html><head><title>Espresso at home</title></head><body><nav>Home | Guides</nav><main>\
<h1>Espresso at home</h1><p>Espresso is coffee brewed by forcing hot water through finely ground beans.</p>\
<h2>Grind size</h2><p>Use a fine grind, finer than for drip coffee, and adjust it until a shot takes 25 to 30 seconds.</p>\
<h2>Dose and ratio</h2><p>Most recipes use 18 grams of coffee for 36 grams of espresso, a 1:2 ratio.</p>\
</main><footer>Brew Better</footer></body></html>";

#[test]
fn the_dashboard_shows_the_scheduler_and_runs_a_job_from_a_click() {
    let site = Site::start(vec![("/robots.txt", Route::status(404, "text/plain", "")), ("/espresso.html", Route::html(ESPRESSO))]);
    let page = site.url("/espresso.html");
    let (cluster, mut admin) = cluster_with_tenants("web-dashboard", &["pageperfect.crawl_allow_private = on"]);
    admin
        .execute(
            "INSERT INTO pageperfect.gsc_page_query_daily (date, site, page, query, clicks, impressions, position)
             SELECT current_date - d, 'sc-domain:example', $1, q, 2, imp, pos
               FROM generate_series(1, 5) d,
                    (VALUES ('espresso grind size', 200, 6.0), ('grind size for espresso', 150, 7.5),
                            ('milk steaming temperature espresso', 120, 9.0), ('espresso milk steaming temperature', 90, 11.0)) v (q, imp, pos)",
            &[&page],
        )
        .unwrap();
    admin.batch_execute("INSERT INTO pageperfect.gsc_site_owners (site, owner) VALUES ('sc-domain:example', 'alice')").unwrap();
    let mut alice = cluster.connect_to("postgres", "alice");
    let mut mallory = cluster.connect_to("postgres", "mallory");
    mallory.batch_execute("SELECT cron.schedule('mallory-job', '0 0 1 1 *', 'SELECT 1')").unwrap();
    alice
        .batch_execute(
            "SELECT cron.schedule('alice-report', '0 0 1 1 *', 'SELECT 1');
             SELECT cron.schedule('alice-tick', '1 seconds', 'SELECT pg_sleep(0.02 * (1 + extract(second FROM now())::int % 5))');
             SELECT cron.schedule('alice-broken', '3 seconds', 'SELECT 1/0');
             SELECT pageperfect.create_queue('alice-q');
             SELECT pageperfect.send_batch('alice-q', ARRAY['{\"n\": 1}', '{\"n\": 2}', '{\"n\": 3}']::jsonb[]);",
        )
        .unwrap();
    // Backlog samples, as the default metrics job takes them every 30 minutes.
    admin.batch_execute("SELECT pageperfect.trigger_metrics_collection()").unwrap();
    alice.batch_execute("SELECT pageperfect.send_batch('alice-q', ARRAY['{}', '{}', '{}', '{}', '{}']::jsonb[])").unwrap();
    admin.batch_execute("SELECT pageperfect.trigger_metrics_collection()").unwrap();
    alice.batch_execute("SELECT pageperfect.pop('alice-q', 6)").unwrap();
    admin.batch_execute("SELECT pageperfect.trigger_metrics_collection()").unwrap();
    alice.batch_execute("SELECT pageperfect.enqueue_job('https://example.com/gone', ARRAY['test_permanent'])").unwrap();
    let workflow: String = alice.query_one("SELECT pageperfect.run_workflow($1)::text", &[&page]).unwrap().get(0);
    eventually(60, "the workflow, a dead letter and a few cron runs", || {
        let completed = count(&mut admin, &format!("SELECT count(*) FROM pageperfect.jobs WHERE id = '{workflow}' AND status = 'completed'"));
        let dead = count(&mut admin, "SELECT count(*) FROM pageperfect.dead_letters");
        let ticks = count(&mut admin, "SELECT count(*) FROM pageperfect.job_run_details WHERE status IN ('succeeded', 'failed')");
        (completed == 1 && dead == 1 && ticks >= 6).then_some(())
    });
    // The repeating jobs stop, so that no run is in progress (last status "running") when the
    // page is read.
    alice.batch_execute("SELECT pageperfect.toggle_cron_job('alice-tick', false); SELECT pageperfect.toggle_cron_job('alice-broken', false)").unwrap();
    eventually(10, "runs in progress to end", || {
        (count(&mut admin, "SELECT count(*) FROM pageperfect.job_run_details WHERE status NOT IN ('succeeded', 'failed', 'skipped', 'cancelled')") == 0).then_some(())
    });

    let server = Server::start(&cluster, "alice", "web-alice", &[]);
    let scratch = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let mut browser = Browser::launch(scratch);

    // Signing in: the token in the form.
    browser.navigate(&server.url("/"));
    assert!(browser.text().contains("Sign in"), "{}", browser.text());
    browser.eval(&format!(
        "document.querySelector('input[name=token]').value = '{ALICE_TOKEN}'; document.querySelector('form').submit(); true"
    ));
    browser.wait_until("document.querySelector('#jobs') !== null", "the dashboard after signing in");

    let text = browser.text();
    for expected in [
        "as role alice", "Workers", "scheduler", "pipeline_worker_1", "healthy", "Cron jobs", "alice-report", "never run", "alice-tick",
        "succeeded", "alice-broken", "failed", "(disabled)", "Queues", "alice-q", "Pipeline stages", "submit_crawl", "Open alerts", "Dead letters",
        "https://example.com/gone", "test_permanent: https://example.com/gone answered 404 Not Found", "Workflow", &page,
        "rewrite_draft", "completed", "Draft", "content score",
    ] {
        assert!(text.contains(expected), "the page lacks {expected:?}:\n{text}");
    }
    assert!(!text.contains("mallory-job"), "another tenant's job is shown:\n{text}");
    assert!(browser.eval("document.querySelectorAll('#jobs svg rect').length").as_i64().unwrap() >= 3, "run-duration bars");
    assert_eq!(browser.eval("document.querySelectorAll('#queues svg polyline').length").as_i64(), Some(1), "a backlog sparkline");
    assert_eq!(
        browser.eval("document.querySelector('#queues svg polyline').getAttribute('points').trim().split(' ').length").as_i64(),
        Some(3),
        "one point per backlog sample"
    );
    let screenshot = scratch.join("dashboard.png");
    browser.screenshot(&screenshot);
    assert!(std::fs::metadata(&screenshot).unwrap().len() > 10_000);
    eprintln!("screenshot: {}", screenshot.display());

    // A link cannot put words on the page: notices come from the session, not the URL.
    browser.navigate(&server.url("/?notice=Your+token+expired%3A+paste+it+at+evil.example"));
    assert_eq!(browser.eval("document.querySelector('#notice') === null"), serde_json::Value::Bool(true));
    assert!(!browser.text().contains("evil.example"), "{}", browser.text());

    // "Run now" on alice-report: the notice, then the run in the job's row.
    let click = |browser: &mut Browser, section: &str, label: &str| {
        let clicked = browser.eval(&format!(
            "(() => {{ const b = [...document.querySelectorAll('{section} button')].find(b => b.textContent === '{label}'); if (b) b.click(); return !!b; }})()"
        ));
        assert_eq!(clicked, serde_json::Value::Bool(true), "no {label} button in {section}");
    };
    click(&mut browser, "#job-alice-report", "Run now");
    browser.wait_until("document.querySelector('#notice') && /Run \\d+ of alice-report queued/.test(document.querySelector('#notice').innerText)", "the run's notice");
    eventually(30, "the manual run in alice-report's row", || {
        browser.navigate(&server.url("/"));
        let row = browser.eval("document.querySelector('#job-alice-report').innerText");
        row.as_str().unwrap().contains("succeeded").then_some(())
    });
    assert_eq!(count(&mut admin, "SELECT count(*) FROM pageperfect.job_run_details d JOIN pageperfect.job j USING (jobid) WHERE j.jobname = 'alice-report' AND d.run_reason = 'manual'"), 1);

    // Retry the dead letter; start a workflow from the form.
    click(&mut browser, "#dead-letters", "Retry");
    browser.wait_until("/Dead letter \\d+ is back in the queue/.test(document.querySelector('#notice').innerText)", "the retry's notice");
    assert_eq!(count(&mut admin, "SELECT count(*) FROM pageperfect.dead_letters WHERE retried_at IS NOT NULL"), 1);
    browser.eval("document.querySelector('#workflow input[name=url]').value = 'https://example.com/new-guide'; true");
    click(&mut browser, "#workflow", "Start workflow");
    browser.wait_until("/Workflow [0-9a-f-]+ started/.test(document.querySelector('#notice').innerText)", "the workflow's notice");
    assert!(browser.text().contains("https://example.com/new-guide"), "{}", browser.text());
    assert_eq!(count(&mut admin, "SELECT count(*) FROM pageperfect.jobs WHERE url = 'https://example.com/new-guide' AND owner = 'alice'"), 1);
    drop(browser);

    // Forms need the session and its CSRF token; signing in needs the right token.
    let client = reqwest::blocking::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let form = |url: String, body: String| client.post(url).header("content-type", "application/x-www-form-urlencoded").body(body);
    assert_eq!(form(server.url("/login"), "token=alice-web-token-wrong".into()).send().unwrap().status().as_u16(), 401);
    let login = form(server.url("/login"), format!("token={ALICE_TOKEN}")).send().unwrap();
    assert_eq!(login.status().as_u16(), 303);
    let cookie = login.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    assert!(login.headers()["set-cookie"].to_str().unwrap().contains("HttpOnly; SameSite=Strict"));
    let runs_before = count(&mut admin, "SELECT count(*) FROM pageperfect.job_run_details WHERE run_reason = 'manual'");
    let forged = form(server.url("/ui/action"), "csrf=forged&action=trigger&job=alice-report".into()).header("cookie", &cookie).send().unwrap();
    assert_eq!(forged.status().as_u16(), 403);
    let no_session = form(server.url("/ui/action"), "csrf=forged&action=trigger&job=alice-report".into()).send().unwrap();
    assert_eq!(no_session.status().as_u16(), 401);
    assert_eq!(count(&mut admin, "SELECT count(*) FROM pageperfect.job_run_details WHERE run_reason = 'manual'"), runs_before);
    // The same form with the session's own CSRF token (from the page) is taken; signing out
    // ends the session.
    let html = client.get(server.url("/")).header("cookie", &cookie).send().unwrap().text().unwrap();
    let csrf = html.split("name=csrf value=\"").nth(1).and_then(|rest| rest.split('"').next()).expect("a CSRF field").to_string();
    let taken = form(server.url("/ui/action"), format!("csrf={csrf}&action=trigger&job=alice-report")).header("cookie", &cookie).send().unwrap();
    assert_eq!(taken.status().as_u16(), 303);
    assert_eq!(taken.headers()["location"], "/");
    // Its notice shows on the next page, once.
    let page = |client: &reqwest::blocking::Client| client.get(server.url("/")).header("cookie", &cookie).send().unwrap().text().unwrap();
    assert!(page(&client).contains("of alice-report queued."));
    assert!(!page(&client).contains("id=notice"));
    assert_eq!(count(&mut admin, "SELECT count(*) FROM pageperfect.job_run_details WHERE run_reason = 'manual'"), runs_before + 1);
    assert_eq!(form(server.url("/logout"), format!("csrf={csrf}")).header("cookie", &cookie).send().unwrap().status().as_u16(), 303);
    let after = client.get(server.url("/")).header("cookie", &cookie).send().unwrap().text().unwrap();
    assert!(after.contains("Sign in") && !after.contains("id=jobs"), "{after}");
}

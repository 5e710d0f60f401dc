//! The PagePerfect pipeline end to end against a preloaded cluster and a loopback site, with the
//! local embedder and drafter: a page missing a topic its queries ask for gets that cluster as a
//! gap and a draft, a page that covers it does not; unchanged pages are reused unless forced;
//! skipped steps are skipped; and pages that cannot be crawled end in the dead letters with the
//! reason (404, robots.txt, not HTML, too big, a private address).

use pageperfect_it::site::{Route, Site};
use pageperfect_it::{count, wait_for, Cluster};
use postgres::Client;
use std::time::Duration;

const SOURDOUGH: &str = "<!doctype html><html><head><title>Sourdough bread at home</title></head><body>
<nav><a href='/'>Home</a> <a href='/about'>About us and our story</a></nav>
<main><h1>Sourdough bread at home</h1>
<p>Baking sourdough bread at home needs flour, water, salt and an active sourdough starter.</p>
<h2>Mixing the dough</h2>
<p>Mix the flour and water first and let the dough rest for an hour before adding the salt and the starter.</p>
<h2>Shaping and baking</h2>
<p>Shape the loaf gently, proof it overnight in the fridge and bake it in a hot dutch oven for forty minutes.</p>
</main><footer>Copyright 2026 the sourdough people</footer></body></html>";

const STARTER: &str = "<!doctype html><html><head><title>Feeding a sourdough starter</title></head><body><main>
<h1>Feeding a sourdough starter</h1>
<p>Our sourdough starter feeding schedule: feed the sourdough starter every twelve hours.</p>
<p>The sourdough starter feeding ratio is one part starter, one part flour and one part water.</p>
<h2>Baking sourdough bread in a dutch oven</h2>
<p>Bake sourdough bread in a dutch oven: sourdough bread dutch oven baking gives a crisp crust.</p>
</main></body></html>";

/// Search Console rows for `page`: a starter-feeding topic and a dutch-oven topic (two queries
/// each, so each forms a cluster), and one stray query (noise).
fn load_queries(client: &mut Client, page: &str) {
    client
        .execute(
            "INSERT INTO pageperfect.gsc_page_query_daily (date, site, page, query, clicks, impressions, position)
             SELECT current_date - d, 'sc-domain:example', $1, q, 2, imp, pos
               FROM generate_series(1, 5) d,
                    (VALUES ('feeding sourdough starter schedule', 200, 9.0), ('sourdough starter feeding ratio', 150, 7.5),
                            ('bake sourdough bread dutch oven', 100, 4.0), ('sourdough bread dutch oven baking', 90, 4.2),
                            ('gluten free pancakes', 20, 30.0)) v (q, imp, pos)",
            &[&page],
        )
        .unwrap();
}

fn run_workflow(client: &mut Client, url: &str, skip_steps: &[&str], force_update: bool) -> String {
    client
        .query_one("SELECT pageperfect.run_workflow($1, $2, $3)::text", &[&url, &skip_steps, &force_update])
        .unwrap()
        .get(0)
}

/// Waits for the job to end and returns its status.
fn finished(client: &mut Client, job: &str) -> String {
    wait_for(Duration::from_secs(30), &format!("job {job} to end"), || {
        let status: String = client.query_one("SELECT status FROM pageperfect.jobs WHERE id = $1::text::uuid", &[&job]).unwrap().get(0);
        matches!(status.as_str(), "completed" | "dead").then_some(status)
    })
}

/// The queries of each recommendation for the page at `url`, best first.
fn recommendations(client: &mut Client, url: &str) -> Vec<Vec<String>> {
    client
        .query(
            "SELECT r.queries FROM pageperfect.rewrite_recommendations r JOIN pageperfect.pages p ON p.id = r.page_id
              WHERE p.url = $1 ORDER BY r.rank",
            &[&url],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

fn reused(client: &mut Client, job: &str) -> Option<bool> {
    client
        .query_one("SELECT (data->>'reused')::boolean FROM pageperfect.payloads WHERE job_id = $1::text::uuid AND stage = 'segment_embed'", &[&job])
        .unwrap()
        .get(0)
}

#[test]
fn gaps_are_found_where_the_page_misses_what_its_searchers_ask() {
    let site = Site::start(vec![
        ("/robots.txt", Route::status(200, "text/plain", "User-agent: *\nDisallow: /private\n")),
        ("/sourdough.html", Route::html(SOURDOUGH)),
        ("/starter.html", Route::html(STARTER)),
    ]);
    let (_cluster, mut client) = Cluster::with_extension("pipeline", &["pageperfect.crawl_allow_private = on"]);
    let (sourdough, starter) = (site.url("/sourdough.html"), site.url("/starter.html"));
    load_queries(&mut client, &sourdough);
    load_queries(&mut client, &starter);

    let job = run_workflow(&mut client, &sourdough, &[], false);
    let covering = run_workflow(&mut client, &starter, &[], false);
    assert_eq!(finished(&mut client, &job), "completed");
    assert_eq!(finished(&mut client, &covering), "completed");

    // The page without a word on feeding the starter gets that cluster as its top gap, and a draft.
    let gaps = recommendations(&mut client, &sourdough);
    assert!(!gaps.is_empty());
    assert_eq!(gaps[0], ["feeding sourdough starter schedule", "sourdough starter feeding ratio"]);
    let (draft, provider): (String, String) = {
        let row = client
            .query_one("SELECT d.draft, d.provider FROM pageperfect.rewrite_drafts d JOIN pageperfect.pages p ON p.id = d.page_id WHERE p.url = $1", &[&sourdough])
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(provider, "local");
    assert!(draft.starts_with("## Feeding Sourdough Starter Schedule"), "{draft}");
    let result: String = client.query_one("SELECT result->>'provider' FROM pageperfect.jobs WHERE id = $1::text::uuid", &[&job]).unwrap().get(0);
    assert_eq!(result, "local");
    // Boilerplate is not content: the nav and footer were dropped.
    assert_eq!(count(&mut client, "SELECT count(*) FROM pageperfect.page_embeddings WHERE content LIKE '%Copyright%' OR content LIKE '%our story%'"), 0);
    // The stray query is noise, not a cluster.
    assert_eq!(count(&mut client, "SELECT count(*) FROM pageperfect.keyword_clusters WHERE 'gluten free pancakes' = ANY (queries)"), 0);

    // The page that covers both topics has no gap.
    assert_eq!(recommendations(&mut client, &starter), Vec::<Vec<String>>::new());

    // Unchanged content is not embedded again, unless forced; skipped steps are skipped.
    let again = run_workflow(&mut client, &sourdough, &["rewrite_draft"], false);
    assert_eq!(finished(&mut client, &again), "completed");
    assert_eq!(reused(&mut client, &again), Some(true));
    let skipped: String = client
        .query_one("SELECT status FROM pageperfect.job_stages WHERE job_id = $1::text::uuid AND stage = 'rewrite_draft'", &[&again])
        .unwrap()
        .get(0);
    assert_eq!(skipped, "skipped");
    let forced = run_workflow(&mut client, &sourdough, &[], true);
    assert_eq!(finished(&mut client, &forced), "completed");
    assert_eq!(reused(&mut client, &forced), Some(false));
    assert_eq!(site.hits("/robots.txt"), 1, "robots.txt is cached per origin");
}

#[test]
fn pages_that_cannot_be_crawled_end_in_the_dead_letters_with_the_reason() {
    let big = "<p>filler words for a page that is far too large</p>".repeat(40_000);
    let site = Site::start(vec![
        ("/robots.txt", Route::status(200, "text/plain", "User-agent: *\nDisallow: /private\n")),
        ("/private/page.html", Route::html(SOURDOUGH)),
        ("/report.pdf", Route::status(200, "application/pdf", "%PDF-1.4")),
        ("/huge.html", Route::html(&big)),
    ]);
    let (_cluster, mut client) = Cluster::with_extension(
        "crawl-errors",
        &["pageperfect.crawl_allow_private = on", "pageperfect.crawl_max_bytes = 1000000"],
    );
    for (path, reason) in [
        ("/missing.html", "404"),
        ("/private/page.html", "disallowed by its site's robots.txt"),
        ("/report.pdf", "is not an HTML page (Content-Type: application/pdf)"),
        ("/huge.html", "1000000"),
    ] {
        let job = run_workflow(&mut client, &site.url(path), &[], false);
        assert_eq!(finished(&mut client, &job), "dead", "{path}");
        let (dead_reason, error): (String, String) = {
            let row = client.query_one("SELECT reason, error FROM pageperfect.dead_letters WHERE job_id = $1::text::uuid", &[&job]).unwrap();
            (row.get(0), row.get(1))
        };
        assert_eq!(dead_reason, "permanent error", "{path}: {error}");
        assert!(error.contains(reason), "{path}: {error}");
    }
    assert_eq!(site.hits("/private/page.html"), 0, "a disallowed page is never fetched");

    // With the SSRF guard on (the default), a loopback address is refused before connecting.
    for statement in ["ALTER SYSTEM SET pageperfect.crawl_allow_private = off", "SELECT pg_reload_conf()"] {
        client.batch_execute(statement).unwrap();
    }
    std::thread::sleep(Duration::from_secs(1));
    let before = site.requests.lock().unwrap().len();
    let job = run_workflow(&mut client, &site.url("/starter.html"), &[], false);
    assert_eq!(finished(&mut client, &job), "dead");
    let error: String = client.query_one("SELECT error FROM pageperfect.dead_letters WHERE job_id = $1::text::uuid", &[&job]).unwrap().get(0);
    assert!(error.to_lowercase().contains("127.0.0.1"), "{error}");
    assert_eq!(site.requests.lock().unwrap().len(), before, "nothing reached the site");
}

//! The PagePerfect pipeline end to end against a preloaded cluster and a loopback site, with the
//! local embedder and drafter: a page missing a topic its queries ask for gets that cluster as a
//! gap and a draft, a page that covers it does not; unchanged pages are reused unless forced;
//! skipped steps are skipped; and pages that cannot be crawled end in the dead letters with the
//! reason (404, robots.txt, not HTML, 50 MB, too slow, a private address). The `openai` providers
//! against a loopback OpenAI-compatible server that answers 429, 500, slowly, malformed JSON and 401.
//! The `scraper_api` crawl provider against a loopback scraping API that checks the options.
//! Two tenants crawling the same URL: each workflow clusters only its owner's Search Console sites.

use pageperfect_it::model_server::{self, Fault, ModelServer, Quirks};
use pageperfect_it::site::{Route, Site};
use pageperfect_it::{count, wait_for, Cluster};
use postgres::Client;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
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

const STARTER: &str = "<!doctype html><html><head><title>Feeding a sourdough starter</title>
<meta property='article:modified_time' content='2025-01-02T03:04:05Z'></head><body><main>
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

    // The crawl recorded the page's links (resolved, with their anchors) and the time the
    // starter page states it was modified.
    let links: Vec<(String, String)> = client
        .query(
            "SELECT l.target_url, l.anchor_text FROM pageperfect.page_links l JOIN pageperfect.pages p ON p.id = l.page_id
              WHERE p.url = $1 ORDER BY l.target_url",
            &[&sourdough],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(links, [(site.url("/"), "Home".to_string()), (site.url("/about"), "About us and our story".to_string())]);
    let stated: String = client
        .query_one("SELECT stated_modified_at AT TIME ZONE 'UTC' || '' FROM pageperfect.pages WHERE url = $1", &[&starter])
        .unwrap()
        .get(0);
    assert_eq!(stated, "2025-01-02 03:04:05");

    // Each run stored the page's content score: the page with a gap scores below the one that
    // covers its topics, and the draft says it would raise the score.
    let score = |client: &mut Client, job: &str| -> (i32, f64) {
        let row = client.query_one("SELECT score, coverage FROM pageperfect.content_scores WHERE job_id = $1::text::uuid", &[&job]).unwrap();
        (row.get(0), row.get(1))
    };
    let ((gappy, gappy_coverage), (covering_score, covering_coverage)) = (score(&mut client, &job), score(&mut client, &covering));
    assert!(gappy_coverage < 1.0 && covering_coverage == 1.0, "{gappy_coverage} {covering_coverage}");
    assert!(gappy < covering_score, "{gappy} vs {covering_score}");
    let (before, after): (i32, i32) = {
        let row = client.query_one("SELECT score_before, score_after FROM pageperfect.rewrite_drafts WHERE job_id = $1::text::uuid", &[&job]).unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(before, gappy);
    assert!(after > before, "the draft covers the gap: {before} -> {after}");
    // The sourdough page does not link to the starter page yet: it is the place to link from.
    let suggested: Vec<String> = client
        .query("SELECT source_page FROM pageperfect.link_suggestions($1, 10, 0.0)", &[&starter])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(suggested, std::slice::from_ref(&sourdough));

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

/// The dead letter of a job: (reason, error).
#[test]
fn a_workflow_clusters_only_the_search_console_sites_its_owner_may_use() {
    let site = Site::start(vec![("/robots.txt", Route::status(404, "text/plain", "")), ("/sourdough.html", Route::html(SOURDOUGH))]);
    let (cluster, mut admin) = Cluster::with_extension("pipeline_tenants", &["pageperfect.crawl_allow_private = on"]);
    let sourdough = site.url("/sourdough.html");
    // The page's queries are in alice's property only.
    load_queries(&mut admin, &sourdough);
    admin
        .batch_execute(
            "CREATE ROLE alice LOGIN IN ROLE pageperfect_user; CREATE ROLE bob LOGIN IN ROLE pageperfect_user;
             INSERT INTO pageperfect.gsc_site_owners (site, owner) VALUES ('sc-domain:example', 'alice');",
        )
        .unwrap();
    let mut alice = cluster.connect_to("postgres", "alice");
    let mut bob = cluster.connect_to("postgres", "bob");
    let alices = run_workflow(&mut alice, &sourdough, &[], false);
    let bobs = run_workflow(&mut bob, &sourdough, &[], false);
    assert_eq!(finished(&mut admin, &alices), "completed");
    assert_eq!(finished(&mut admin, &bobs), "completed");

    let clustered = |client: &mut Client, owner: &str| {
        count(
            client,
            &format!("SELECT count(*) FROM pageperfect.keyword_clusters c JOIN pageperfect.pages p ON p.id = c.page_id WHERE p.owner = '{owner}'"),
        )
    };
    assert_eq!(clustered(&mut admin, "alice"), 2, "alice's page is clustered on her site's queries");
    assert_eq!(clustered(&mut admin, "bob"), 0, "bob's page of the same URL gets none of alice's queries");
    // Each sees their own page's results, and only alice the Search Console rows.
    assert!(count(&mut alice, "SELECT count(*) FROM pageperfect.rewrite_recommendations") > 0);
    assert_eq!(count(&mut bob, "SELECT count(*) FROM pageperfect.rewrite_recommendations"), 0);
    assert_eq!(count(&mut bob, "SELECT count(*) FROM pageperfect.gsc_page_query_daily"), 0);
    assert!(count(&mut alice, "SELECT count(*) FROM pageperfect.gsc_page_query_daily") > 0);
}

#[test]
fn a_hostile_page_of_300k_paragraphs_is_capped_without_stalling_the_workers_or_other_owners() {
    // 4.5 MB of distinct three-word paragraphs (the crawler reads 5 MB at most).
    let mut hostile = String::from("<!doctype html><html><head><title>Many</title></head><body>");
    let mut n = 0;
    while hostile.len() < 4_500_000 {
        hostile.push_str(&format!("<p>a b c {n}</p>"));
        n += 1;
    }
    hostile.push_str("</body></html>");
    let site = Site::start(vec![
        ("/robots.txt", Route::status(404, "text/plain", "")),
        ("/hostile.html", Route::html(&hostile)),
        ("/sourdough.html", Route::html(SOURDOUGH)),
    ]);
    let (cluster, mut admin) = Cluster::with_extension("pipeline_hostile", &["pageperfect.crawl_allow_private = on"]);
    admin.batch_execute("CREATE ROLE alice LOGIN IN ROLE pageperfect_user; CREATE ROLE bob LOGIN IN ROLE pageperfect_user").unwrap();
    let mut alice = cluster.connect_to("postgres", "alice");
    let mut bob = cluster.connect_to("postgres", "bob");
    let hostile_job = run_workflow(&mut alice, &site.url("/hostile.html"), &[], false);
    let mut bobs = vec![run_workflow(&mut bob, &site.url("/sourdough.html"), &[], false)];

    // While it is processed, the workers' heartbeats stay fresh and bob's workflows complete.
    let mut stalest = 0.0f64;
    let started = std::time::Instant::now();
    loop {
        let age: f64 = admin
            .query_one("SELECT coalesce(max(extract(epoch FROM clock_timestamp() - last_heartbeat))::float8, 0) FROM pageperfect.workers WHERE kind = 'pipeline'", &[])
            .unwrap()
            .get(0);
        stalest = stalest.max(age);
        let status: String = admin.query_one("SELECT status FROM pageperfect.jobs WHERE id = $1::text::uuid", &[&hostile_job]).unwrap().get(0);
        let bob_done = count(&mut admin, &format!("SELECT count(*) FROM pageperfect.jobs WHERE id = '{}' AND status = 'completed'", bobs.last().unwrap()));
        if bob_done == 1 && bobs.len() < 4 {
            bobs.push(run_workflow(&mut bob, &site.url("/sourdough.html"), &[], true));
        }
        if matches!(status.as_str(), "completed" | "dead" | "failed") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(240), "the hostile page is still being processed");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(stalest < 2.0, "a pipeline worker's heartbeat was {stalest} s old");
    for job in &bobs {
        assert_eq!(finished(&mut admin, job), "completed");
    }
    // The page keeps the first 2,000 fragments (pageperfect.max_fragments_per_page), and says why.
    assert_eq!(finished(&mut admin, &hostile_job), "completed");
    let fragments = count(&mut admin, "SELECT count(*) FROM pageperfect.page_embeddings e JOIN pageperfect.pages p ON p.id = e.page_id WHERE p.url LIKE '%hostile%'");
    assert_eq!(fragments, 2000);
    let reason: String = admin
        .query_one("SELECT message FROM pageperfect.job_events WHERE job_id = $1::text::uuid AND event = 'truncated'", &[&hostile_job])
        .unwrap()
        .get(0);
    assert_eq!(reason, format!("the page has {n} fragments; the first 2000 were kept (pageperfect.max_fragments_per_page)"));
}

fn dead_letter(client: &mut Client, job: &str) -> (String, String) {
    let row = client.query_one("SELECT reason, error FROM pageperfect.dead_letters WHERE job_id = $1::text::uuid", &[&job]).unwrap();
    (row.get(0), row.get(1))
}

#[test]
fn pages_that_cannot_be_crawled_end_in_the_dead_letters_with_the_reason() {
    // 50 MB of HTML against the default 5 MB cap.
    let huge = "<p>filler words for a page that is far too large to keep</p>\n".repeat(850_000);
    let site = Site::start(vec![
        ("/robots.txt", Route::status(200, "text/plain", "User-agent: *\nDisallow: /private\n")),
        ("/private/page.html", Route::html(SOURDOUGH)),
        ("/report.pdf", Route::status(200, "application/pdf", "%PDF-1.4")),
        ("/huge.html", Route::html(&huge)),
        ("/slow.html", Route::html(SOURDOUGH).delayed(Duration::from_secs(3))),
        ("/old-starter.html", Route::redirect("/starter.html")),
        ("/starter.html", Route::html(STARTER)),
    ]);
    let (_cluster, mut client) = Cluster::with_extension(
        "crawl-errors",
        &["pageperfect.crawl_allow_private = on", "pageperfect.crawl_timeout_ms = 1000"],
    );
    client
        .batch_execute("UPDATE pageperfect.stage_config SET retry_delay_seconds = 0, max_attempts = 2 WHERE stage = 'submit_crawl'")
        .unwrap();
    for (path, reason, error) in [
        ("/missing.html", "permanent error", "404"),
        ("/private/page.html", "permanent error", "disallowed by its site's robots.txt"),
        ("/report.pdf", "permanent error", "is not an HTML page (Content-Type: application/pdf)"),
        ("/huge.html", "permanent error", "larger than 5242880 bytes"),
        // A timeout is worth retrying; after the last attempt it is dead.
        ("/slow.html", "failed 2 of 2 attempts", "no complete response within 1s"),
    ] {
        let job = run_workflow(&mut client, &site.url(path), &[], false);
        assert_eq!(finished(&mut client, &job), "dead", "{path}");
        let (dead_reason, dead_error) = dead_letter(&mut client, &job);
        assert!(dead_reason.starts_with(reason), "{path}: {dead_reason}");
        assert!(dead_error.contains(error), "{path}: {dead_error}");
    }
    assert_eq!(site.hits("/slow.html"), 2);
    assert_eq!(count(&mut client, "SELECT count(*) FROM pageperfect.pages WHERE html IS NOT NULL"), 0, "nothing partial was stored");

    // A redirect is followed, and the page keeps the URL it was asked for with its final URL.
    let moved = run_workflow(&mut client, &site.url("/old-starter.html"), &["rewrite_draft"], false);
    assert_eq!(finished(&mut client, &moved), "completed");
    let final_url: String = client
        .query_one("SELECT final_url FROM pageperfect.pages WHERE url = $1", &[&site.url("/old-starter.html")])
        .unwrap()
        .get(0);
    assert_eq!(final_url, site.url("/starter.html"));
    assert_eq!(site.hits("/private/page.html"), 0, "a disallowed page is never fetched");

    // With the SSRF guard on (the default), a loopback address is refused before connecting.
    for statement in ["ALTER SYSTEM SET pageperfect.crawl_allow_private = off", "SELECT pg_reload_conf()"] {
        client.batch_execute(statement).unwrap();
    }
    std::thread::sleep(Duration::from_secs(1));
    let before = site.requests.lock().unwrap().len();
    let job = run_workflow(&mut client, &site.url("/starter.html"), &[], false);
    assert_eq!(finished(&mut client, &job), "dead");
    let (_, error) = dead_letter(&mut client, &job);
    assert!(error.to_lowercase().contains("127.0.0.1"), "{error}");
    assert_eq!(site.requests.lock().unwrap().len(), before, "nothing reached the site");
}

/// The messages of a job's failed attempts at `stage`, oldest first.
fn failures(client: &mut Client, job: &str, stage: &str) -> Vec<String> {
    client
        .query(
            "SELECT message FROM pageperfect.job_events WHERE job_id = $1::text::uuid AND stage = $2 AND event = 'failed' ORDER BY id",
            &[&job, &stage],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[test]
fn the_openai_providers_retry_a_flaky_model_server_and_store_what_the_model_wrote() {
    let site = Site::start(vec![("/sourdough.html", Route::html(SOURDOUGH))]);
    let models = ModelServer::start();
    let settings = [
        "pageperfect.crawl_allow_private = on".to_string(),
        "pageperfect.embedding_provider = openai".to_string(),
        format!("pageperfect.embedding_url = '{}'", models.url(model_server::EMBEDDINGS)),
        "pageperfect.embedding_model = 'test-embed'".to_string(),
        "pageperfect.embedding_dimensions = 64".to_string(),
        "pageperfect.llm_provider = openai".to_string(),
        format!("pageperfect.llm_url = '{}'", models.url(model_server::CHAT)),
        "pageperfect.llm_model = 'test-chat'".to_string(),
        "pageperfect.api_key = 'sk-test-key'".to_string(),
    ];
    let (_cluster, mut client) = Cluster::with_extension("openai", &settings.iter().map(String::as_str).collect::<Vec<_>>());
    client
        .batch_execute(
            "UPDATE pageperfect.stage_config SET retry_delay_seconds = 0, max_attempts = 5;
             UPDATE pageperfect.stage_config SET timeout_seconds = 2 WHERE stage = 'rewrite_draft'",
        )
        .unwrap();
    let page = site.url("/sourdough.html");
    load_queries(&mut client, &page);

    // Rate limited (retry after 1 s), then a server error: both retried within the call; then
    // half a JSON document, which fails the attempt. The chat model first too slow for the
    // stage's 2 s timeout, then failing once (retried within the call).
    models.fail_next(
        model_server::EMBEDDINGS,
        vec![Fault::TooManyRequests { retry_after_seconds: 1 }, Fault::ServerError, Fault::MalformedJson],
    );
    models.fail_next(model_server::CHAT, vec![Fault::Slow(Duration::from_secs(4)), Fault::ServerError]);
    let job = run_workflow(&mut client, &page, &[], false);
    assert_eq!(finished(&mut client, &job), "completed");

    let embed_failures = failures(&mut client, &job, "segment_embed");
    assert_eq!(embed_failures.len(), 1, "{embed_failures:?}");
    assert!(embed_failures[0].contains("malformed JSON"), "{embed_failures:?}");
    // The 429's Retry-After of 1 s was honoured inside the first attempt.
    let first_attempt: f64 = client
        .query_one(
            "SELECT extract(epoch FROM (SELECT min(created_at) FROM pageperfect.job_events
                                         WHERE job_id = $1::text::uuid AND stage = 'segment_embed' AND event = 'failed')
                                   - (SELECT min(created_at) FROM pageperfect.job_events
                                         WHERE job_id = $1::text::uuid AND stage = 'segment_embed' AND event = 'started'))::float8",
            &[&job],
        )
        .unwrap()
        .get(0);
    assert!(first_attempt >= 1.0, "the Retry-After of 1 s was honoured: {first_attempt}");
    let draft_failures = failures(&mut client, &job, "rewrite_draft");
    assert_eq!(draft_failures.len(), 1, "{draft_failures:?}");
    assert!(draft_failures[0].contains("timed out after 2 s"), "{draft_failures:?}");

    // What was sent: the key, the model settings, and a prompt built from the page and its gap.
    for request in models.requests(model_server::EMBEDDINGS).iter().chain(&models.requests(model_server::CHAT)) {
        assert_eq!(request.headers.get("authorization").map(String::as_str), Some("Bearer sk-test-key"));
    }
    for body in models.bodies(model_server::EMBEDDINGS) {
        assert_eq!((body["model"].as_str(), body["dimensions"].as_i64()), (Some("test-embed"), Some(64)));
    }
    let chat = models.bodies(model_server::CHAT).pop().unwrap();
    assert_eq!(chat["model"], "test-chat");
    let prompt = chat["messages"][1]["content"].as_str().unwrap();
    assert!(prompt.contains(&format!("Page: {page}\nTitle: Sourdough bread at home\n")), "{prompt}");
    assert!(prompt.contains("- Mixing the dough\n- Shaping and baking\n"), "{prompt}");
    assert!(prompt.contains("\"feeding sourdough starter schedule\" (1000 impressions)"), "{prompt}");
    assert!(prompt.contains("\n1. "), "the closest paragraphs are quoted: {prompt}");

    // What was stored: the model's text, its name, its token usage and the latency.
    let row = client
        .query_one(
            "SELECT d.provider, d.model, d.draft, d.prompt_tokens, d.completion_tokens, d.latency_ms
               FROM pageperfect.rewrite_drafts d WHERE d.job_id = $1::text::uuid",
            &[&job],
        )
        .unwrap();
    let (provider, model, draft): (String, String, String) = (row.get(0), row.get(1), row.get(2));
    assert_eq!((provider.as_str(), model.as_str()), ("openai", model_server::CHAT_MODEL));
    assert!(draft.starts_with("## feeding sourdough starter schedule\n"), "{draft}");
    assert_eq!(row.get::<_, Option<i32>>(3), Some(prompt.split_whitespace().count() as i32));
    assert!(row.get::<_, Option<i32>>(4).unwrap() > 0);
    assert!(row.get::<_, Option<i32>>(5).unwrap() >= 0);

    // Unchanged text is not sent again: neither the page's fragments nor its queries.
    let embedding_requests = models.requests(model_server::EMBEDDINGS).len();
    let again = run_workflow(&mut client, &page, &["rewrite_draft"], false);
    assert_eq!(finished(&mut client, &again), "completed");
    assert_eq!(models.requests(model_server::EMBEDDINGS).len(), embedding_requests);

    // A refused key is not retried: the job is dead with the server's answer (force_update: the
    // draft's inputs are unchanged, so it would be reused otherwise).
    models.fail_next(model_server::CHAT, vec![Fault::Unauthorized]);
    let refused = run_workflow(&mut client, &page, &[], true);
    assert_eq!(finished(&mut client, &refused), "dead");
    let (reason, error) = dead_letter(&mut client, &refused);
    assert_eq!(reason, "permanent error");
    assert!(error.contains("HTTP 401") && error.contains("invalid api key"), "{error}");
}

/// The query of a request target (`/scrape?a=1&b=2`) as pairs.
fn query_pairs(target: &str) -> HashMap<String, String> {
    let query = target.split_once('?').map_or("", |(_, query)| query);
    form_urlencoded::parse(query.as_bytes()).into_owned().collect()
}

/// A stand-in for a scraping API with ScraperAPI's interface: it knows one key, answers for
/// pages of `https://js-shop.example` (a host nobody could reach directly), renders the app page
/// only when asked to, fails `/flaky` once with 500, and echoes a wrong key in its 403, as APIs do.
fn scraping_api() -> Site {
    let flaky_seen = Arc::new(Mutex::new(false));
    Site::with_handler(move |request| {
        let query = query_pairs(&request.path);
        let key = query.get("api_key").cloned().unwrap_or_default();
        if key != "test-key" {
            return Route::status(403, "text/plain", &format!("Invalid API key {key}"));
        }
        let shell = "<!doctype html><html><head><title>Shop</title></head><body><div id='root'></div></body></html>";
        match query.get("url").map(String::as_str).unwrap_or_default() {
            "https://js-shop.example/robots.txt" => Route::status(200, "text/plain", "User-agent: *\nDisallow: /private\n"),
            "https://js-shop.example/app" | "https://js-shop.example/premium-app" if query.contains_key("render") => Route::html(STARTER),
            "https://js-shop.example/app" | "https://js-shop.example/premium-app" => Route::html(shell),
            "https://js-shop.example/flaky" if !std::mem::replace(&mut *flaky_seen.lock().unwrap(), true) => {
                Route::status(500, "text/plain", "Request failed. You will not be charged for this request.")
            }
            "https://js-shop.example/flaky" => Route::html(SOURDOUGH),
            // An API that redirects: following it would send the key-bearing call elsewhere.
            "https://js-shop.example/moved" => Route::redirect("/elsewhere"),
            _ => Route::status(404, "text/plain", "not found"),
        }
    })
}

/// Queues a crawl-only job with `options` and waits for its end.
fn crawl(client: &mut Client, url: &str, options: &str) -> (String, String) {
    let job: String = client
        .query_one("SELECT pageperfect.enqueue_job($1, ARRAY['submit_crawl', 'wait_crawl'], $2::text::jsonb)::text", &[&url, &options])
        .unwrap()
        .get(0);
    let status = finished(client, &job);
    (job, status)
}

#[test]
fn pages_are_fetched_through_a_scraping_api_with_the_jobs_options_and_its_key_never_shown() {
    let api = scraping_api();
    let endpoint = api.url("/scrape");
    let (_cluster, mut client) = Cluster::with_extension(
        "scraper-api",
        &["pageperfect.crawl_provider = 'scraper_api'", &format!("pageperfect.crawl_api_url = '{endpoint}'"), "pageperfect.crawl_api_key = 'test-key'"],
    );
    let calls = |target: &str| -> Vec<HashMap<String, String>> {
        api.requests.lock().unwrap().iter().map(|path| query_pairs(path)).filter(|q| q.get("url").map(String::as_str) == Some(target)).collect()
    };

    // Rendered, with premium proxies: the options reach the API, and the rendered page is stored
    // under the URL asked for (never the API's, which carries the key).
    assert_eq!(crawl(&mut client, "https://js-shop.example/app", r#"{"render": true, "premium": true}"#).1, "completed");
    let app = calls("https://js-shop.example/app");
    assert_eq!(app.len(), 1);
    assert_eq!((app[0].get("render"), app[0].get("premium"), app[0].get("ultra_premium")), (Some(&"true".into()), Some(&"true".into()), None));
    let (final_url, html): (String, String) = {
        let row = client.query_one("SELECT final_url, html FROM pageperfect.pages WHERE url = 'https://js-shop.example/app'", &[]).unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(final_url, "https://js-shop.example/app");
    assert!(html.contains("Feeding a sourdough starter"), "the rendered page was stored");
    assert_eq!(calls("https://js-shop.example/robots.txt").len(), 1, "robots.txt too comes through the API, once per origin");

    // ultra_premium alone; a job without options asks for nothing extra and gets the bare shell.
    assert_eq!(crawl(&mut client, "https://js-shop.example/premium-app", r#"{"ultra_premium": true, "render": false}"#).1, "completed");
    let premium = &calls("https://js-shop.example/premium-app")[0];
    assert_eq!((premium.get("ultra_premium").map(String::as_str), premium.contains_key("render")), (Some("true"), false));

    // The API's 500 is retried; robots.txt rules are kept without fetching a disallowed page.
    let (flaky, status) = crawl(&mut client, "https://js-shop.example/flaky", "{}");
    assert_eq!(status, "completed");
    let failed = failures(&mut client, &flaky, "submit_crawl");
    assert_eq!(failed.len(), 1);
    assert!(failed[0].starts_with("scraping API fetching https://js-shop.example/flaky: HTTP 500"), "{}", failed[0]);
    let (job, status) = crawl(&mut client, "https://js-shop.example/private/report", "{}");
    assert_eq!(status, "dead");
    assert!(dead_letter(&mut client, &job).1.contains("disallowed by its site's robots.txt"));
    assert!(calls("https://js-shop.example/private/report").is_empty());

    // A redirect from the API is not followed.
    let (_, status) = crawl(&mut client, "https://js-shop.example/moved", "{}");
    assert_eq!(status, "dead");
    assert!(!api.requests.lock().unwrap().iter().any(|path| path.starts_with("/elsewhere")), "the redirect was followed");

    // A bad option is the job's error, not a call.
    let before = api.requests.lock().unwrap().len();
    let (job, status) = crawl(&mut client, "https://js-shop.example/app", r#"{"render": "yes"}"#);
    assert_eq!(status, "dead");
    assert_eq!(dead_letter(&mut client, &job).1, r#"job option "render" must be true or false, not "yes""#);
    assert_eq!(api.requests.lock().unwrap().len(), before);

    // A key the API refuses: permanent, and the key (which the API echoes) appears nowhere.
    for statement in ["ALTER SYSTEM SET pageperfect.crawl_api_key = 'wrong-key-42'", "SELECT pg_reload_conf()"] {
        client.batch_execute(statement).unwrap();
    }
    std::thread::sleep(Duration::from_secs(1));
    let (job, status) = crawl(&mut client, "https://js-shop.example/app", r#"{"render": true}"#);
    assert_eq!(status, "dead");
    assert_eq!(dead_letter(&mut client, &job).1, "scraping API fetching https://js-shop.example/app: HTTP 403: Invalid API key ***");
    let leaks = count(
        &mut client,
        "SELECT (SELECT count(*) FROM pageperfect.job_events WHERE message LIKE '%wrong-key%' OR data::text LIKE '%wrong-key%')
              + (SELECT count(*) FROM pageperfect.job_stages WHERE last_error LIKE '%wrong-key%')
              + (SELECT count(*) FROM pageperfect.dead_letters WHERE error LIKE '%wrong-key%' OR message::text LIKE '%wrong-key%')
              + (SELECT count(*) FROM pageperfect.pages WHERE final_url LIKE '%wrong-key%' OR last_error LIKE '%wrong-key%')",
    );
    assert_eq!(leaks, 0);
}

/// Asserts that the job completed, saying why when it did not.
fn assert_completed(client: &mut Client, job: &str) {
    if finished(client, job) != "completed" {
        let (reason, error) = dead_letter(client, job);
        panic!("job {job} did not complete: {reason}: {error}");
    }
}

/// Settings for the `openai` providers against `models`.
fn openai_settings(models: &ModelServer) -> Vec<String> {
    vec![
        "pageperfect.crawl_allow_private = on".to_string(),
        "pageperfect.embedding_provider = openai".to_string(),
        format!("pageperfect.embedding_url = '{}'", models.url(model_server::EMBEDDINGS)),
        "pageperfect.embedding_model = 'test-embed'".to_string(),
        "pageperfect.llm_provider = openai".to_string(),
        format!("pageperfect.llm_url = '{}'", models.url(model_server::CHAT)),
        "pageperfect.llm_model = 'test-chat'".to_string(),
    ]
}

#[test]
fn servers_that_refuse_dimensions_and_max_tokens_and_rate_limit_in_ms_work_and_unchanged_pages_are_not_paid_twice() {
    let site = Site::start(vec![("/sourdough.html", Route::html(SOURDOUGH))]);
    // As vLLM/TEI (no `dimensions`) and a reasoning model (no `max_tokens`, no temperature).
    let models = ModelServer::with_quirks(Quirks { refuses_dimensions: true, refuses_max_tokens: true });
    // One pipeline worker: it remembers that this server wants max_completion_tokens.
    let mut settings = openai_settings(&models);
    settings.push("pageperfect.pipeline_workers = 1".to_string());
    let (_cluster, mut client) = Cluster::with_extension("openai_quirks", &settings.iter().map(String::as_str).collect::<Vec<_>>());
    let page = site.url("/sourdough.html");
    load_queries(&mut client, &page);
    // Rate limited twice with OpenAI's retry-after-ms: waited out within the call.
    models.fail_next(model_server::EMBEDDINGS, vec![Fault::RateLimitedMs { retry_after_ms: 300 }, Fault::RateLimitedMs { retry_after_ms: 300 }]);
    let job = run_workflow(&mut client, &page, &[], false);
    assert_completed(&mut client, &job);
    assert!(failures(&mut client, &job, "segment_embed").is_empty(), "the 429s did not fail the attempt");
    assert!(models.bodies(model_server::EMBEDDINGS).iter().all(|body| body.get("dimensions").is_none()), "no dimensions sent");
    let vector_length: i32 = client
        .query_one("SELECT DISTINCT cardinality(e.embedding) FROM pageperfect.page_embeddings e JOIN pageperfect.pages p ON p.id = e.page_id WHERE p.url = $1", &[&page])
        .unwrap()
        .get(0);
    assert_eq!(vector_length as usize, model_server::NATIVE_DIMENSIONS, "the model's own dimensions");
    // The chat model refused max_tokens once; asked again with max_completion_tokens, it drafted.
    let chats = models.bodies(model_server::CHAT);
    assert_eq!(chats.len(), 2, "{chats:?}");
    assert!(chats[0].get("max_tokens").is_some() && chats[1].get("max_completion_tokens").is_some() && chats[1].get("temperature").is_none());
    let drafted: i64 = client.query_one("SELECT count(*) FROM pageperfect.rewrite_drafts WHERE job_id = $1::text::uuid", &[&job]).unwrap().get(0);
    assert_eq!(drafted, 1);

    // The same page again, unchanged: no model is called, every result is reused.
    let (embeddings, chats) = (models.requests(model_server::EMBEDDINGS).len(), models.requests(model_server::CHAT).len());
    let again = run_workflow(&mut client, &page, &[], false);
    assert_completed(&mut client, &again);
    assert_eq!((models.requests(model_server::EMBEDDINGS).len(), models.requests(model_server::CHAT).len()), (embeddings, chats));
    let reused: Vec<String> = client
        .query("SELECT stage FROM pageperfect.job_events WHERE job_id = $1::text::uuid AND event = 'reused' ORDER BY id", &[&again])
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(reused, ["segment_embed", "keyword_clustering", "gap_analysis", "rewrite_draft"]);
    // force_update means it: everything is done again, the draft paid for again.
    let forced = run_workflow(&mut client, &page, &[], true);
    assert_completed(&mut client, &forced);
    assert_eq!(models.requests(model_server::CHAT).len(), chats + 1, "this worker now asks with max_completion_tokens at once");
}

#[test]
fn changing_the_embedding_dimensions_between_two_runs_re_embeds_and_never_mixes_vectors() {
    let site = Site::start(vec![("/sourdough.html", Route::html(SOURDOUGH))]);
    let models = ModelServer::start();
    let mut settings = openai_settings(&models);
    settings.push("pageperfect.embedding_dimensions = 16".to_string());
    let (_cluster, mut client) = Cluster::with_extension("openai_dimensions", &settings.iter().map(String::as_str).collect::<Vec<_>>());
    let page = site.url("/sourdough.html");
    load_queries(&mut client, &page);
    let first = run_workflow(&mut client, &page, &[], false);
    assert_eq!(finished(&mut client, &first), "completed");

    client.batch_execute("ALTER SYSTEM SET pageperfect.embedding_dimensions = 24").unwrap();
    client.query_one("SELECT pg_reload_conf()", &[]).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let second = run_workflow(&mut client, &page, &[], false);
    assert_eq!(finished(&mut client, &second), "completed", "no gap analysis over vectors of two lengths");
    let lengths: Vec<i32> = client
        .query("SELECT DISTINCT cardinality(e.embedding) FROM pageperfect.page_embeddings e JOIN pageperfect.pages p ON p.id = e.page_id WHERE p.url = $1", &[&page])
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(lengths, [24], "the page was embedded again at the new dimensions");
    let reused: i64 = client
        .query_one("SELECT count(*) FROM pageperfect.job_events WHERE job_id = $1::text::uuid AND event = 'reused' AND stage <> 'rewrite_draft'", &[&second])
        .unwrap()
        .get(0);
    assert_eq!(reused, 0, "nothing made with 16 dimensions was reused");
    assert!(models.bodies(model_server::EMBEDDINGS).last().is_some_and(|body| body["dimensions"] == 24));
}

#[test]
fn embeddings_already_made_are_kept_when_a_later_batch_fails() {
    // 150 paragraphs and 150 queries: two embeddings requests each (96 and 54).
    let long_page: String = (1..=150).map(|n| format!("<p>Paragraph {n} of the long sourdough guide.</p>")).collect();
    let site = Site::start(vec![("/sourdough.html", Route::html(&format!("<html><body><main>{long_page}</main></body></html>")))]);
    let models = ModelServer::start();
    let settings = openai_settings(&models);
    let (_cluster, mut client) = Cluster::with_extension("openai_partial", &settings.iter().map(String::as_str).collect::<Vec<_>>());
    client.batch_execute("UPDATE pageperfect.stage_config SET retry_delay_seconds = 0").unwrap();
    let page = site.url("/sourdough.html");
    client
        .execute(
            "INSERT INTO pageperfect.gsc_page_query_daily (date, site, page, query, clicks, impressions, position)
             SELECT current_date - 1, 'sc-domain:example', $1, 'sourdough question ' || n, 1, 10 + n, 5.0
               FROM generate_series(1, 150) n",
            &[&page],
        )
        .unwrap();
    // Each stage's second batch gets half a JSON document the first time.
    models.fail_next(
        model_server::EMBEDDINGS,
        vec![Fault::Answer, Fault::MalformedJson, Fault::Answer, Fault::Answer, Fault::MalformedJson],
    );
    let job = run_workflow(&mut client, &page, &["rewrite_draft"], false);
    assert_completed(&mut client, &job);
    for stage in ["segment_embed", "keyword_clustering"] {
        assert_eq!(failures(&mut client, &job, stage).len(), 1, "{stage}");
    }
    // Each second attempt sent only the 54 texts the first did not get back.
    let sizes: Vec<usize> = models.bodies(model_server::EMBEDDINGS).iter().map(|b| b["input"].as_array().map_or(0, Vec::len)).collect();
    assert_eq!(sizes, [96, 54, 54, 96, 54, 54], "fragments, then queries");
    let stored: i64 = client
        .query_one("SELECT count(*) FROM pageperfect.page_embeddings e JOIN pageperfect.pages p ON p.id = e.page_id WHERE p.url = $1", &[&page])
        .unwrap()
        .get(0);
    assert_eq!(stored, 150, "every paragraph has its vector");
}

//! The SEO insights page over real HTTP: alice signs in and sees her property's decaying page,
//! the two pages competing for a query cluster, her pages' content scores with the draft's
//! before and after, and the links to add to a page; text from Search Console is escaped;
//! mallory, signed in to her own server, sees none of it.

mod common;

use common::*;

/// Alice's property: /decaying lost half its clicks (fewer searches), /a and /b compete for
/// "cold brew <ratio>", /orphan has a topic that /latte's paragraph covers.
const FIXTURE: &str = "
INSERT INTO pageperfect.gsc_site_owners (site, owner) VALUES ('sc-domain:alice.example', 'alice');
INSERT INTO pageperfect.gsc_page_query_daily (date, site, page, query, clicks, impressions, position)
SELECT current_date - d, 'sc-domain:alice.example', 'https://alice.example/decaying', 'pour over ratio',
       CASE WHEN d <= 28 THEN 5 ELSE 10 END, CASE WHEN d <= 28 THEN 50 ELSE 100 END, 3
  FROM generate_series(1, 56) d;
INSERT INTO pageperfect.gsc_page_query_daily (date, site, page, query, clicks, impressions, position)
SELECT current_date - d, 'sc-domain:alice.example', 'https://alice.example/' || p, 'cold brew <ratio>', 2, i, pos
  FROM generate_series(1, 28) d, (VALUES ('a', 100, 4.0), ('b', 50, 9.0)) v (p, i, pos);
INSERT INTO pageperfect.pages (url, owner, final_url, status_code) VALUES
    ('https://alice.example/orphan', 'alice', 'https://alice.example/orphan', 200),
    ('https://alice.example/latte', 'alice', 'https://alice.example/latte', 200);
INSERT INTO pageperfect.page_embeddings (page_id, position, kind, tag, content, text_hash, embedding, provider, model)
SELECT id, 0, 'paragraph', 'p', 'Frothing milk for a latte takes a steam wand.', 'h', '{1, 0}', 'local', 'fixture'
  FROM pageperfect.pages WHERE url = 'https://alice.example/latte';
INSERT INTO pageperfect.keyword_clusters (page_id, label, queries, query_impressions, impressions, clicks, position, centroid)
SELECT id, 0, '{frothing milk}', '{100}', 100, 3, 6, '{1, 0.1}' FROM pageperfect.pages WHERE url = 'https://alice.example/orphan';
INSERT INTO pageperfect.content_scores (page_id, score, coverage, opportunity, freshness, ctr)
SELECT id, 42, 0.5, 0.25, 1, 0.75 FROM pageperfect.pages WHERE url = 'https://alice.example/orphan';
INSERT INTO pageperfect.rewrite_drafts (page_id, provider, model, draft, score_before, score_after)
SELECT id, 'local', 'm', '## Frothing milk', 42, 77 FROM pageperfect.pages WHERE url = 'https://alice.example/orphan';
";

/// Signs in to `server` with `token` and returns the session cookie.
fn sign_in(client: &reqwest::blocking::Client, server: &Server, token: &str) -> String {
    let login = client
        .post(server.url("/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={token}"))
        .send()
        .unwrap();
    assert_eq!(login.status().as_u16(), 303);
    login.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string()
}

#[test]
fn the_insights_page_shows_a_tenants_reports_and_nothing_of_anothers() {
    let (cluster, mut admin) = cluster_with_tenants("web-insights", &[]);
    admin.batch_execute(FIXTURE).unwrap();
    let alice = Server::start(&cluster, "alice", "web-alice", &[]);
    let mallory = Server::start(&cluster, "mallory", "web-mallory", &[]);
    let client = reqwest::blocking::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let get = |server: &Server, cookie: &str, path: &str| -> (u16, String) {
        let response = client.get(server.url(path)).header("cookie", cookie).send().unwrap();
        (response.status().as_u16(), response.text().unwrap())
    };

    // Without a session: the sign-in form.
    let (status, html) = get(&alice, "", "/insights");
    assert_eq!(status, 200);
    assert!(html.contains("Sign in") && !html.contains("id=decay"), "{html}");

    let cookie = sign_in(&client, &alice, ALICE_TOKEN);
    let (status, html) = get(&alice, &cookie, "/insights");
    assert_eq!(status, 200, "{html}");
    for expected in [
        "sc-domain:alice.example",
        // Decay: 28 days of 10 clicks against 28 of 5, all of it demand.
        "https://alice.example/decaying</td><td class=bad>140</td><td>140</td><td>0</td><td>0</td><td>280",
        // Cannibalization: both pages, the cluster's name escaped.
        "cold brew &lt;ratio&gt;</td><td>https://alice.example/a</td><td>2800</td><td>0.67</td>",
        "https://alice.example/b</td><td>1400</td><td>0.33</td>",
        // The orphan's score, with its draft's before and after.
        "https://alice.example/orphan</td><td><b>42</b></td><td>0.50</td><td>0.25</td><td>0.75</td><td>1</td><td>42 → 77</td>",
    ] {
        assert!(html.contains(expected), "the page lacks {expected:?}:\n{html}");
    }
    assert!(!html.contains("cold brew <ratio>"), "Search Console text is escaped");

    // The orphan's "links to add": the latte page's paragraph, with the anchor text.
    let link = "/insights?site=sc-domain%3Aalice.example&amp;page=https%3A%2F%2Falice.example%2Forphan";
    assert!(html.contains(link), "{html}");
    let (status, html) = get(&alice, &cookie, &link.replace("&amp;", "&"));
    assert_eq!(status, 200);
    assert!(html.contains("Internal links to add to https://alice.example/orphan"), "{html}");
    assert!(html.contains("https://alice.example/latte</td><td>Frothing milk for a latte takes a steam wand.</td><td>Frothing milk <span class=muted>(already in the text)</span>"), "{html}");
    // A page she does not have: the report says so, the rest of the page stands.
    let (status, html) = get(&alice, &cookie, "/insights?page=https%3A%2F%2Fnowhere.example%2F");
    assert_eq!(status, 200);
    assert!(html.contains("you have no page https://nowhere.example/") && html.contains("id=scores"), "{html}");

    // Mallory sees no property, no score and no link of alice's, even when she names them.
    let cookie = sign_in(&client, &mallory, MALLORY_TOKEN);
    let (status, html) = get(&mallory, &cookie, "/insights?site=sc-domain%3Aalice.example&page=https%3A%2F%2Falice.example%2Forphan");
    assert_eq!(status, 200, "{html}");
    assert!(!html.contains("https://alice.example/decaying") && !html.contains("https://alice.example/a<"), "{html}");
    assert!(!html.contains("<b>42</b>") && !html.contains("latte"), "{html}");
    assert!(html.contains("you have no page https://alice.example/orphan"), "{html}");
}

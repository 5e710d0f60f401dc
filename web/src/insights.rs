//! The SEO insights page at `/insights`: for one Search Console property the role may use
//! (`?site=`, else its first), the pages that lost clicks (`content_decay`), the query clusters
//! two pages compete for (`cannibalization`), every page's latest content score with its draft's
//! before and after, and for one page (`?page=`) the internal links to add
//! (`link_suggestions`). The SQL functions run as the server's role, so row-level security
//! decides what is shown; a report that fails shows its error in its own section.

use crate::dashboard::{cell, esc, header, list, page_shell, percent_encode, signed_in, table_or_none};
use crate::db::{self, Failure};
use crate::App;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{Html, Response};
use serde::Deserialize;
use serde_json::Value;
use std::fmt::Write;
use std::sync::Arc;

#[derive(Deserialize)]
pub struct InsightsQuery {
    site: Option<String>,
    page: Option<String>,
}

/// `GET /insights`: the reports, or the sign-in form.
pub async fn page(State(app): State<Arc<App>>, headers: HeaderMap, Query(query): Query<InsightsQuery>) -> Response {
    let app: &App = &app;
    signed_in(app, &headers, |csrf, notice| async move { render(app, &csrf, notice, &query).await }).await
}

/// A report's rows, or its error as a section of its own.
async fn report(app: &App, body: &mut String, id: &str, title: &str, sql: &str, params: &[&str]) -> Option<Value> {
    match db::rows(&app.pool, sql, params).await {
        Ok(rows) => Some(rows),
        Err(failure) => {
            let _ = write!(body, "<section id={id}><h2>{title}</h2><p class=bad>{}</p></section>", esc(&failure.message));
            None
        }
    }
}

/// `/insights` with these parameters.
fn insights_url(site: &str, page: Option<&str>) -> String {
    let mut url = format!("/insights?site={}", percent_encode(site));
    if let Some(page) = page {
        let _ = write!(url, "&page={}", percent_encode(page));
    }
    url
}

async fn render(app: &App, csrf: &str, notice: Option<String>, query: &InsightsQuery) -> Result<Html<String>, Failure> {
    let mut body = header(app, csrf, notice.as_deref()).await?;
    body.push_str("<main>");
    let sites = db::rows(&app.pool, "SELECT site FROM pageperfect.search_console_sites()", &[]).await?;
    let sites: Vec<&str> = list(&sites).iter().filter_map(|s| s["site"].as_str()).collect();
    let site = query.site.as_deref().or(sites.first().copied());

    body.push_str("<section id=sites><h2>Search Console properties</h2>");
    if sites.is_empty() {
        body.push_str("<p class=muted>none: a superuser gives a role a property with INSERT INTO pageperfect.gsc_site_owners</p>");
    }
    for s in &sites {
        let chosen = if Some(*s) == site { " class=ok" } else { "" };
        let _ = write!(body, "<a{chosen} href=\"{}\">{}</a> ", esc(&insights_url(s, None)), esc(s));
    }
    body.push_str("</section>");

    if let Some(site) = site {
        let title = format!("Content decay: {} (last 28 days against the best 28 of 16 months)", esc(site));
        let sql = "SELECT page, round(clicks_lost)::bigint AS clicks_lost, round(lost_to_demand)::bigint AS lost_to_demand,
                          round(lost_to_position)::bigint AS lost_to_position, round(lost_other)::bigint AS lost_other, clicks_best, clicks_now,
                          round(position_best::numeric, 1) AS position_best, round(position_now::numeric, 1) AS position_now,
                          best_window_start, top_queries
                     FROM pageperfect.content_decay($1) LIMIT 10";
        if let Some(rows) = report(app, &mut body, "decay", &title, sql, &[site]).await {
            let header = "<th>page</th><th>clicks lost</th><th>to demand</th><th>to position</th><th>other</th>\
                          <th>best 28 days</th><th>now</th><th>position then → now</th><th>lost most</th>";
            table_or_none(&mut body, "decay", &title, list(&rows), header, |d| {
                format!(
                    "<tr><td>{}</td><td class=bad>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} (from {})</td><td>{}</td><td>{} → {}</td><td>{}</td></tr>",
                    cell(&d["page"]), cell(&d["clicks_lost"]), cell(&d["lost_to_demand"]), cell(&d["lost_to_position"]),
                    cell(&d["lost_other"]), cell(&d["clicks_best"]), cell(&d["best_window_start"]), cell(&d["clicks_now"]),
                    cell(&d["position_best"]), cell(&d["position_now"]), cell(&d["top_queries"][0]["query"])
                )
            });
        }
        let title = format!("Keyword cannibalization: {}", esc(site));
        let sql = "SELECT query_cluster, page, impressions, share, round(position::numeric, 1) AS position, clicks, cluster_clicks,
                          round(single_page_clicks)::bigint AS single_page_clicks
                     FROM pageperfect.cannibalization($1) LIMIT 40";
        if let Some(rows) = report(app, &mut body, "cannibalization", &title, sql, &[site]).await {
            let header = "<th>query cluster</th><th>page</th><th>impressions</th><th>share</th><th>position</th>\
                          <th>clicks</th><th>cluster clicks</th><th>one strong page</th>";
            table_or_none(&mut body, "cannibalization", &title, list(&rows), header, |c| {
                format!(
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    cell(&c["query_cluster"]), cell(&c["page"]), cell(&c["impressions"]), cell(&c["share"]), cell(&c["position"]),
                    cell(&c["clicks"]), cell(&c["cluster_clicks"]), cell(&c["single_page_clicks"])
                )
            });
        }
    }

    let sql = "SELECT * FROM pageperfect.latest_content_scores(50)";
    if let Some(rows) = report(app, &mut body, "scores", "Content scores", sql, &[]).await {
        let header = "<th>page</th><th>score</th><th>coverage</th><th>opportunity</th><th>CTR</th><th>freshness</th>\
                      <th>draft: before → after</th><th>scored</th><th></th>";
        table_or_none(&mut body, "scores", "Content scores (lowest first)", list(&rows), header, |s| {
            let links = s["url"].as_str().map(|url| insights_url(site.unwrap_or_default(), Some(url))).unwrap_or_default();
            format!(
                "<tr><td>{}</td><td><b>{}</b></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} → {}</td><td>{}</td><td><a href=\"{}\">links to add</a></td></tr>",
                cell(&s["url"]), cell(&s["score"]), cell(&s["coverage"]), cell(&s["opportunity"]), cell(&s["ctr"]), cell(&s["freshness"]),
                cell(&s["score_before"]), cell(&s["score_after"]), cell(&s["created_at"]), esc(&links)
            )
        });
    }

    if let Some(page) = query.page.as_deref() {
        let title = format!("Internal links to add to {}", esc(page));
        let sql = "SELECT source_page, left(paragraph, 120) AS paragraph, anchor_text, anchor_in_text, topic, is_gap, similarity
                     FROM pageperfect.link_suggestions($1)";
        if let Some(rows) = report(app, &mut body, "links", &title, sql, &[page]).await {
            let header = "<th>link from</th><th>in the paragraph</th><th>anchor text</th><th>topic</th><th>similarity</th>";
            table_or_none(&mut body, "links", &title, list(&rows), header, |l| {
                let anchor = if l["anchor_in_text"].as_bool() == Some(true) { "(already in the text)" } else { "(to add)" };
                let gap = if l["is_gap"].as_bool() == Some(true) { " <span class=bad>gap</span>" } else { "" };
                format!(
                    "<tr><td>{}</td><td>{}</td><td>{} <span class=muted>{anchor}</span></td><td>{}{gap}</td><td>{}</td></tr>",
                    cell(&l["source_page"]),
                    cell(&l["paragraph"]),
                    cell(&l["anchor_text"]),
                    cell(&l["topic"]),
                    cell(&l["similarity"])
                )
            });
        }
    }
    body.push_str("</main>");
    Ok(page_shell("pageperfect: SEO insights", &body))
}

#[cfg(test)]
mod tests {
    use super::insights_url;

    #[test]
    fn links_carry_the_site_and_page_encoded() {
        assert_eq!(insights_url("sc-domain:a.example", None), "/insights?site=sc-domain%3Aa.example");
        assert_eq!(
            insights_url("https://a.example/", Some("https://a.example/x?y=1&z")),
            "/insights?site=https%3A%2F%2Fa.example%2F&page=https%3A%2F%2Fa.example%2Fx%3Fy%3D1%26z"
        );
    }
}

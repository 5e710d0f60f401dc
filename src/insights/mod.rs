//! SEO insights from the data the pipeline and Search Console already keep: content decay,
//! keyword cannibalization, internal-link suggestions and the content score, as SQL functions.
//!
//! Each runs as its caller: row-level security decides which Search Console properties
//! (`gsc_site_owners`) and which pages (their owner) it sees, so another role's data never
//! enters a report. The search path is pinned like every function of the extension. The math
//! is in plain functions with unit tests (`decay`, `cannibalization`, `link_suggestions`, and
//! the pipeline's `content_score`); this file reads the rows and hands them over.

pub mod cannibalization;
pub mod decay;
pub mod link_suggestions;

use crate::pipeline::gap_analysis::PageInputs;
use crate::{invalid_parameter, raise};
use pgrx::datum::{Date, Interval};
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::json;

/// Search Console keeps 16 months: decay compares windows within them.
const HISTORY_DAYS: i32 = 486;
/// Most (page, query) rows a decay or cannibalization report reads.
const MAX_KEYWORD_ROWS: i64 = 1_000_000;
/// Most topics of a page that link suggestions look for.
const MAX_TOPICS: i64 = 100;
/// Fragments read per fetch while looking for link sources.
const FRAGMENTS_PER_FETCH: i64 = 1_000;

/// `window_length` in whole days, at least 1 and at most `max_days`.
fn whole_days(window_length: &Interval, max_days: i32) -> i32 {
    const DAY: i128 = 86_400_000_000;
    let micros = window_length.as_micros();
    if micros % DAY != 0 || micros < DAY || micros > i128::from(max_days) * DAY {
        invalid_parameter(format!("window_length must be a whole number of days from 1 to {max_days}"));
    }
    (micros / DAY) as i32
}

fn two_decimals(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// The caller's page with this URL (as given or after redirects): id and URLs. Raises when the
/// caller has none.
fn own_page(url: &str) -> (i64, String, Option<String>) {
    let found = Spi::connect(|client| {
        let rows = client.select(
            "SELECT id, url, final_url FROM pageperfect.pages WHERE url = $1 OR final_url = $1 ORDER BY url = $1 DESC, id LIMIT 1",
            None,
            &[url.into()],
        )?;
        if rows.is_empty() {
            return Ok::<_, pgrx::spi::Error>(None);
        }
        let row = rows.first();
        Ok(Some((row.get::<i64>(1)?.unwrap_or_default(), row.get::<String>(2)?.unwrap_or_default(), row.get::<String>(3)?)))
    });
    match found {
        Ok(Some(page)) => page,
        Ok(None) => raise(
            PgSqlErrorCode::ERRCODE_NO_DATA_FOUND,
            format!("you have no page {url}: run pageperfect.run_workflow('{url}') first"),
        ),
        Err(e) => raise(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, e.to_string()),
    }
}

/// The error for a site with more (page, query) rows than a report reads.
fn too_many_rows(site: &str) -> ! {
    crate::raise_with(
        PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
        format!("site {site} has more than {MAX_KEYWORD_ROWS} (page, query) pairs in the windows compared"),
        None,
        Some("Use a shorter window_length."),
    )
}

fn spi_failed(e: pgrx::spi::Error) -> ! {
    raise(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, e.to_string())
}

#[pg_schema]
mod pageperfect {
    use super::*;
    use crate::gsc::ctr::CtrCurve;
    use crate::pipeline::links::normalize_url;
    use cannibalization::{find_competitors, KeywordRow};
    use decay::{page_decay, QueryWindows, Totals};
    use link_suggestions::{BestPerPage, Fragment, Topic};
    use std::collections::BTreeMap;

    /// The site's pages whose clicks in the last `window_length` fell most against their best
    /// window of the same length in the last 16 months, with the loss split into demand,
    /// position and other by the CTR curve, and the `queries` that lost the most.
    #[allow(clippy::type_complexity)]
    #[pg_extern(stable)]
    fn content_decay(
        site: &str,
        window_length: default!(Interval, "'28 days'"),
        queries: default!(i32, 5),
    ) -> TableIterator<
        'static,
        (
            name!(page, String),
            name!(clicks_lost, f64),
            name!(lost_to_demand, f64),
            name!(lost_to_position, f64),
            name!(lost_other, f64),
            name!(clicks_best, i64),
            name!(clicks_now, i64),
            name!(impressions_best, i64),
            name!(impressions_now, i64),
            name!(position_best, Option<f64>),
            name!(position_now, Option<f64>),
            name!(best_window_start, Date),
            name!(best_window_end, Date),
            name!(top_queries, JsonB),
        ),
    > {
        let days = whole_days(&window_length, HISTORY_DAYS / 2);
        if !(0..=100).contains(&queries) {
            invalid_parameter("queries must be from 0 to 100");
        }
        let curve = CtrCurve::from_parameters().unwrap_or_else(|e| spi_failed(e));
        let (pages, last_day) = Spi::connect(|client| {
            let bounds = client.select(
                "SELECT max(date), (max(date) - min(date) + 1) FROM pageperfect.gsc_page_query_daily WHERE site = $1",
                None,
                &[site.into()],
            )?;
            let bounds = bounds.first();
            let (Some(last_day), Some(span)) = (bounds.get::<Date>(1)?, bounds.get::<i32>(2)?) else {
                return Ok::<_, pgrx::spi::Error>((BTreeMap::new(), None));
            };
            let windows = span.min(HISTORY_DAYS) / days;
            let mut pages: BTreeMap<String, (i32, BTreeMap<String, QueryWindows>)> = BTreeMap::new();
            if windows < 2 {
                return Ok((pages, Some(last_day)));
            }
            let rows = client.select(
                "WITH daily AS (SELECT d.page, d.query, d.clicks, d.impressions, d.position, ($5::date - d.date) / $2 AS window_no
                                  FROM pageperfect.gsc_page_query_daily d
                                 WHERE d.site = $1 AND d.date > $5::date - $2 * $3),
                      page_windows AS (SELECT page, window_no, sum(clicks) AS clicks FROM daily GROUP BY page, window_no),
                      best AS (SELECT DISTINCT ON (page) page, window_no, clicks FROM page_windows WHERE window_no > 0
                                ORDER BY page, clicks DESC, window_no),
                      decayed AS (SELECT b.page, b.window_no FROM best b
                                   WHERE b.clicks > coalesce((SELECT w.clicks FROM page_windows w
                                                               WHERE w.page = b.page AND w.window_no = 0), 0))
                 SELECT d.page, k.window_no, d.query, d.window_no = 0, sum(d.clicks)::float8, sum(d.impressions)::float8,
                        (sum(d.position * d.impressions) FILTER (WHERE d.position IS NOT NULL)
                           / nullif(sum(d.impressions) FILTER (WHERE d.position IS NOT NULL), 0))::float8
                   FROM daily d JOIN decayed k ON k.page = d.page AND d.window_no IN (0, k.window_no)
                  GROUP BY d.page, k.window_no, d.query, d.window_no = 0 LIMIT $4",
                None,
                &[site.into(), days.into(), windows.into(), (MAX_KEYWORD_ROWS + 1).into(), last_day.into()],
            )?;
            if rows.len() as i64 > MAX_KEYWORD_ROWS {
                too_many_rows(site);
            }
            for row in rows {
                pgrx::check_for_interrupts!();
                let (page, best_window, query): (String, i32, String) =
                    (row.get(1)?.unwrap_or_default(), row.get(2)?.unwrap_or_default(), row.get(3)?.unwrap_or_default());
                let totals = Totals { clicks: row.get(5)?.unwrap_or(0.0), impressions: row.get(6)?.unwrap_or(0.0), position: row.get(7)? };
                let entry = pages.entry(page).or_insert_with(|| (best_window, BTreeMap::new()));
                let of_query = entry.1.entry(query.clone()).or_insert_with(|| QueryWindows { query, best: Totals::default(), now: Totals::default() });
                if row.get::<bool>(4)?.unwrap_or(false) {
                    of_query.now = totals;
                } else {
                    of_query.best = totals;
                }
            }
            Ok((pages, Some(last_day)))
        })
        .unwrap_or_else(|e| spi_failed(e));

        let last_day = last_day.map_or(0, |d| d.to_pg_epoch_days());
        let mut report: Vec<_> = pages
            .into_iter()
            .map(|(page, (best_window, queries_of_page))| {
                pgrx::check_for_interrupts!();
                let rows: Vec<QueryWindows> = queries_of_page.into_values().collect();
                let decay = page_decay(&rows, |p| curve.expected_ctr(p), queries as usize);
                let end = last_day - best_window * days;
                let top: Vec<_> = decay
                    .top_queries
                    .iter()
                    .map(|(query, loss)| {
                        json!({
                            "query": query,
                            "clicks_lost": two_decimals(loss.clicks_lost),
                            "lost_to_demand": two_decimals(loss.lost_to_demand),
                            "lost_to_position": two_decimals(loss.lost_to_position),
                            "lost_other": two_decimals(loss.lost_other),
                        })
                    })
                    .collect();
                (
                    page,
                    decay.loss.clicks_lost,
                    decay.loss.lost_to_demand,
                    decay.loss.lost_to_position,
                    decay.loss.lost_other,
                    decay.best.clicks as i64,
                    decay.now.clicks as i64,
                    decay.best.impressions as i64,
                    decay.now.impressions as i64,
                    decay.best.position,
                    decay.now.position,
                    Date::saturating_from_raw(end - days + 1),
                    Date::saturating_from_raw(end),
                    JsonB(json!(top)),
                )
            })
            .collect();
        report.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        TableIterator::new(report)
    }

    /// Query clusters of `site` for which two or more pages each get at least `min_share` of
    /// the impressions in the last `window_length`: one row per competing page, the clusters
    /// with most clicks to gain by one strong page first.
    #[allow(clippy::type_complexity)]
    #[pg_extern(stable)]
    fn cannibalization(
        site: &str,
        min_share: default!(f64, 0.1),
        window_length: default!(Interval, "'28 days'"),
    ) -> TableIterator<
        'static,
        (
            name!(query_cluster, String),
            name!(queries, Vec<String>),
            name!(page, String),
            name!(impressions, i64),
            name!(clicks, i64),
            name!(share, f64),
            name!(position, Option<f64>),
            name!(cluster_impressions, i64),
            name!(cluster_clicks, i64),
            name!(single_page_clicks, Option<f64>),
        ),
    > {
        let days = whole_days(&window_length, HISTORY_DAYS);
        if !(0.0..=0.5).contains(&min_share) {
            invalid_parameter("min_share must be from 0 to 0.5 (two pages must be able to reach it)");
        }
        let curve = CtrCurve::from_parameters().unwrap_or_else(|e| spi_failed(e));
        let (rows, clusters) = Spi::connect(|client| {
            let mut rows = Vec::new();
            for row in client.select(
                "WITH last AS (SELECT max(date) AS day FROM pageperfect.gsc_page_query_daily WHERE site = $1)
                 SELECT d.page, d.query, sum(d.clicks)::bigint, sum(d.impressions)::bigint,
                        (sum(d.position * d.impressions) FILTER (WHERE d.position IS NOT NULL)
                           / nullif(sum(d.impressions) FILTER (WHERE d.position IS NOT NULL), 0))::float8
                   FROM pageperfect.gsc_page_query_daily d, last
                  WHERE d.site = $1 AND d.date > last.day - $2
                  GROUP BY d.page, d.query LIMIT $3",
                None,
                &[site.into(), days.into(), (MAX_KEYWORD_ROWS + 1).into()],
            )? {
                if rows.len() % 4096 == 0 {
                    pgrx::check_for_interrupts!();
                }
                rows.push(KeywordRow {
                    page: row.get(1)?.unwrap_or_default(),
                    query: row.get(2)?.unwrap_or_default(),
                    clicks: row.get(3)?.unwrap_or_default(),
                    impressions: row.get(4)?.unwrap_or_default(),
                    position: row.get(5)?,
                });
            }
            let mut clusters = Vec::new();
            for row in client.select(
                "SELECT c.queries FROM pageperfect.keyword_clusters c JOIN pageperfect.pages p ON p.id = c.page_id
                  WHERE EXISTS (SELECT FROM pageperfect.gsc_page_query_daily d
                                 WHERE d.site = $1 AND d.page IN (p.url, p.final_url))",
                None,
                &[site.into()],
            )? {
                clusters.push(row.get::<Vec<String>>(1)?.unwrap_or_default());
            }
            Ok::<_, pgrx::spi::Error>((rows, clusters))
        })
        .unwrap_or_else(|e| spi_failed(e));
        if rows.len() as i64 > MAX_KEYWORD_ROWS {
            too_many_rows(site);
        }
        let found = find_competitors(&rows, &clusters, min_share, |p| curve.expected_ctr(p), &mut || {
            pgrx::check_for_interrupts!();
        });
        TableIterator::new(found.into_iter().map(|c| {
            (c.query_cluster, c.queries, c.page, c.impressions, c.clicks, c.share, c.position, c.cluster_demand, c.cluster_clicks, c.single_page_clicks)
        }))
    }

    /// Paragraphs of the caller's other pages on the same host as `url` (its owner's, for a
    /// superuser) that are closest to one of its topics, one per source page, best first, at
    /// most `lim`; pages that already link to `url` are left out.
    #[allow(clippy::type_complexity)]
    #[pg_extern(stable)]
    fn link_suggestions(
        url: &str,
        lim: default!(i32, 10),
        min_similarity: default!(f64, 0.5),
    ) -> TableIterator<
        'static,
        (
            name!(source_page, String),
            name!(paragraph_id, i64),
            name!(paragraph, String),
            name!(topic, String),
            name!(is_gap, bool),
            name!(anchor_text, String),
            name!(anchor_in_text, bool),
            name!(similarity, f64),
        ),
    > {
        if !(1..=1000).contains(&lim) {
            invalid_parameter("lim must be from 1 to 1000");
        }
        let (page_id, page_url, final_url) = own_page(url);
        let target_urls: Vec<String> = [Some(page_url.as_str()), final_url.as_deref()].into_iter().flatten().filter_map(normalize_url).collect();
        let host = |u: &str| url::Url::parse(u).ok().and_then(|u| u.host_str().map(str::to_string));
        let target_host = host(final_url.as_deref().unwrap_or(&page_url));
        let suggestions = Spi::connect(|client| {
            let mut topics = Vec::new();
            for row in client.select(
                "SELECT c.queries, c.centroid, EXISTS (SELECT FROM pageperfect.rewrite_recommendations r WHERE r.cluster_id = c.id)
                   FROM pageperfect.keyword_clusters c WHERE c.page_id = $1 ORDER BY c.impressions DESC, c.id LIMIT $2",
                None,
                &[page_id.into(), MAX_TOPICS.into()],
            )? {
                let anchors: Vec<String> = row.get(1)?.unwrap_or_default();
                topics.push(Topic {
                    label: anchors.first().cloned().unwrap_or_default(),
                    anchors,
                    vector: row.get(2)?.unwrap_or_default(),
                    is_gap: row.get(3)?.unwrap_or_default(),
                });
            }
            if topics.is_empty() {
                // No Search Console data: the page's headings say what it is about.
                for row in client.select(
                    "SELECT content, embedding FROM pageperfect.page_embeddings WHERE page_id = $1 AND kind = 'heading'
                      ORDER BY position LIMIT $2",
                    None,
                    &[page_id.into(), MAX_TOPICS.into()],
                )? {
                    let heading: String = row.get(1)?.unwrap_or_default();
                    topics.push(Topic { label: heading.clone(), anchors: vec![heading], vector: row.get(2)?.unwrap_or_default(), is_gap: false });
                }
            }
            // The page owner's other pages on the same host that do not link to the page yet
            // (a superuser sees every owner's pages: the owner's are the site's).
            let mut sources = Vec::new();
            for row in client.select(
                "SELECT p.id, coalesce(p.final_url, p.url) FROM pageperfect.pages p
                  WHERE p.id <> $1 AND p.owner = (SELECT t.owner FROM pageperfect.pages t WHERE t.id = $1)
                    AND NOT EXISTS (SELECT FROM pageperfect.page_links l WHERE l.page_id = p.id AND l.target_url = ANY ($2))",
                None,
                &[page_id.into(), target_urls.clone().into()],
            )? {
                let source_url: String = row.get(2)?.unwrap_or_default();
                if target_host.is_some() && host(&source_url) == target_host {
                    sources.push(row.get::<i64>(1)?.unwrap_or_default());
                }
            }
            let mut best = BestPerPage::new(&topics, min_similarity);
            let mut cursor = client.open_cursor(
                "SELECT coalesce(p.final_url, p.url), e.id, e.content, e.embedding
                   FROM pageperfect.page_embeddings e JOIN pageperfect.pages p ON p.id = e.page_id
                  WHERE e.page_id = ANY ($1) AND e.kind <> 'heading'",
                &[sources.into()],
            );
            loop {
                pgrx::check_for_interrupts!();
                let batch = cursor.fetch(FRAGMENTS_PER_FETCH)?;
                if batch.is_empty() {
                    break;
                }
                for row in batch {
                    best.offer(Fragment {
                        page_url: row.get(1)?.unwrap_or_default(),
                        embedding_id: row.get(2)?.unwrap_or_default(),
                        text: row.get(3)?.unwrap_or_default(),
                        vector: row.get(4)?.unwrap_or_default(),
                    });
                }
            }
            Ok::<_, pgrx::spi::Error>(best.finish(lim as usize))
        })
        .unwrap_or_else(|e| spi_failed(e));
        TableIterator::new(suggestions.into_iter().map(|s| {
            (s.source_page, s.embedding_id, s.paragraph, s.topic, s.is_gap, s.anchor_text, s.anchor_in_text, s.similarity)
        }))
    }

    /// The content score of the caller's page `url` now, from its stored fragments, keyword
    /// clusters and content age: the score (0–100), its four parts (0–1, NULL without data)
    /// and the figures behind them.
    #[allow(clippy::type_complexity)]
    #[pg_extern(stable)]
    fn content_score(
        url: &str,
    ) -> TableIterator<
        'static,
        (
            name!(score, i32),
            name!(coverage, Option<f64>),
            name!(opportunity, Option<f64>),
            name!(ctr, Option<f64>),
            name!(freshness, Option<f64>),
            name!(details, JsonB),
        ),
    > {
        let (page_id, ..) = own_page(url);
        let inputs = PageInputs::load(page_id).unwrap_or_else(|e| raise(PgSqlErrorCode::ERRCODE_DATA_EXCEPTION, e.to_string()));
        let score = inputs.score(&inputs.gaps(&[]), None);
        let details = JsonB(serde_json::to_value(&score).unwrap_or_default());
        TableIterator::once((score.score, score.coverage, score.opportunity, score.ctr, score.freshness, details))
    }
}

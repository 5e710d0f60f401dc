//! `keyword_clustering`: the page's Search Console queries of its last 28 days of data, embedded
//! (through the cache), clustered with DBSCAN on cosine distance (eps 0.3, min points 2), and
//! stored as `keyword_clusters` with their impressions, clicks, position and centroid.

use super::dbscan::dbscan_cosine;
use super::embed::Embedder;
use super::gap::centroid;
use super::segment::text_hash;
use crate::queue::stage::{Stage, StageError, Work};
use pgrx::prelude::*;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;

const EPS: f64 = 0.3;
const MIN_POINTS: usize = 2;
/// Most queries clustered per page (the most seen first).
const MAX_QUERIES: i64 = super::dbscan::MAX_POINTS as i64;

pub struct KeywordClustering;

/// One query of the page with its totals.
#[derive(Clone)]
struct Query {
    text: String,
    hash: String,
    impressions: i64,
    clicks: i64,
    position: Option<f64>,
}

pub struct Input {
    page_id: i64,
    queries: Vec<Query>,
    embedder: Embedder,
    cached: HashMap<String, Vec<f32>>,
    /// pageperfect.dbscan_threads, read here: settings are read on the worker's own thread.
    threads: usize,
}

pub struct Cluster {
    label: i32,
    /// Most impressions first (the order the queries were read in), with their impressions.
    queries: Vec<String>,
    query_impressions: Vec<i64>,
    impressions: i64,
    clicks: i64,
    position: Option<f64>,
    centroid: Vec<f32>,
}

pub struct Output {
    page_id: i64,
    embedder: Embedder,
    fresh: HashMap<String, Vec<f32>>,
    clusters: Vec<Cluster>,
    queries: usize,
    noise: usize,
    /// The model server failed after embedding some batches: those are kept (cached) for the
    /// next attempt, which then sends only the rest, and the attempt fails with this.
    failed: Option<StageError>,
}

/// Groups the clustered queries by DBSCAN label (noise dropped), in label order, with
/// impression-weighted positions.
fn build_clusters(clustered: &[(&Query, &[f32])], labels: &[i32]) -> Vec<Cluster> {
    let mut members: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
    for (i, label) in labels.iter().enumerate().filter(|(_, l)| **l >= 0) {
        members.entry(*label).or_default().push(i);
    }
    members
        .into_iter()
        .map(|(label, indices)| {
            let queries: Vec<&Query> = indices.iter().map(|&i| clustered[i].0).collect();
            let impressions: i64 = queries.iter().map(|q| q.impressions).sum();
            let weighted: f64 = queries.iter().filter_map(|q| q.position.map(|p| p * q.impressions as f64)).sum();
            Cluster {
                label,
                queries: queries.iter().map(|q| q.text.clone()).collect(),
                query_impressions: queries.iter().map(|q| q.impressions).collect(),
                impressions,
                clicks: queries.iter().map(|q| q.clicks).sum(),
                position: (impressions > 0).then(|| weighted / impressions as f64),
                centroid: centroid(&indices.iter().map(|&i| clustered[i].1).collect::<Vec<_>>()),
            }
        })
        .collect()
}

impl Stage for KeywordClustering {
    const NAME: &'static str = "keyword_clustering";
    type Input = Input;
    type Output = Output;

    fn prepare(&self, work: &Work) -> Result<Input, StageError> {
        let page_id = work.require_page()?;
        let queries = Spi::connect(|client| {
            let rows = client.select(
                // Only the sites the page's owner may use (gsc_site_owners; superusers: all).
                "WITH page AS (SELECT p.url, p.final_url, r.oid AS owner, r.rolsuper
                                 FROM pageperfect.pages p JOIN pg_catalog.pg_roles r ON r.rolname = p.owner
                                WHERE p.id = $1),
                      rows AS (SELECT d.* FROM pageperfect.gsc_page_query_daily d, page
                                WHERE d.page IN (page.url, page.final_url)
                                  AND (page.rolsuper OR EXISTS (
                                        SELECT FROM pageperfect.gsc_site_owners o JOIN pg_catalog.pg_roles g ON g.rolname = o.owner
                                         WHERE o.site = d.site AND pg_catalog.pg_has_role(page.owner, g.oid, 'USAGE'))))
                 SELECT query, sum(impressions)::bigint, sum(clicks)::bigint,
                        (sum(position * impressions) / nullif(sum(impressions) FILTER (WHERE position IS NOT NULL), 0))::float8
                   FROM rows WHERE date > (SELECT max(date) FROM rows) - 28
                  GROUP BY query ORDER BY 2 DESC, query LIMIT $2",
                None,
                &[page_id.into(), MAX_QUERIES.into()],
            )?;
            let mut queries = Vec::new();
            for row in rows {
                let text: String = row.get(1)?.unwrap_or_default();
                queries.push(Query {
                    hash: text_hash(&text),
                    text,
                    impressions: row.get(2)?.unwrap_or(0),
                    clicks: row.get(3)?.unwrap_or(0),
                    position: row.get(4)?,
                });
            }
            Ok::<_, pgrx::spi::Error>(queries)
        })?;
        let embedder = Embedder::from_settings();
        let cached = embedder.cached(queries.iter().map(|q| q.hash.clone()).collect())?;
        let threads = crate::config::DBSCAN_THREADS.get() as usize;
        Ok(Input { page_id, queries, embedder, cached, threads })
    }

    fn run(&self, work: &Work, input: Input) -> impl Future<Output = Result<Output, StageError>> + Send + 'static {
        let deadline = work.call_deadline();
        async move {
            let texts = input.queries.iter().map(|q| (q.hash.clone(), q.text.clone())).collect();
            let Input { page_id, queries, embedder, cached, threads } = input;
            let queries_count = queries.len();
            let fresh = match embedder.embed_missing(texts, &cached, deadline).await {
                Ok(fresh) => fresh,
                Err(partial) if !partial.embedded.is_empty() => {
                    let failed = Some(partial.error);
                    return Ok(Output { page_id, embedder, fresh: partial.embedded, clusters: vec![], queries: queries_count, noise: 0, failed });
                }
                Err(partial) => return Err(partial.error),
            };
            let (clusters, noise, fresh) = tokio::task::spawn_blocking(move || {
                // Queries without a usable vector (no words at all) cannot be clustered.
                let clustered: Vec<(&Query, &[f32])> = queries
                    .iter()
                    .filter_map(|q| fresh.get(&q.hash).or_else(|| cached.get(&q.hash)).map(|v| (q, v.as_slice())))
                    .filter(|(_, v)| v.iter().any(|x| *x != 0.0))
                    .collect();
                // The vectors' own length: with the model's own dimensions the setting says 0.
                let dims = clustered.first().map_or(1, |(_, v)| v.len());
                if clustered.iter().any(|(_, v)| v.len() != dims) {
                    return Err(StageError::permanent("the page's queries were embedded with different dimensions; run the workflow again"));
                }
                let flat: Vec<f32> = clustered.iter().flat_map(|(_, v)| v.iter().copied()).collect();
                let labels = if clustered.is_empty() {
                    Vec::new()
                } else {
                    dbscan_cosine(&flat, dims, EPS, MIN_POINTS, threads).map_err(|e| StageError::permanent(format!("clustering failed: {e}")))?
                };
                let clusters = build_clusters(&clustered, &labels);
                let noise = labels.iter().filter(|l| **l < 0).count();
                Ok::<_, StageError>((clusters, noise, fresh))
            })
            .await
            .map_err(|e| StageError::retryable(format!("clustering failed: {e}")))??;
            Ok(Output { page_id, embedder, fresh, clusters, queries: queries_count, noise, failed: None })
        }
    }

    /// The page's queries with their totals, the embedder and the clustering parameters.
    fn input_hash(&self, _work: &Work, input: &Input) -> Option<String> {
        let queries: Vec<_> = input.queries.iter().map(|q| (&q.text, q.impressions, q.clicks, q.position)).collect();
        Some(super::input_digest(&(input.page_id, queries, input.embedder.identity(), EPS, MIN_POINTS)))
    }

    fn store(&self, work: &Work, output: Output) -> Result<Value, StageError> {
        output.embedder.remember(&output.fresh)?;
        if let Some(error) = output.failed {
            return Err(StageError::Kept(Box::new(error)));
        }
        Spi::run_with_args("DELETE FROM pageperfect.keyword_clusters WHERE page_id = $1", &[output.page_id.into()])?;
        for cluster in &output.clusters {
            Spi::run_with_args(
                "INSERT INTO pageperfect.keyword_clusters (page_id, job_id, label, queries, query_impressions, impressions, clicks,
                                                         position, centroid)
                 VALUES ($1, $2::uuid, $3, $4, $5, $6, $7, $8, $9)",
                &[
                    output.page_id.into(),
                    work.job_id.as_str().into(),
                    cluster.label.into(),
                    cluster.queries.clone().into(),
                    cluster.query_impressions.clone().into(),
                    cluster.impressions.into(),
                    cluster.clicks.into(),
                    cluster.position.into(),
                    cluster.centroid.clone().into(),
                ],
            )?;
        }
        Ok(json!({
            "page_id": output.page_id,
            "queries": output.queries,
            "clusters": output.clusters.len(),
            "noise": output.noise,
            "provider": output.embedder.provider(),
        }))
    }
}

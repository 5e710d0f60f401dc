//! Keyword cannibalization: query clusters for which two or more of a site's pages get
//! impressions, so that they compete with each other instead of one page ranking well.
//!
//! Queries that the keyword clustering put in one cluster (on any of the site's pages) form one
//! query cluster, joined across pages when they share a query; a query in no cluster is a
//! cluster of its own. A page competes in a cluster when it has at least `min_share` of the
//! cluster's impressions. The cluster's demand is, per query, the most impressions any one
//! page got (both pages are usually shown for the same search), summed; a single strong page
//! would get `demand · curve(best position among the competing pages)` clicks.

use std::collections::HashMap;

/// One page's totals for one query.
#[derive(Debug, Clone, PartialEq)]
pub struct KeywordRow {
    pub page: String,
    pub query: String,
    pub clicks: i64,
    pub impressions: i64,
    pub position: Option<f64>,
}

/// A page competing in a query cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct Competitor {
    /// The cluster's query with the most demand.
    pub query_cluster: String,
    /// Its queries, most demand first (at most `QUERIES_SHOWN`).
    pub queries: Vec<String>,
    pub page: String,
    pub clicks: i64,
    pub impressions: i64,
    /// The page's share of the impressions the site's pages got in the cluster.
    pub share: f64,
    pub position: Option<f64>,
    pub cluster_demand: i64,
    pub cluster_clicks: i64,
    /// Clicks one page at the best competing position would get; None without positions.
    pub single_page_clicks: Option<f64>,
}

/// How many of a cluster's queries a row lists.
pub const QUERIES_SHOWN: usize = 5;

/// The competing pages of every cluster with at least two, the clusters with the most clicks to
/// gain first (then by name), each cluster's pages by share. `check` runs every few thousand
/// rows (to let a cancel through).
pub fn find_competitors(
    rows: &[KeywordRow],
    clusters: &[Vec<String>],
    min_share: f64,
    expected_ctr: impl Fn(f64) -> f64,
    check: &mut dyn FnMut(),
) -> Vec<Competitor> {
    let mut groups = QueryGroups::default();
    for (i, cluster) in clusters.iter().enumerate() {
        if i % 4096 == 0 {
            check();
        }
        let mut members = cluster.iter();
        if let Some(first) = members.next() {
            let first = groups.id(first);
            for query in members {
                let other = groups.id(query);
                groups.union(first, other);
            }
        }
    }
    // Rows by the root of their query's group.
    let mut by_group: HashMap<usize, Vec<&KeywordRow>> = HashMap::new();
    for (i, row) in rows.iter().enumerate() {
        if i % 4096 == 0 {
            check();
        }
        let id = groups.id(&row.query);
        by_group.entry(groups.root(id)).or_default().push(row);
    }
    let mut found: Vec<(f64, Vec<Competitor>)> = by_group
        .into_values()
        .filter_map(|group| competing_in(&group, min_share, &expected_ctr))
        .collect();
    found.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1[0].query_cluster.cmp(&b.1[0].query_cluster)));
    found.into_iter().flat_map(|(_, competitors)| competitors).collect()
}

/// The competitors of one group of rows with the clicks a single page would gain, if at least two compete.
fn competing_in(rows: &[&KeywordRow], min_share: f64, expected_ctr: &impl Fn(f64) -> f64) -> Option<(f64, Vec<Competitor>)> {
    let mut demand_by_query: HashMap<&str, i64> = HashMap::new();
    let mut pages: HashMap<&str, (i64, i64, f64, f64)> = HashMap::new(); // clicks, impressions, Σ position·impressions, Σ impressions with a position
    for row in rows {
        let demand = demand_by_query.entry(&row.query).or_default();
        *demand = (*demand).max(row.impressions);
        let page = pages.entry(&row.page).or_default();
        page.0 += row.clicks;
        page.1 += row.impressions;
        if let Some(position) = row.position {
            page.2 += position * row.impressions as f64;
            page.3 += row.impressions as f64;
        }
    }
    let total_impressions: i64 = pages.values().map(|p| p.1).sum();
    if total_impressions == 0 {
        return None;
    }
    let mut competing: Vec<(&str, i64, i64, f64, Option<f64>)> = pages
        .iter()
        .map(|(page, p)| (*page, p.0, p.1, p.1 as f64 / total_impressions as f64, (p.3 > 0.0).then(|| p.2 / p.3)))
        .filter(|(_, _, _, share, _)| *share >= min_share)
        .collect();
    if competing.len() < 2 {
        return None;
    }
    competing.sort_by(|a, b| b.3.total_cmp(&a.3).then_with(|| a.0.cmp(b.0)));
    let mut queries: Vec<(&str, i64)> = demand_by_query.into_iter().collect();
    queries.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let cluster_demand: i64 = queries.iter().map(|q| q.1).sum();
    let cluster_clicks: i64 = pages.values().map(|p| p.0).sum();
    let best_position = competing.iter().filter_map(|c| c.4).min_by(f64::total_cmp);
    let single_page_clicks = best_position.map(|position| cluster_demand as f64 * expected_ctr(position));
    let gain = single_page_clicks.map_or(f64::NEG_INFINITY, |clicks| clicks - cluster_clicks as f64);
    let names: Vec<String> = queries.iter().take(QUERIES_SHOWN).map(|q| q.0.to_string()).collect();
    let competitors = competing
        .into_iter()
        .map(|(page, clicks, impressions, share, position)| Competitor {
            query_cluster: names[0].clone(),
            queries: names.clone(),
            page: page.to_string(),
            clicks,
            impressions,
            share,
            position,
            cluster_demand,
            cluster_clicks,
            single_page_clicks,
        })
        .collect();
    Some((gain, competitors))
}

/// Union–find over query texts.
#[derive(Default)]
struct QueryGroups {
    ids: HashMap<String, usize>,
    parent: Vec<usize>,
}

impl QueryGroups {
    fn id(&mut self, query: &str) -> usize {
        if let Some(&id) = self.ids.get(query) {
            return id;
        }
        let id = self.parent.len();
        self.parent.push(id);
        self.ids.insert(query.to_string(), id);
        id
    }

    fn root(&mut self, mut id: usize) -> usize {
        while self.parent[id] != id {
            self.parent[id] = self.parent[self.parent[id]];
            id = self.parent[id];
        }
        id
    }

    fn union(&mut self, a: usize, b: usize) {
        let (a, b) = (self.root(a), self.root(b));
        if a != b {
            self.parent[a.max(b)] = a.min(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctr(position: f64) -> f64 {
        0.3 / position
    }

    fn row(page: &str, query: &str, clicks: i64, impressions: i64, position: f64) -> KeywordRow {
        KeywordRow { page: page.into(), query: query.into(), clicks, impressions, position: Some(position) }
    }

    fn find(rows: &[KeywordRow], clusters: &[Vec<String>], min_share: f64) -> Vec<Competitor> {
        find_competitors(rows, clusters, min_share, ctr, &mut || {})
    }

    fn cluster(queries: &[&str]) -> Vec<String> {
        queries.iter().map(|q| q.to_string()).collect()
    }

    #[test]
    fn two_pages_on_one_query_compete_and_the_gain_uses_the_best_position() {
        let rows = [row("/a", "cold brew", 20, 1000, 6.0), row("/b", "cold brew", 15, 600, 10.0), row("/a", "espresso", 50, 500, 2.0)];
        let found = find(&rows, &[], 0.1);
        assert_eq!(found.len(), 2, "{found:?}");
        let (a, b) = (&found[0], &found[1]);
        assert_eq!((a.page.as_str(), b.page.as_str(), a.query_cluster.as_str()), ("/a", "/b", "cold brew"));
        assert!((a.share - 1000.0 / 1600.0).abs() < 1e-12 && (b.share - 600.0 / 1600.0).abs() < 1e-12);
        // Demand is the larger page's 1000 impressions; one page at position 6 would get 50 clicks.
        assert_eq!((a.cluster_demand, a.cluster_clicks), (1000, 35));
        assert!((a.single_page_clicks.unwrap() - 50.0).abs() < 1e-9);
    }

    #[test]
    fn clusters_join_queries_across_pages_and_chain() {
        // "ratio" and "grams" were clustered on /a, "grams" and "scale" on /b: one cluster.
        let rows = [row("/a", "ratio", 10, 500, 4.0), row("/b", "scale", 10, 400, 5.0), row("/c", "unrelated", 1, 10, 9.0)];
        let clusters = [cluster(&["ratio", "grams"]), cluster(&["grams", "scale"])];
        let found = find(&rows, &clusters, 0.1);
        assert_eq!(found.iter().map(|c| c.page.as_str()).collect::<Vec<_>>(), ["/a", "/b"]);
        assert_eq!(found[0].queries, ["ratio", "scale"]);
        assert_eq!(found[0].cluster_demand, 900);
        // Without the clusters nothing competes.
        assert!(find(&rows, &[], 0.1).is_empty());
    }

    #[test]
    fn pages_below_the_minimum_share_do_not_count() {
        let rows = [row("/a", "q", 10, 950, 3.0), row("/b", "q", 0, 50, 40.0)];
        assert!(find(&rows, &[], 0.1).is_empty());
        assert_eq!(find(&rows, &[], 0.05).len(), 2);
    }

    #[test]
    fn clusters_with_more_to_gain_come_first() {
        let rows = [
            row("/a", "small", 1, 100, 5.0),
            row("/b", "small", 1, 100, 5.0),
            row("/a", "big", 5, 1000, 5.0),
            row("/c", "big", 5, 1000, 5.0),
        ];
        let found = find(&rows, &[], 0.1);
        assert_eq!(found.iter().map(|c| (c.query_cluster.as_str(), c.page.as_str())).collect::<Vec<_>>(),
                   [("big", "/a"), ("big", "/c"), ("small", "/a"), ("small", "/b")]);
    }

    #[test]
    fn without_positions_there_is_no_estimate_and_zero_impressions_are_ignored() {
        let mut rows = [row("/a", "q", 1, 100, 1.0), row("/b", "q", 1, 100, 1.0)];
        rows.iter_mut().for_each(|r| r.position = None);
        assert_eq!(find(&rows, &[], 0.1)[0].single_page_clicks, None);
        assert!(find(&[row("/a", "q", 0, 0, 1.0), row("/b", "q", 0, 0, 1.0)], &[], 0.1).is_empty());
    }
}

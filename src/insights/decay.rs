//! Content decay: how many clicks a page lost between its best window and the current one, and
//! why. Per query, with the best window's totals B and the current window's C:
//!
//! - lost to demand: `(impressions_B − impressions_C) · ctr_B`, fewer searches at the old CTR;
//! - lost to position: `impressions_C · ctr_B · (1 − curve(position_C) / curve(position_B))`, the
//!   old CTR scaled by what the CTR curve says the move in position costs;
//! - lost otherwise: the rest (the snippet, rich results above it), so the three add up to
//!   `clicks_B − clicks_C`.
//!
//! A query new in the current window has no old CTR: all it changes counts as demand.

use serde::Serialize;

/// A window's totals for one query (or one page).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Totals {
    pub clicks: f64,
    pub impressions: f64,
    /// Impression-weighted average position; None when unknown.
    pub position: Option<f64>,
}

/// Clicks lost and where they went; negative values are gains.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Loss {
    pub clicks_lost: f64,
    pub lost_to_demand: f64,
    pub lost_to_position: f64,
    pub lost_other: f64,
}

impl std::ops::AddAssign for Loss {
    fn add_assign(&mut self, other: Loss) {
        self.clicks_lost += other.clicks_lost;
        self.lost_to_demand += other.lost_to_demand;
        self.lost_to_position += other.lost_to_position;
        self.lost_other += other.lost_other;
    }
}

/// The loss from `best` to `now`, split by the CTR curve `expected_ctr`.
pub fn decompose(best: &Totals, now: &Totals, expected_ctr: impl Fn(f64) -> f64) -> Loss {
    let clicks_lost = best.clicks - now.clicks;
    if best.impressions <= 0.0 {
        return Loss { clicks_lost, lost_to_demand: clicks_lost, ..Loss::default() };
    }
    let best_ctr = best.clicks / best.impressions;
    let lost_to_demand = (best.impressions - now.impressions) * best_ctr;
    // How much of the old CTR the new position keeps, by the curve; all of it when unknown.
    let kept = match (best.position, now.position) {
        (Some(then), Some(position)) if expected_ctr(then) > 0.0 => expected_ctr(position) / expected_ctr(then),
        _ => 1.0,
    };
    let lost_to_position = now.impressions * best_ctr * (1.0 - kept);
    Loss { clicks_lost, lost_to_demand, lost_to_position, lost_other: clicks_lost - lost_to_demand - lost_to_position }
}

/// One query of a page in the best and the current window.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryWindows {
    pub query: String,
    pub best: Totals,
    pub now: Totals,
}

/// A page's decay: the sum of its queries' losses, its totals in each window, and the queries
/// that lost the most clicks (at most `top`, most first).
#[derive(Debug, Clone, PartialEq)]
pub struct PageDecay {
    pub loss: Loss,
    pub best: Totals,
    pub now: Totals,
    pub top_queries: Vec<(String, Loss)>,
}

pub fn page_decay(queries: &[QueryWindows], expected_ctr: impl Fn(f64) -> f64, top: usize) -> PageDecay {
    let mut loss = Loss::default();
    let mut losses: Vec<(String, Loss)> = Vec::with_capacity(queries.len());
    for query in queries {
        let query_loss = decompose(&query.best, &query.now, &expected_ctr);
        loss += query_loss;
        losses.push((query.query.clone(), query_loss));
    }
    losses.sort_by(|a, b| b.1.clicks_lost.total_cmp(&a.1.clicks_lost).then_with(|| a.0.cmp(&b.0)));
    losses.retain(|(_, l)| l.clicks_lost > 0.0);
    losses.truncate(top);
    PageDecay {
        loss,
        best: sum_totals(queries.iter().map(|q| &q.best)),
        now: sum_totals(queries.iter().map(|q| &q.now)),
        top_queries: losses,
    }
}

/// Summed clicks and impressions, with the impression-weighted position of those that have one.
fn sum_totals<'a>(totals: impl Iterator<Item = &'a Totals>) -> Totals {
    let (mut sum, mut weighted, mut positioned) = (Totals::default(), 0.0, 0.0);
    for t in totals {
        sum.clicks += t.clicks;
        sum.impressions += t.impressions;
        if let Some(position) = t.position {
            weighted += position * t.impressions;
            positioned += t.impressions;
        }
    }
    sum.position = (positioned > 0.0).then(|| weighted / positioned);
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 30% at position 1, 10% at 3, 5% at 6.
    fn ctr(position: f64) -> f64 {
        0.3 / position
    }

    fn totals(clicks: f64, impressions: f64, position: Option<f64>) -> Totals {
        Totals { clicks, impressions, position }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn fewer_searches_at_the_same_position_is_demand() {
        let loss = decompose(&totals(100.0, 1000.0, Some(3.0)), &totals(50.0, 500.0, Some(3.0)), ctr);
        assert_eq!(loss, Loss { clicks_lost: 50.0, lost_to_demand: 50.0, lost_to_position: 0.0, lost_other: 0.0 });
    }

    #[test]
    fn a_drop_from_3_to_6_is_position() {
        // Same searches; the curve halves from 3 to 6 and so do the clicks.
        let loss = decompose(&totals(100.0, 1000.0, Some(3.0)), &totals(50.0, 1000.0, Some(6.0)), ctr);
        assert!(close(loss.lost_to_position, 50.0) && close(loss.lost_to_demand, 0.0) && close(loss.lost_other, 0.0), "{loss:?}");
    }

    #[test]
    fn both_together_add_up_and_the_rest_is_other() {
        // 1000 → 600 impressions at CTR 10%: 40 to demand. 3 → 6 keeps half the CTR: 600 · 0.1 · 0.5
        // = 30 to position. 30 clicks were expected and 20 came: 10 lost otherwise.
        let loss = decompose(&totals(100.0, 1000.0, Some(3.0)), &totals(20.0, 600.0, Some(6.0)), ctr);
        assert!(close(loss.clicks_lost, 80.0));
        assert!(close(loss.lost_to_demand, 40.0) && close(loss.lost_to_position, 30.0) && close(loss.lost_other, 10.0), "{loss:?}");
    }

    #[test]
    fn gains_are_negative_losses_and_new_queries_count_as_demand() {
        let better = decompose(&totals(10.0, 100.0, Some(6.0)), &totals(20.0, 100.0, Some(3.0)), ctr);
        assert!(close(better.clicks_lost, -10.0) && close(better.lost_to_position, -10.0), "{better:?}");
        let new = decompose(&Totals::default(), &totals(7.0, 70.0, Some(2.0)), ctr);
        assert_eq!(new, Loss { clicks_lost: -7.0, lost_to_demand: -7.0, lost_to_position: 0.0, lost_other: 0.0 });
        // Without positions nothing is put down to position.
        let unknown = decompose(&totals(10.0, 100.0, None), &totals(5.0, 100.0, Some(9.0)), ctr);
        assert!(close(unknown.lost_other, 5.0) && unknown.lost_to_position == 0.0);
    }

    #[test]
    fn a_page_sums_its_queries_and_names_the_worst() {
        let queries = [
            QueryWindows { query: "a".into(), best: totals(100.0, 1000.0, Some(3.0)), now: totals(50.0, 500.0, Some(3.0)) },
            QueryWindows { query: "b".into(), best: totals(100.0, 1000.0, Some(3.0)), now: totals(50.0, 1000.0, Some(6.0)) },
            QueryWindows { query: "c".into(), best: totals(10.0, 100.0, Some(3.0)), now: totals(5.0, 100.0, Some(3.0)) },
            QueryWindows { query: "d".into(), best: Totals::default(), now: totals(5.0, 50.0, Some(1.0)) },
        ];
        let page = page_decay(&queries, ctr, 2);
        assert!(close(page.loss.clicks_lost, 100.0), "{:?}", page.loss);
        assert!(close(page.loss.lost_to_demand, 45.0) && close(page.loss.lost_to_position, 50.0) && close(page.loss.lost_other, 5.0));
        assert_eq!(page.top_queries.iter().map(|(q, _)| q.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!((page.best.clicks, page.now.clicks, page.best.impressions), (210.0, 110.0, 2100.0));
        assert!(close(page.now.position.unwrap(), (500.0 * 3.0 + 1000.0 * 6.0 + 100.0 * 3.0 + 50.0) / 1650.0));
    }
}

//! Internal-link suggestions: for a target page, the paragraphs of the site's other pages that
//! are closest (cosine similarity of embeddings) to one of the target's topics (its keyword
//! clusters, gaps marked; its headings when it has no clusters), one per source page, so that an
//! editor links from there to the target. The anchor text is the topic's query that already
//! occurs in the paragraph (then only the link is added), else its top query. Pages that
//! already link to the target are left out by the caller.

use crate::pipeline::gap::cosine;
use std::collections::HashMap;

/// Something the target page is about.
#[derive(Debug, Clone, PartialEq)]
pub struct Topic {
    pub label: String,
    /// Anchor texts to use, best first (the cluster's queries by impressions, or the heading).
    pub anchors: Vec<String>,
    pub is_gap: bool,
    pub vector: Vec<f32>,
}

/// A paragraph of another page.
#[derive(Debug, Clone, PartialEq)]
pub struct Fragment {
    pub page_url: String,
    pub embedding_id: i64,
    pub text: String,
    pub vector: Vec<f32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Suggestion {
    pub source_page: String,
    pub embedding_id: i64,
    pub paragraph: String,
    pub topic: String,
    pub is_gap: bool,
    pub anchor_text: String,
    /// Whether the anchor text already occurs in the paragraph.
    pub anchor_in_text: bool,
    pub similarity: f64,
}

/// The best suggestion per source page so far, fed one fragment at a time (fragments arrive in
/// pages of rows, so memory stays bounded by the number of source pages).
pub struct BestPerPage<'a> {
    topics: &'a [Topic],
    min_similarity: f64,
    best: HashMap<String, (f64, i64, usize, Fragment)>,
}

impl<'a> BestPerPage<'a> {
    pub fn new(topics: &'a [Topic], min_similarity: f64) -> Self {
        BestPerPage { topics, min_similarity, best: HashMap::new() }
    }

    /// Considers `fragment`; fragments whose vector length differs from a topic's (another
    /// embedder's) are not compared with it.
    pub fn offer(&mut self, fragment: Fragment) {
        let closest = self
            .topics
            .iter()
            .enumerate()
            .filter(|(_, topic)| topic.vector.len() == fragment.vector.len())
            .map(|(i, topic)| (cosine(&topic.vector, &fragment.vector), i))
            .max_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)));
        let Some((similarity, topic)) = closest.filter(|(similarity, _)| *similarity >= self.min_similarity) else {
            return;
        };
        let better = |(s, id, ..): &(f64, i64, usize, Fragment)| similarity > *s || (similarity == *s && fragment.embedding_id < *id);
        if self.best.get(&fragment.page_url).is_none_or(better) {
            self.best.insert(fragment.page_url.clone(), (similarity, fragment.embedding_id, topic, fragment));
        }
    }

    /// The suggestions, most similar first (ties by page), at most `limit`.
    pub fn finish(self, limit: usize) -> Vec<Suggestion> {
        let mut found: Vec<Suggestion> = self
            .best
            .into_values()
            .map(|(similarity, embedding_id, topic, fragment)| {
                let topic = &self.topics[topic];
                let (anchor_text, anchor_in_text) = anchor_for(topic, &fragment.text);
                Suggestion {
                    source_page: fragment.page_url,
                    embedding_id,
                    paragraph: fragment.text,
                    topic: topic.label.clone(),
                    is_gap: topic.is_gap,
                    anchor_text,
                    anchor_in_text,
                    similarity,
                }
            })
            .collect();
        found.sort_by(|a, b| b.similarity.total_cmp(&a.similarity).then_with(|| a.source_page.cmp(&b.source_page)));
        found.truncate(limit);
        found
    }
}

/// The first of the topic's anchors found in `text` (case-insensitively, as it is written
/// there), else its first anchor.
fn anchor_for(topic: &Topic, text: &str) -> (String, bool) {
    let lower = text.to_lowercase();
    for anchor in &topic.anchors {
        let wanted = anchor.to_lowercase();
        if wanted.is_empty() {
            continue;
        }
        // Lowercasing can change byte lengths (rarely): quote the text only when it did not.
        if let Some(at) = lower.find(&wanted) {
            let quoted = (lower.len() == text.len()).then(|| text.get(at..at + wanted.len())).flatten();
            return (quoted.unwrap_or(anchor).to_string(), true);
        }
    }
    (topic.anchors.first().cloned().unwrap_or_else(|| topic.label.clone()), false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(label: &str, anchors: &[&str], vector: &[f32]) -> Topic {
        Topic { label: label.into(), anchors: anchors.iter().map(|a| a.to_string()).collect(), is_gap: false, vector: vector.to_vec() }
    }

    fn fragment(page: &str, id: i64, text: &str, vector: &[f32]) -> Fragment {
        Fragment { page_url: page.into(), embedding_id: id, text: text.into(), vector: vector.to_vec() }
    }

    fn suggest(topics: &[Topic], fragments: Vec<Fragment>, min_similarity: f64, limit: usize) -> Vec<Suggestion> {
        let mut best = BestPerPage::new(topics, min_similarity);
        fragments.into_iter().for_each(|f| best.offer(f));
        best.finish(limit)
    }

    #[test]
    fn each_source_page_gets_its_closest_paragraph_for_its_closest_topic() {
        let topics = [topic("cold brew ratio", &["cold brew ratio", "cold brew"], &[1.0, 0.0, 0.0]), topic("grind", &["grind size"], &[0.0, 1.0, 0.0])];
        let found = suggest(
            &topics,
            vec![
                fragment("/a", 1, "Iced drinks need a strong base.", &[0.6, 0.0, 0.8]),
                fragment("/a", 2, "Our Cold Brew steeps overnight.", &[0.9, 0.1, 0.0]),
                fragment("/b", 3, "A burr grinder helps.", &[0.1, 1.0, 0.0]),
                fragment("/c", 4, "Nothing related.", &[0.0, 0.0, 1.0]),
            ],
            0.5,
            10,
        );
        assert_eq!(found.iter().map(|s| (s.source_page.as_str(), s.embedding_id)).collect::<Vec<_>>(), [("/b", 3), ("/a", 2)]);
        let a = &found[1];
        assert_eq!((a.topic.as_str(), a.anchor_text.as_str(), a.anchor_in_text), ("cold brew ratio", "Cold Brew", true));
        let b = &found[0];
        assert_eq!((b.anchor_text.as_str(), b.anchor_in_text), ("grind size", false));
        assert!((b.similarity - 1.0 / 1.01_f64.sqrt()).abs() < 1e-6);
    }

    #[test]
    fn below_the_minimum_or_other_dimensions_nothing_is_suggested_and_the_limit_holds() {
        let topics = [topic("t", &["t"], &[1.0, 0.0])];
        assert!(suggest(&topics, vec![fragment("/a", 1, "x", &[1.0, 1.0])], 0.8, 10).is_empty());
        assert!(suggest(&topics, vec![fragment("/a", 1, "x", &[1.0, 0.0, 0.0])], 0.0, 10).is_empty());
        let many: Vec<Fragment> = (0..5).map(|i| fragment(&format!("/p{i}"), i, "x", &[1.0, i as f32 * 0.1])).collect();
        let found = suggest(&topics, many, 0.0, 2);
        assert_eq!(found.iter().map(|s| s.source_page.as_str()).collect::<Vec<_>>(), ["/p0", "/p1"]);
    }

    #[test]
    fn ties_pick_the_lowest_embedding_id() {
        let topics = [topic("t", &["t"], &[1.0, 0.0])];
        let found = suggest(&topics, vec![fragment("/a", 9, "x", &[2.0, 0.0]), fragment("/a", 4, "y", &[1.0, 0.0])], 0.0, 10);
        assert_eq!(found[0].embedding_id, 4);
    }
}

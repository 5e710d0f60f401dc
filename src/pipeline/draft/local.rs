//! The `local` drafter: a structured outline for the top gap, written from the gap data alone
//! (no model, no network): the heading to add, the queries to cover, the closest existing
//! paragraph to extend, and a suggested section.

use super::request::DraftRequest;
use crate::excerpt;

pub const PROVIDER: &str = "local";
pub const MODEL: &str = "pageperfect-outline-v1";

/// "sourdough starter feeding" → "Sourdough Starter Feeding"
fn title_case(text: &str) -> String {
    text.split_whitespace()
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map(|first| first.to_uppercase().chain(chars).collect::<String>()).unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The outline, in Markdown.
pub fn draft(request: &DraftRequest) -> String {
    let topic = request.queries.first().map(|q| title_case(q)).unwrap_or_else(|| "The missing topic".to_string());
    let mut out = format!("## {topic}\n\n");
    out.push_str(&format!(
        "Searchers reach {} with {} queries on this topic ({} impressions in 28 days), but the page's closest text matches it at only {:.2} cosine similarity.",
        request.page_title.as_deref().map(|t| format!("\"{t}\"")).unwrap_or_else(|| "this page".to_string()),
        request.queries.len(),
        request.impressions,
        request.similarity,
    ));
    if let Some(gain) = request.estimated_clicks_gain.filter(|g| *g >= 1.0) {
        out.push_str(&format!(" Covering it well could bring about {gain:.0} more clicks."));
    }
    out.push_str("\n\n### Questions to answer\n");
    for query in request.queries.iter().take(8) {
        out.push_str(&format!("- {}\n", query));
    }
    if let Some(paragraph) = request.closest_paragraphs.first() {
        out.push_str(&format!("\n### Extend the closest paragraph\n> {}\n", excerpt(paragraph, 280)));
    }
    out.push_str(&format!("\n### Suggested section\n- Add a section \"{topic}\""));
    match request.headings.last() {
        Some(after) => out.push_str(&format!(" after \"{after}\".\n")),
        None => out.push_str(".\n"),
    }
    out.push_str(&format!("- Open by answering \"{}\" in one or two sentences.\n", request.queries.first().map(String::as_str).unwrap_or(&topic)));
    out.push_str("- Give each remaining question a short paragraph or a list item, using the searchers' own words.\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use super::super::request::sample_request;

    #[test]
    fn the_outline_names_the_topic_its_queries_and_where_to_extend() {
        let text = draft(&sample_request());
        assert!(text.starts_with("## Feeding A Sourdough Starter\n"), "{text}");
        assert!(text.contains("\"Sourdough basics\" with 2 queries on this topic (1200 impressions in 28 days)"));
        assert!(text.contains("0.41 cosine similarity"));
        assert!(text.contains("about 37 more clicks"));
        assert!(text.contains("- how often to feed starter\n"));
        assert!(text.contains("after \"Baking day\""));
        let quoted = text.lines().find(|l| l.starts_with("> ")).unwrap();
        assert!(quoted.ends_with('…') && quoted.chars().count() <= 283, "{quoted}");
    }

    #[test]
    fn missing_parts_are_left_out_not_invented() {
        let text = draft(&DraftRequest { page_title: None, headings: vec![], closest_paragraphs: vec![], estimated_clicks_gain: Some(0.2), ..sample_request() });
        assert!(text.contains("reach this page with"));
        assert!(!text.contains("more clicks"));
        assert!(!text.contains("Extend the closest paragraph"));
        assert!(text.contains("Add a section \"Feeding A Sourdough Starter\".\n"));
    }
}

//! What every drafter is given (`DraftRequest`) and gives back (`Draft`).

/// What a drafter knows about the page and its top gap.
#[derive(Clone, Debug)]
pub struct DraftRequest {
    pub page_url: String,
    pub page_title: Option<String>,
    pub headings: Vec<String>,
    /// The gap cluster's queries, most impressions first, and each one's impressions.
    pub queries: Vec<String>,
    pub query_impressions: Vec<i64>,
    pub impressions: i64,
    pub similarity: f64,
    pub estimated_clicks_gain: Option<f64>,
    /// The page's paragraphs closest to the gap, closest first.
    pub closest_paragraphs: Vec<String>,
}

/// A draft and what produced it.
#[derive(Debug)]
pub struct Draft {
    pub text: String,
    pub provider: &'static str,
    pub model: String,
    pub prompt_tokens: Option<i32>,
    pub completion_tokens: Option<i32>,
}

/// The request the drafters' unit tests start from.
#[cfg(test)]
pub fn sample_request() -> DraftRequest {
    DraftRequest {
        page_url: "https://example.com/sourdough".to_string(),
        page_title: Some("Sourdough basics".to_string()),
        headings: vec!["Sourdough basics".to_string(), "Baking day".to_string()],
        queries: vec!["feeding a sourdough starter".to_string(), "how often to feed starter".to_string()],
        query_impressions: vec![900, 300],
        impressions: 1200,
        similarity: 0.41,
        estimated_clicks_gain: Some(37.4),
        closest_paragraphs: vec!["Mix flour and water and wait. ".repeat(50), "Second closest.".to_string()],
    }
}

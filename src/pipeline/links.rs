//! What the crawl reads from a page besides its text: the links it holds (each `<a href>`
//! resolved against the page's URL or its `<base href>`, http(s) only, without the #fragment,
//! with the text of its first anchor) and the modification time the page states about itself.
//! Link suggestions leave out pages that already link to their target; the content score's
//! freshness uses the stated time. Pure functions over a parsed page.

use super::segment::normalise;
use chrono::{DateTime, NaiveDate, Utc};
use scraper::{ElementRef, Html};
use url::Url;

/// Most links kept per page: a hostile page can hold millions.
pub const MAX_LINKS: usize = 2_000;
/// Longest anchor text kept, in characters.
const MAX_ANCHOR_CHARS: usize = 200;

/// A link of the page: its target and the text of its first anchor ("" for an image link).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub target: String,
    pub anchor: String,
}

/// The page's distinct link targets in document order, at most [`MAX_LINKS`].
pub fn page_links(document: &Html, page_url: &str) -> Vec<Link> {
    let Ok(page) = Url::parse(page_url) else {
        return Vec::new();
    };
    // The first <base href> applies to every link of the document, before or after it.
    let base = html_elements(document)
        .find(|element| element.value().name() == "base" && element.value().attr("href").is_some())
        .and_then(|element| page.join(element.value().attr("href")?.trim()).ok())
        .unwrap_or(page);
    let mut seen = std::collections::HashSet::new();
    let mut links = Vec::new();
    for anchor in html_elements(document).filter(|element| element.value().name() == "a") {
        let Some(target) = anchor.value().attr("href").and_then(|href| resolve(&base, href)) else {
            continue;
        };
        if seen.insert(target.clone()) {
            let text = normalise(&anchor.text().collect::<String>());
            links.push(Link { target, anchor: crate::excerpt(&text, MAX_ANCHOR_CHARS) });
            if links.len() == MAX_LINKS {
                break;
            }
        }
    }
    links
}

/// `url` in the form link targets are stored in (see [`page_links`]), so that a page's own URL
/// can be compared with them; None when it is not an http(s) URL.
pub fn normalize_url(url: &str) -> Option<String> {
    resolve(&Url::parse(url).ok()?, "")
}

/// `href` resolved against `base`, http(s) only, without its fragment.
fn resolve(base: &Url, href: &str) -> Option<String> {
    let mut target = base.join(href.trim()).ok()?;
    if !matches!(target.scheme(), "http" | "https") || target.host_str().is_none() {
        return None;
    }
    target.set_fragment(None);
    Some(target.into())
}

/// When the page says it was last modified (`article:modified_time`, `og:updated_time`,
/// `itemprop="dateModified"`), else when it says it was published; None when it says neither
/// in a form that parses (RFC 3339, or a bare date taken as midnight UTC).
pub fn stated_modified(document: &Html) -> Option<DateTime<Utc>> {
    let (mut modified, mut published) = (None, None);
    for element in html_elements(document).filter(|element| matches!(element.value().name(), "meta" | "time")) {
        let value = element.value();
        let key = value.attr("property").or_else(|| value.attr("itemprop")).or_else(|| value.attr("name"));
        let stated = || parse_time(value.attr("content").or_else(|| value.attr("datetime"))?);
        match key.map(str::to_ascii_lowercase).as_deref() {
            Some("article:modified_time" | "og:updated_time" | "datemodified") if modified.is_none() => modified = stated(),
            Some("article:published_time" | "datepublished") if published.is_none() => published = stated(),
            _ => {}
        }
    }
    modified.or(published)
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    DateTime::parse_from_rfc3339(text)
        .map(|time| time.with_timezone(&Utc))
        .ok()
        .or_else(|| Some(NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?.and_hms_opt(0, 0, 0)?.and_utc()))
}

/// Every element of the document in document order (an iterative walk: deep nesting is safe).
fn html_elements(document: &Html) -> impl Iterator<Item = ElementRef<'_>> {
    document.root_element().descendent_elements()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn links(html: &str, url: &str) -> Vec<(String, String)> {
        page_links(&Html::parse_document(html), url).into_iter().map(|l| (l.target, l.anchor)).collect()
    }

    #[test]
    fn links_are_resolved_against_the_page_without_fragments_and_kept_once() {
        let html = r#"<p>See <a href="/guides/espresso.html#grind">the  espresso
            guide</a>, <a href="pour-over.html">pour-over</a>, <a href="https://other.example/x?a=1">x</a>,
            <a href="/guides/espresso.html">again</a> and <a href="mailto:me@example.com">mail</a>
            <a href="javascript:void(0)">js</a> <a>no href</a> <a href="HTTP://Example.com:80/Shop/"><img alt="shop"></a></p>"#;
        assert_eq!(
            links(html, "https://example.com/guides/cold-brew.html"),
            [
                ("https://example.com/guides/espresso.html".to_string(), "the espresso guide".to_string()),
                ("https://example.com/guides/pour-over.html".to_string(), "pour-over".to_string()),
                ("https://other.example/x?a=1".to_string(), "x".to_string()),
                ("http://example.com/Shop/".to_string(), String::new()),
            ]
        );
    }

    #[test]
    fn a_base_element_anywhere_sets_the_base_of_every_link() {
        let html = r#"<a href="a.html">a</a><head><base href="https://cdn.example/docs/"></head>"#;
        assert_eq!(links(html, "https://example.com/x/y.html")[0].0, "https://cdn.example/docs/a.html");
        assert!(links(html, "not a url").is_empty());
    }

    #[test]
    fn a_page_keeps_at_most_max_links_and_long_anchors_are_cut() {
        let html: String = (0..MAX_LINKS + 10).map(|i| format!("<a href=\"/p{i}\">{}</a>", "word ".repeat(100))).collect();
        let found = links(&html, "https://example.com/");
        assert_eq!(found.len(), MAX_LINKS);
        assert!(found[0].1.ends_with('…') && found[0].1.chars().count() <= MAX_ANCHOR_CHARS + 1, "{}", found[0].1);
    }

    #[test]
    fn page_urls_normalize_like_link_targets() {
        assert_eq!(normalize_url("HTTPS://Example.com:443/a#top").as_deref(), Some("https://example.com/a"));
        assert_eq!(normalize_url("https://example.com").as_deref(), Some("https://example.com/"));
        assert_eq!(normalize_url("ftp://example.com/a"), None);
        assert_eq!(normalize_url("/relative"), None);
    }

    #[test]
    fn the_stated_modification_time_wins_over_the_publication_time() {
        let stated = |html: &str| stated_modified(&Html::parse_document(html)).map(|t| t.to_rfc3339());
        let both = r#"<meta property="article:published_time" content="2024-01-02T10:00:00Z">
                      <meta property="article:modified_time" content="2025-03-04T05:06:07+02:00">"#;
        assert_eq!(stated(both).as_deref(), Some("2025-03-04T03:06:07+00:00"));
        assert_eq!(
            stated(r#"<time itemprop="datePublished" datetime="2024-05-01">May</time>"#).as_deref(),
            Some("2024-05-01T00:00:00+00:00")
        );
        assert_eq!(stated(r#"<meta property="article:modified_time" content="last Tuesday">"#), None);
        assert_eq!(stated("<p>no dates</p>"), None);
    }
}

//! HTML segmentation for the `segment_embed` stage: turns a fetched page into its title and the
//! ordered text fragments (headings, paragraphs, list items) that get embedded, leaving out site
//! chrome (navigation, headers, footers, sidebars), scripts, forms and hidden elements.

use std::collections::HashSet;
use std::fmt::Write;

use scraper::node::Element;
use scraper::{ElementRef, Html, Node};
use sha2::{Digest, Sha256};

/// Longest fragment kept, in characters; longer text is cut, at a word boundary when one is near.
const MAX_FRAGMENT_CHARS: usize = 2000;

/// Fewest words a paragraph or list item needs: shorter ones are labels, buttons and bylines.
const MIN_BODY_WORDS: usize = 3;

/// Without a `<main>`, the `<article>` elements are taken alone when they hold at least this share
/// of the page's text; below it they are likely cards ("related posts") around the real content.
const ARTICLE_SHARE: f64 = 0.5;

/// Elements whose whole subtree is never content. Besides site chrome and non-text elements this
/// has form controls (labels), embedded media (fallback text) and dialogs (shown only by scripts).
/// Forms are dropped too, in [`is_dropped`], unless they wrap the page.
const DROPPED_ELEMENTS: &[&str] = &[
    "head", "nav", "footer", "aside", "script", "style", "noscript", "template", "svg", "math", "iframe", "object",
    "embed", "canvas", "audio", "video", "button", "select", "textarea", "dialog",
];

/// ARIA roles of site chrome, dropped like the elements they stand for.
const DROPPED_ROLES: &[&str] = &["navigation", "banner", "contentinfo", "complementary", "search"];

/// Elements laid out inline: their text runs on with the text around them. Every other element
/// (including unknown and custom ones) breaks the text, as a block would.
const INLINE_ELEMENTS: &[&str] = &[
    "a", "abbr", "acronym", "b", "bdi", "bdo", "big", "cite", "code", "data", "del", "dfn", "em", "font", "i", "img",
    "ins", "kbd", "label", "mark", "nobr", "q", "s", "samp", "small", "span", "strike", "strong", "sub", "sup", "time",
    "tt", "u", "var", "wbr",
];

/// A page cut into the pieces that get embedded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segmented {
    /// The `<title>` text, else the first `<h1>`, normalised like fragment text.
    pub title: Option<String>,
    pub fragments: Vec<Fragment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fragment {
    /// 0, 1, 2, … in document order, counting only the fragments kept.
    pub position: i32,
    pub kind: Kind,
    /// The element the text belongs to ("h2", "p", "li", "td", …), or for text lying loose in a
    /// container, the container ("div", "section", …).
    pub tag: String,
    /// Whitespace collapsed to single spaces and trimmed, at most 2,000 characters.
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// h1–h6.
    Heading,
    /// p, blockquote, pre, table cells (td, th, caption), dd, dt, figcaption, and text lying loose
    /// in a container such as a div.
    Paragraph,
    /// li.
    ListItem,
}

impl Kind {
    /// The name stored in `page_embeddings.kind`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Kind::Heading => "heading",
            Kind::Paragraph => "paragraph",
            Kind::ListItem => "list_item",
        }
    }
}

/// Cuts `html` into its title and content fragments; never fails, whatever the markup.
///
/// The text of an element belongs to the nearest enclosing heading, paragraph-like element or list
/// item; a nested one (a `<p>` in a `<blockquote>`, a `<li>` in a `<li>`) starts its own fragment,
/// and the outer element keeps only its own text, so nothing is emitted twice. Text outside such
/// elements is a paragraph of its container, split where a block element interrupts it.
///
/// When the page has a `<main>` (or `role="main"`), only its content is kept; otherwise the
/// `<article>` elements are kept alone when they hold most of the text. A `<header>` inside
/// those keeps only its headings; a header elsewhere is the site's and is dropped.
pub fn segment(html: &str) -> Segmented {
    segment_document(&Html::parse_document(html))
}

/// [`segment`] of a page already parsed (the crawl reads its links from the same tree).
pub fn segment_document(document: &Html) -> Segmented {
    let mut walker = Walker::default();
    // An explicit stack rather than recursion: hostile pages nest elements deeply enough to
    // overflow a worker thread's stack.
    let mut stack = vec![(document.tree.root(), false)];
    while let Some((node, leaving)) = stack.pop() {
        if let Some(element) = ElementRef::wrap(node) {
            if leaving {
                walker.leave(element.value());
            } else if walker.enter(element) {
                stack.push((node, true));
                stack.extend(node.children().rev().map(|child| (child, false)));
            }
        } else if let Node::Text(text) = node.value() {
            walker.run.push_str(text);
        } else {
            stack.extend(node.children().rev().map(|child| (child, false)));
        }
    }
    let fragments = select_fragments(walker.candidates, walker.saw_main);
    let title = html_title(document)
        .or_else(|| {
            fragments
                .iter()
                .find(|fragment| fragment.tag == "h1")
                .map(|fragment| fragment.text.clone())
        })
        .or_else(|| first_text_of(document, "h1"));
    Segmented { title, fragments }
}

/// SHA-256 of the text after whitespace normalisation, as 64 lowercase hex digits. A fragment's
/// text is already normalised, so this is the hash of exactly what gets embedded.
pub fn text_hash(text: &str) -> String {
    let digest = Sha256::digest(normalise(text).as_bytes());
    let mut hex = String::with_capacity(2 * digest.len());
    for byte in digest.iter() {
        write!(hex, "{byte:02x}").expect("writing to a String cannot fail");
    }
    hex
}

/// An element on the walk's path that can own text.
#[derive(Clone, Copy)]
struct Frame<'a> {
    tag: &'a str,
    /// None for a container (div, section, …), whose loose text becomes a paragraph.
    kind: Option<Kind>,
    /// Index in the frame stack of the frame whose fragment this element's text goes to: itself,
    /// or for a container inside a fragment element, that element.
    owner: usize,
    in_main: bool,
    in_article: bool,
    /// Inside a `<header>` of the main content: only headings count there.
    headings_only: bool,
}

/// A fragment before page-level filtering.
struct Candidate<'a> {
    kind: Kind,
    tag: &'a str,
    text: String,
    in_main: bool,
    in_article: bool,
}

#[derive(Default)]
struct Walker<'a> {
    frames: Vec<Frame<'a>>,
    /// Text gathered since the last block boundary, not yet normalised.
    run: String,
    candidates: Vec<Candidate<'a>>,
    saw_main: bool,
}

impl<'a> Walker<'a> {
    /// Called when the walk reaches `element`; returns whether to walk into its children.
    fn enter(&mut self, element: ElementRef<'a>) -> bool {
        let value = element.value();
        let name = value.name();
        if is_dropped(element) {
            return false;
        }
        if name == "br" {
            self.run.push(' ');
            return false;
        }
        if INLINE_ELEMENTS.contains(&name) {
            return true;
        }
        let parent = self.frames.last().copied();
        if name == "header" && !parent.is_some_and(|p| p.in_main || p.in_article) {
            return false;
        }
        let is_main = name == "main" || has_role(value, &["main"]);
        self.saw_main |= is_main;
        let kind = fragment_kind(name);
        let owner = match parent {
            // A div in a list item is layout: its text stays the item's, set apart by a space.
            Some(parent) if kind.is_none() && self.frames[parent.owner].kind.is_some() => {
                self.run.push(' ');
                parent.owner
            }
            _ => {
                self.flush();
                self.frames.len()
            }
        };
        self.frames.push(Frame {
            tag: name,
            kind,
            owner,
            in_main: is_main || parent.is_some_and(|p| p.in_main),
            in_article: name == "article" || parent.is_some_and(|p| p.in_article),
            headings_only: name == "header" || parent.is_some_and(|p| p.headings_only),
        });
        true
    }

    /// Called after the children of an element that `enter` walked into.
    fn leave(&mut self, element: &Element) {
        if INLINE_ELEMENTS.contains(&element.name()) {
            return;
        }
        let top = self.frames.len() - 1;
        if self.frames[top].owner == top {
            self.flush();
        } else {
            self.run.push(' ');
        }
        self.frames.pop();
    }

    /// Ends the current run of text: it becomes a candidate of the element that owns it.
    fn flush(&mut self) {
        let text = normalise(&self.run);
        self.run.clear();
        let Some(top) = self.frames.last() else { return };
        let owner = &self.frames[top.owner];
        let kind = owner.kind.unwrap_or(Kind::Paragraph);
        if text.is_empty() || (owner.headings_only && kind != Kind::Heading) {
            return;
        }
        self.candidates.push(Candidate {
            kind,
            tag: owner.tag,
            text,
            in_main: owner.in_main,
            in_article: owner.in_article,
        });
    }
}

fn fragment_kind(name: &str) -> Option<Kind> {
    match name {
        "h1" | "h2" | "h3" | "h4" | "h5" | "h6" => Some(Kind::Heading),
        "li" => Some(Kind::ListItem),
        "p" | "blockquote" | "pre" | "td" | "th" | "caption" | "dd" | "dt" | "figcaption" => Some(Kind::Paragraph),
        _ => None,
    }
}

fn is_dropped(element: ElementRef) -> bool {
    let value = element.value();
    let name = value.name();
    let style = value
        .attr("style")
        .unwrap_or("")
        .to_ascii_lowercase()
        .replace(char::is_whitespace, "");
    DROPPED_ELEMENTS.contains(&name)
        // Some sites (ASP.NET WebForms) wrap the whole page in one form: that form is no form.
        || (name == "form"
            && !element
                .descendent_elements()
                .any(|inner| matches!(inner.value().name(), "main" | "article" | "h1")))
        || value.attr("hidden").is_some()
        || value
            .attr("aria-hidden")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
        || has_role(value, DROPPED_ROLES)
        || style.contains("display:none")
        || style.contains("visibility:hidden")
}

fn has_role(element: &Element, roles: &[&str]) -> bool {
    element.attr("role").is_some_and(|value| {
        value
            .split_ascii_whitespace()
            .any(|role| roles.contains(&role.to_ascii_lowercase().as_str()))
    })
}

/// Applies the page-level rules to the candidates: main content only, minimum length, the length
/// cap, no duplicates; then numbers what is left.
fn select_fragments(candidates: Vec<Candidate>, saw_main: bool) -> Vec<Fragment> {
    let mut kept: Vec<Candidate> = candidates
        .into_iter()
        .filter(|c| word_count(&c.text) >= if c.kind == Kind::Heading { 1 } else { MIN_BODY_WORDS })
        .collect();
    if saw_main {
        kept.retain(|c| c.in_main);
    } else {
        let total: usize = kept.iter().map(|c| c.text.len()).sum();
        let in_articles: usize = kept.iter().filter(|c| c.in_article).map(|c| c.text.len()).sum();
        if in_articles > 0 && in_articles as f64 >= ARTICLE_SHARE * total as f64 {
            kept.retain(|c| c.in_article);
        }
    }
    let mut seen = HashSet::new();
    kept.into_iter()
        .map(|c| Candidate {
            text: cap_length(c.text),
            ..c
        })
        .filter(|c| seen.insert(c.text.to_lowercase()))
        .enumerate()
        // Fewer fragments than bytes of HTML, and Postgres text is at most 1 GB: fits an i32.
        .map(|(position, c)| Fragment {
            position: position as i32,
            kind: c.kind,
            tag: c.tag.to_string(),
            text: c.text,
        })
        .collect()
}

/// The first `<title>` of the HTML namespace (an SVG image has titles of its own).
fn html_title(document: &Html) -> Option<String> {
    first_text_of(document, "title")
}

fn first_text_of(document: &Html, name: &str) -> Option<String> {
    document
        .root_element()
        .descendent_elements()
        .filter(|element| element.value().name() == name && &*element.value().name.ns == "http://www.w3.org/1999/xhtml")
        .map(|element| cap_length(normalise(&element.text().collect::<String>())))
        .find(|text| !text.is_empty())
}

/// Collapses whitespace (including no-break spaces) to single spaces, trims, and removes the
/// invisible characters (soft hyphen, zero-width space, byte-order mark) that split words.
pub(crate) fn normalise(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut pending_space = false;
    for c in text.chars() {
        if c.is_whitespace() {
            pending_space = !out.is_empty();
        } else if !matches!(c, '\u{AD}' | '\u{200B}' | '\u{FEFF}') {
            if pending_space {
                out.push(' ');
                pending_space = false;
            }
            out.push(c);
        }
    }
    out
}

/// Words in normalised text: space-separated tokens with a letter or digit. Scripts written
/// without spaces (Chinese, Japanese, Thai, …) count one word per character, so that a sentence
/// in them is not taken for a single word.
fn word_count(text: &str) -> usize {
    text.split(' ')
        .map(|token| match token.chars().filter(|&c| is_unspaced_script(c)).count() {
            0 => usize::from(token.chars().any(char::is_alphanumeric)),
            n => n,
        })
        .sum()
}

fn is_unspaced_script(c: char) -> bool {
    matches!(c,
        '\u{0E00}'..='\u{0EFF}'     // Thai, Lao
        | '\u{1000}'..='\u{109F}'   // Myanmar
        | '\u{1780}'..='\u{17FF}'   // Khmer
        | '\u{3040}'..='\u{30FF}'   // Hiragana, Katakana
        | '\u{3400}'..='\u{4DBF}'   // CJK ideographs, extension A
        | '\u{4E00}'..='\u{9FFF}'   // CJK ideographs
        | '\u{F900}'..='\u{FAFF}') // CJK compatibility ideographs
}

/// Cuts normalised text to [`MAX_FRAGMENT_CHARS`] characters, at the last space when that keeps
/// at least half of them.
fn cap_length(text: String) -> String {
    let Some((limit, _)) = text.char_indices().nth(MAX_FRAGMENT_CHARS) else {
        return text;
    };
    let cut = match text[..limit].rfind(' ') {
        Some(space) if text[..space].chars().count() >= MAX_FRAGMENT_CHARS / 2 => space,
        _ => limit,
    };
    text[..cut].trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fragments as (kind, tag, text), after checking that positions run 0, 1, 2, ….
    fn parts(segmented: &Segmented) -> Vec<(&'static str, &str, &str)> {
        for (i, fragment) in segmented.fragments.iter().enumerate() {
            assert_eq!(fragment.position, i as i32, "position of {fragment:?}");
        }
        segmented
            .fragments
            .iter()
            .map(|f| (f.kind.as_str(), f.tag.as_str(), f.text.as_str()))
            .collect()
    }

    #[test]
    fn blog_post_without_chrome_scripts_or_styles() {
        let html = r#"<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>  How to Bake Sourdough &amp; Rye | Crumb Blog </title>
  <style>body { font-family: serif } p::before { content: "<p>not text</p>" }</style>
  <script>var tpl = "<p>Injected paragraph that looks like HTML</p>"; if (a < b && c > d) {}</script>
</head>
<body>
  <header class="site-header">
    <a href="/" class="logo">Crumb Blog</a>
    <nav><ul><li><a href="/recipes">All of our recipes</a></li><li><a href="/about">About the bakers here</a></li></ul></nav>
  </header>
  <div class="layout">
    <article>
      <header>
        <h1>How to Bake Sourdough&nbsp;Bread</h1>
        <p class="byline">By Jane Doe &middot; 5 min read &middot; March 3, 2024</p>
      </header>
      <p>Sourdough is <em>bread</em> leavened by a <strong>wild&nbsp;yeast</strong> starter, not by
         <a href="/yeast">commercial yeast</a>.</p>
      <h2>Feeding the starter</h2>
      <p>Feed it flour &amp; water every day; it&#8217;s ready when it doubles.<br>Keep it at room temperature.</p>
      <script>document.write("<p>Written by a script, never content</p>");</script>
      <p>A proper <code>levain</code> makes the crumb open, the crust crisp and the flavour tangy, says the p&acirc;tissier &eacute;lite.</p>
      <footer class="post-footer">Tags: bread, baking, sourdough starter</footer>
    </article>
    <aside><h3>Related posts</h3><p>Ten things to do with leftover starter discard.</p></aside>
  </div>
  <footer><p>Copyright 2024 Crumb Blog. All rights reserved.</p></footer>
  <noscript><p>Please enable JavaScript for the best experience.</p></noscript>
  <template><p>Template content that is never shown.</p></template>
</body>
</html>"#;
        let segmented = segment(html);
        assert_eq!(
            segmented.title.as_deref(),
            Some("How to Bake Sourdough & Rye | Crumb Blog")
        );
        assert_eq!(
            parts(&segmented),
            [
                ("heading", "h1", "How to Bake Sourdough Bread"),
                ("paragraph", "p", "Sourdough is bread leavened by a wild yeast starter, not by commercial yeast."),
                ("heading", "h2", "Feeding the starter"),
                (
                    "paragraph",
                    "p",
                    "Feed it flour & water every day; it\u{2019}s ready when it doubles. Keep it at room temperature."
                ),
                (
                    "paragraph",
                    "p",
                    "A proper levain makes the crumb open, the crust crisp and the flavour tangy, says the pâtissier élite."
                ),
            ]
        );
    }

    #[test]
    fn nested_lists_give_each_item_once() {
        let html = "<body><ul>
            <li>Dry ingredients for the dough
              <ul><li>Five hundred grams of flour</li><li>Ten grams of fine salt</li></ul>
            </li>
            <li><ol><li>Mix everything in a bowl</li><li>Rest the dough for an hour</li></ol></li>
            <li>Bake at <b>250&deg;C</b> for forty minutes</li>
            <li>Enjoy</li>
        </ul></body>";
        assert_eq!(
            parts(&segment(html)),
            [
                ("list_item", "li", "Dry ingredients for the dough"),
                ("list_item", "li", "Five hundred grams of flour"),
                ("list_item", "li", "Ten grams of fine salt"),
                ("list_item", "li", "Mix everything in a bowl"),
                ("list_item", "li", "Rest the dough for an hour"),
                ("list_item", "li", "Bake at 250°C for forty minutes"),
            ]
        );
    }

    #[test]
    fn tables_give_one_paragraph_per_cell() {
        let html = "<body><table>
            <caption>Hydration levels for common breads</caption>
            <thead><tr><th>Bread</th><th>Typical hydration of the dough</th></tr></thead>
            <tbody>
              <tr><td>Sourdough</td><td>About seventy five percent</td></tr>
              <tr><td>Ciabatta</td><td><p>Eighty percent or even more</p></td></tr>
            </tbody>
        </table></body>";
        assert_eq!(
            parts(&segment(html)),
            [
                ("paragraph", "caption", "Hydration levels for common breads"),
                ("paragraph", "th", "Typical hydration of the dough"),
                ("paragraph", "td", "About seventy five percent"),
                ("paragraph", "p", "Eighty percent or even more"),
            ]
        );
    }

    #[test]
    fn main_excludes_everything_outside_it() {
        let html = r#"<html><head><title>Pricing</title></head><body>
            <div class="banner">Free shipping on all orders over fifty dollars</div>
            <h1>Acme Widgets Incorporated</h1>
            <main>
              <header><h1>Plans and pricing</h1><p>Updated for the new financial year</p></header>
              <p>Every plan includes unlimited widgets and priority support.</p>
              <section>Loose text in a section counts as a paragraph too.<div>And so does this div text here.</div></section>
            </main>
            <div class="cookie">We use cookies to improve your experience.</div>
        </body></html>"#;
        let segmented = segment(html);
        assert_eq!(segmented.title.as_deref(), Some("Pricing"));
        assert_eq!(
            parts(&segmented),
            [
                ("heading", "h1", "Plans and pricing"),
                (
                    "paragraph",
                    "p",
                    "Every plan includes unlimited widgets and priority support."
                ),
                (
                    "paragraph",
                    "section",
                    "Loose text in a section counts as a paragraph too."
                ),
                ("paragraph", "div", "And so does this div text here."),
            ]
        );
    }

    #[test]
    fn role_main_counts_as_main() {
        let html = r#"<body><div>Text outside of the main region here.</div>
            <div role="main"><p>Text inside of the main region here.</p></div></body>"#;
        assert_eq!(
            parts(&segment(html)),
            [("paragraph", "p", "Text inside of the main region here.")]
        );
    }

    #[test]
    fn articles_win_only_when_they_hold_most_of_the_text() {
        let post = "<body><div class=post><h1>Sourdough basics</h1>
            <p>A long introduction about starters, flour, water, salt and patience in the kitchen.</p>
            <p>Another long paragraph about shaping, proofing, scoring and baking the loaf.</p></div>
            <section><article><h3>Rye bread</h3><p>A short teaser for rye.</p></article></section></body>";
        assert_eq!(
            parts(&segment(post)),
            [
                ("heading", "h1", "Sourdough basics"),
                (
                    "paragraph",
                    "p",
                    "A long introduction about starters, flour, water, salt and patience in the kitchen."
                ),
                (
                    "paragraph",
                    "p",
                    "Another long paragraph about shaping, proofing, scoring and baking the loaf."
                ),
                ("heading", "h3", "Rye bread"),
                ("paragraph", "p", "A short teaser for rye."),
            ]
        );
        let article = "<body><div>Subscribe to our newsletter today.</div>
            <article><h1>Sourdough basics</h1><p>All about starters, flour, water, salt and patience.</p></article></body>";
        assert_eq!(
            parts(&segment(article)),
            [
                ("heading", "h1", "Sourdough basics"),
                ("paragraph", "p", "All about starters, flour, water, salt and patience."),
            ]
        );
    }

    #[test]
    fn hidden_elements_are_dropped() {
        let html = r#"<body>
            <p hidden>Hidden by the hidden attribute.</p>
            <p aria-hidden="true">Hidden from screen readers entirely.</p>
            <div role="navigation"><p>Navigation links by role attribute.</p></div>
            <div role="banner"><p>Banner text by role attribute.</p></div>
            <div role="contentinfo"><p>Contact info by role attribute.</p></div>
            <p style="display: none">Hidden by an inline style.</p>
            <p>Visible text <span aria-hidden="true">ICON GLYPH</span>with an icon.</p>
            <form action="/subscribe"><p>Sign up for our newsletter now.</p><button>Subscribe now please</button></form>
            <iframe src="/ad">Your browser does not support frames.</iframe>
            <svg><title>An SVG image title</title><text>SVG text content here</text></svg>
        </body>"#;
        assert_eq!(
            parts(&segment(html)),
            [("paragraph", "p", "Visible text with an icon.")]
        );
    }

    #[test]
    fn a_form_wrapping_the_whole_page_is_kept() {
        let html = r#"<body><form id="aspnetForm" method="post">
            <input type="hidden" name="__VIEWSTATE" value="abc">
            <h1>Council tax bands</h1><p>Your band depends on the value of your home.</p>
        </form></body>"#;
        assert_eq!(
            parts(&segment(html)),
            [
                ("heading", "h1", "Council tax bands"),
                ("paragraph", "p", "Your band depends on the value of your home.")
            ]
        );
        let hidden =
            "<body><p>The visible part of the page.</p><form hidden><h1>Hidden wrapper form</h1></form></body>";
        assert_eq!(
            parts(&segment(hidden)),
            [("paragraph", "p", "The visible part of the page.")]
        );
    }

    #[test]
    fn duplicates_and_short_fragments_are_skipped() {
        let html = "<body>
            <h2>Intro</h2>
            <p>Read more</p>
            <p>Share</p>
            <p>The same sentence appears twice here.</p>
            <li>Short item</li>
            <p>THE SAME   sentence appears twice <em>here</em>.</p>
            <h2>Intro</h2>
            <h3>&mdash;</h3>
            <p>One, two, three.</p>
        </body>";
        assert_eq!(
            parts(&segment(html)),
            [
                ("heading", "h2", "Intro"),
                ("paragraph", "p", "The same sentence appears twice here."),
                ("paragraph", "p", "One, two, three."),
            ]
        );
    }

    #[test]
    fn blockquotes_and_other_nested_blocks_are_emitted_once() {
        let html = "<body>
            <blockquote><p>The only bread worth eating is the one you bake.</p><cite>An old baker</cite></blockquote>
            <blockquote>A quote written straight into the blockquote element.</blockquote>
            <li><div>Weigh the flour</div><div>carefully on a scale</div></li>
            <figure><img src=a.jpg alt='ignored alt text'><figcaption>A loaf with an open crumb</figcaption></figure>
            <dl><dt>Levain</dt><dd>A starter built up for one bake.</dd></dl>
            <pre>fn   main() {
    bake();
}</pre>
        </body>";
        assert_eq!(
            parts(&segment(html)),
            [
                ("paragraph", "p", "The only bread worth eating is the one you bake."),
                ("paragraph", "blockquote", "An old baker"),
                (
                    "paragraph",
                    "blockquote",
                    "A quote written straight into the blockquote element."
                ),
                ("list_item", "li", "Weigh the flour carefully on a scale"),
                ("paragraph", "figcaption", "A loaf with an open crumb"),
                ("paragraph", "dd", "A starter built up for one bake."),
                ("paragraph", "pre", "fn main() { bake(); }"),
            ]
        );
    }

    #[test]
    fn malformed_html_is_repaired_by_the_parser() {
        let html = "<html><head><title>Unclosed tags</title></head><body>
            <p>First paragraph is never closed
            <p>Second paragraph is never closed either
            <ul><li>First item left open<li>Second item left open</ul>
            <div><h2>Heading in a div</div>
            <p>Stray <b>bold <i>and italic</b> markup here</i> done";
        let segmented = segment(html);
        assert_eq!(segmented.title.as_deref(), Some("Unclosed tags"));
        assert_eq!(
            parts(&segmented),
            [
                ("paragraph", "p", "First paragraph is never closed"),
                ("paragraph", "p", "Second paragraph is never closed either"),
                ("list_item", "li", "First item left open"),
                ("list_item", "li", "Second item left open"),
                ("heading", "h2", "Heading in a div"),
                ("paragraph", "p", "Stray bold and italic markup here done"),
            ]
        );
    }

    #[test]
    fn empty_and_bodiless_documents() {
        assert_eq!(
            segment(""),
            Segmented {
                title: None,
                fragments: vec![]
            }
        );
        assert_eq!(
            segment("   \n "),
            Segmented {
                title: None,
                fragments: vec![]
            }
        );
        let head_only = "<html><head><title>Just a title</title><meta name=x content=y></head></html>";
        assert_eq!(
            segment(head_only),
            Segmented {
                title: Some("Just a title".into()),
                fragments: vec![]
            }
        );
        // Without <html>, <head> or <body> tags the parser supplies them.
        let bare = "<title>Bare</title><h1>Bare heading</h1>Some loose text with no body tag.";
        let segmented = segment(bare);
        assert_eq!(segmented.title.as_deref(), Some("Bare"));
        assert_eq!(
            parts(&segmented),
            [
                ("heading", "h1", "Bare heading"),
                ("paragraph", "body", "Some loose text with no body tag.")
            ]
        );
    }

    #[test]
    fn title_falls_back_to_the_first_content_h1() {
        let html = "<body><header><h1>Site name</h1></header><title></title>
            <main><h1>Article heading</h1></main></body>";
        assert_eq!(segment(html).title.as_deref(), Some("Article heading"));
        let html = "<body><header><h1>Site name</h1></header><p>Nothing else on this page.</p></body>";
        assert_eq!(segment(html).title.as_deref(), Some("Site name"));
    }

    #[test]
    fn long_text_is_cut_at_a_word_boundary() {
        let word = "crumb ";
        let html = format!("<p>{}</p><h2>{}</h2>", word.repeat(400), "x".repeat(2500));
        let fragments = segment(&html).fragments;
        assert_eq!(fragments.len(), 2);
        assert_eq!(
            fragments[0].text,
            word.repeat(333).trim_end(),
            "1,997 characters, up to the last whole word"
        );
        assert_eq!(fragments[1].text, "x".repeat(2000), "no space to cut at");
        let multibyte = format!("<p>one two {}</p>", "é".repeat(3000));
        assert_eq!(
            segment(&multibyte).fragments[0].text,
            format!("one two {}", "é".repeat(1992))
        );
    }

    #[test]
    fn scripts_without_spaces_count_characters_as_words() {
        let html = "<body><p>今天天气很好</p><p>ok</p><p>ニュース</p></body>";
        assert_eq!(
            parts(&segment(html)),
            [("paragraph", "p", "今天天气很好"), ("paragraph", "p", "ニュース")]
        );
    }

    #[test]
    fn deep_nesting_is_walked_without_recursion() {
        let html = format!(
            "{}<p>Deep inside many divs.</p>{}",
            "<div>".repeat(5_000),
            "</div>".repeat(5_000)
        );
        assert_eq!(parts(&segment(&html)), [("paragraph", "p", "Deep inside many divs.")]);
    }

    #[test]
    fn text_hash_is_sha256_of_the_normalised_text() {
        assert_eq!(
            text_hash(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            text_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(text_hash("  abc \n"), text_hash("abc"));
        assert_eq!(text_hash("a  b"), text_hash("a\u{a0}b"));
        assert_ne!(text_hash("abc"), text_hash("ABC"), "case is kept: providers see it");
    }
}

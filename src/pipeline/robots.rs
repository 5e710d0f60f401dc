//! What the crawler reads from a site's robots.txt besides its Allow/Disallow rules (which
//! `robotstxt`'s matcher applies): the `Crawl-delay` of the group that applies to our user
//! agent, honoured by the per-host limits of the crawl stage.

use robotstxt::{parse_robotstxt, RobotsParseHandler};

/// The `Crawl-delay` in seconds that `robots` sets for `user_agent`, if any. As with the rules,
/// a group naming our product token (`pageperfect` of `pageperfect/1.0 (+https://…)`, compared
/// without case) replaces the `*` group: its delay applies, or none when it sets none. A group
/// with several delays gives the longest; values that are not a non-negative number are ignored.
pub fn crawl_delay(robots: &str, user_agent: &str) -> Option<f64> {
    let mut reader = CrawlDelayReader { agent: product_token(user_agent), ..CrawlDelayReader::default() };
    parse_robotstxt(robots, &mut reader);
    if reader.named_group_seen {
        reader.named_delay
    } else {
        reader.any_delay
    }
}

/// The name part of a user agent, as robots.txt groups match it: up to the first character that
/// is not a letter, `-` or `_` (`Googlebot/2.1` → `Googlebot`).
fn product_token(user_agent: &str) -> &str {
    let agent = user_agent.trim();
    let end = agent.find(|c: char| !(c.is_ascii_alphabetic() || c == '-' || c == '_')).unwrap_or(agent.len());
    &agent[..end]
}

#[derive(Default)]
struct CrawlDelayReader<'a> {
    agent: &'a str,
    /// The last line was a `User-agent` line: another one joins the same group.
    in_agent_lines: bool,
    group_is_ours: bool,
    group_is_any: bool,
    named_group_seen: bool,
    named_delay: Option<f64>,
    any_delay: Option<f64>,
}

fn longest(current: Option<f64>, seconds: f64) -> Option<f64> {
    Some(current.map_or(seconds, |c| c.max(seconds)))
}

impl RobotsParseHandler for CrawlDelayReader<'_> {
    fn handle_robots_start(&mut self) {}

    fn handle_robots_end(&mut self) {}

    fn handle_user_agent(&mut self, _line: u32, user_agent: &str) {
        if !self.in_agent_lines {
            self.group_is_ours = false;
            self.group_is_any = false;
        }
        self.in_agent_lines = true;
        let token = product_token(user_agent);
        if user_agent.trim_start().starts_with('*') {
            self.group_is_any = true;
        } else if !self.agent.is_empty() && token.eq_ignore_ascii_case(self.agent) {
            self.group_is_ours = true;
            self.named_group_seen = true;
        }
    }

    fn handle_allow(&mut self, _line: u32, _value: &str) {
        self.in_agent_lines = false;
    }

    fn handle_disallow(&mut self, _line: u32, _value: &str) {
        self.in_agent_lines = false;
    }

    fn handle_sitemap(&mut self, _line: u32, _value: &str) {
        self.in_agent_lines = false;
    }

    fn handle_unknown_action(&mut self, _line: u32, action: &str, value: &str) {
        self.in_agent_lines = false;
        if !action.eq_ignore_ascii_case("crawl-delay") {
            return;
        }
        let Some(seconds) = value.trim().parse::<f64>().ok().filter(|s| s.is_finite() && *s >= 0.0) else { return };
        if self.group_is_ours {
            self.named_delay = longest(self.named_delay, seconds);
        }
        if self.group_is_any {
            self.any_delay = longest(self.any_delay, seconds);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AGENT: &str = "pageperfect/0.1 (+https://example.com/bot)";

    #[test]
    fn the_star_group_applies_when_no_group_names_us() {
        let robots = "User-agent: *\nDisallow: /private\nCrawl-delay: 2.5\n\nUser-agent: otherbot\nCrawl-delay: 60\n";
        assert_eq!(crawl_delay(robots, AGENT), Some(2.5));
    }

    #[test]
    fn a_group_naming_us_replaces_the_star_group_even_without_a_delay() {
        let robots = "User-agent: *\nCrawl-delay: 10\n\nUser-Agent: PagePerfect\nCrawl-delay: 3\n";
        assert_eq!(crawl_delay(robots, AGENT), Some(3.0));
        let robots = "User-agent: *\nCrawl-delay: 10\n\nUser-agent: pageperfect\nDisallow: /drafts\n";
        assert_eq!(crawl_delay(robots, AGENT), None);
    }

    #[test]
    fn consecutive_agent_lines_share_one_group() {
        let robots = "User-agent: googlebot\nUser-agent: pageperfect\nCrawl-delay: 4\n\nUser-agent: googlebot\nCrawl-delay: 9\n";
        assert_eq!(crawl_delay(robots, AGENT), Some(4.0));
    }

    #[test]
    fn the_longest_of_several_delays_and_no_nonsense() {
        assert_eq!(crawl_delay("User-agent: *\nCrawl-delay: 1\nCrawl-delay: 5\n", AGENT), Some(5.0));
        for value in ["-1", "soon", "NaN", "inf", ""] {
            assert_eq!(crawl_delay(&format!("User-agent: *\nCrawl-delay: {value}\n"), AGENT), None, "{value}");
        }
        assert_eq!(crawl_delay("", AGENT), None);
        assert_eq!(crawl_delay("<html>not robots</html>", AGENT), None);
    }

    #[test]
    fn the_product_token_is_the_name_before_the_version() {
        assert_eq!(product_token("Googlebot/2.1"), "Googlebot");
        assert_eq!(product_token("  page_perfect-x/1"), "page_perfect-x");
        assert_eq!(product_token("/1.0"), "");
    }
}

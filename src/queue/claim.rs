//! Which queued stages a worker claims, under the limits: at most `capacity` (its free share
//! of `http_concurrency`), at most a stage's `concurrency` processing at once across all
//! workers, and at most `max_jobs_per_owner` jobs of one owner. Claims are serialised by an
//! advisory lock, so the loads a worker sees are the loads there are. A stage's
//! `per_host_limit` and the hosts' delays are applied by `claim_candidates` itself, which offers
//! no more of a host's work than its free slots; the host is [`url_host`]'s.

use serde::Deserialize;
use std::collections::HashMap;

/// A visible message whose stage could be claimed, with the load of its stage and owner now.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Candidate {
    pub msg_id: i64,
    pub stage: String,
    pub owner: String,
    pub stage_busy: i64,
    pub stage_limit: i64,
    pub owner_busy: i64,
    pub owner_limit: i64,
}

/// The messages to claim, taking candidates in the order `claim_candidates` gives and passing over those
/// whose stage or owner is at its limit, so that one busy owner or stage does not hold up
/// the work of others behind it.
pub fn choose(candidates: &[Candidate], capacity: usize) -> Vec<i64> {
    let mut stage_load: HashMap<&str, i64> = HashMap::new();
    let mut owner_load: HashMap<&str, i64> = HashMap::new();
    let mut chosen = Vec::new();
    for candidate in candidates {
        if chosen.len() >= capacity {
            break;
        }
        let stage = stage_load.entry(&candidate.stage).or_insert(candidate.stage_busy);
        let owner = owner_load.entry(&candidate.owner).or_insert(candidate.owner_busy);
        if *stage < candidate.stage_limit && *owner < candidate.owner_limit {
            *stage += 1;
            *owner += 1;
            chosen.push(candidate.msg_id);
        }
    }
    chosen
}

/// The host a job's URL is fetched from, as per-host limits count it: lowercase, without port
/// or credentials (`https://User@Example.COM:8443/a` → `example.com`); `None` for a URL with none.
pub fn url_host(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    parsed.host_str().filter(|host| !host.is_empty()).map(str::to_ascii_lowercase)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_is_its_lowercase_name_without_port_or_credentials() {
        assert_eq!(url_host("https://User:pw@Example.COM:8443/a?b#c").as_deref(), Some("example.com"));
        assert_eq!(url_host("http://127.0.0.3:8080/").as_deref(), Some("127.0.0.3"));
        assert_eq!(url_host("http://[::1]:80/").as_deref(), Some("[::1]"));
        assert_eq!(url_host("http://xn--bcher-kva.example/").as_deref(), url_host("http://Bücher.example/").as_deref());
        assert_eq!(url_host("not a url"), None);
        assert_eq!(url_host("mailto:someone@example.com"), None);
    }

    fn candidate(msg_id: i64, stage: &str, owner: &str) -> Candidate {
        Candidate {
            msg_id,
            stage: stage.to_string(),
            owner: owner.to_string(),
            stage_busy: 0,
            stage_limit: 10,
            owner_busy: 0,
            owner_limit: 2,
        }
    }

    #[test]
    fn an_owner_gets_at_most_its_limit_and_others_are_not_held_up_behind_it() {
        let burst: Vec<_> = (1..=5).map(|id| candidate(id, "crawl", "alice")).chain([candidate(6, "crawl", "bob")]).collect();
        assert_eq!(choose(&burst, 16), vec![1, 2, 6]);
    }

    #[test]
    fn work_already_running_counts_against_the_limits() {
        let mut first = candidate(1, "crawl", "alice");
        first.owner_busy = 1;
        let mut second = candidate(2, "crawl", "alice");
        second.owner_busy = 1;
        assert_eq!(choose(&[first, second], 16), vec![1]);

        let mut busy_stage = candidate(3, "embed", "bob");
        busy_stage.stage_busy = 3;
        busy_stage.stage_limit = 3;
        assert_eq!(choose(&[busy_stage, candidate(4, "crawl", "bob")], 16), vec![4]);
    }

    #[test]
    fn a_stage_gets_at_most_its_concurrency() {
        let candidates: Vec<_> = (1..=6)
            .map(|id| Candidate { stage_limit: 1, owner_limit: 100, ..candidate(id, if id % 2 == 0 { "b" } else { "a" }, "o") })
            .collect();
        assert_eq!(choose(&candidates, 16), vec![1, 2]);
    }

    #[test]
    fn never_more_than_the_workers_free_capacity() {
        let candidates: Vec<_> = (1..=10).map(|id| candidate(id, "crawl", &format!("owner{id}"))).collect();
        assert_eq!(choose(&candidates, 3), vec![1, 2, 3]);
        assert!(choose(&candidates, 0).is_empty());
        assert!(choose(&[], 5).is_empty());
    }
}

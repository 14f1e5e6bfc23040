//! Tag list pages the mirror makes offline, for any `n` and `last` a client sends: a page holds
//! sorted tags after `last`, at most `n`, and following its `Link`s from the first page lists
//! every tag exactly once.
#![no_main]

use libfuzzer_sys::fuzz_target;
use regmirror::reference::{RepoName, Tag};
use regmirror::tag_page::page;

fuzz_target!(|input: &str| {
    // The query on the first line, then the cached tags, space-separated.
    let (query, tags) = input.split_once('\n').unwrap_or((input, ""));
    let repo: RepoName = "library/alpine".parse().expect("repo");
    let mut tags: Vec<String> = (tags.split(' '))
        .filter(|t| t.parse::<Tag>().is_ok())
        .map(str::to_owned)
        .collect();
    tags.sort();
    tags.dedup();

    let (body, link) = page(&repo, &tags, Some(query));
    check_page(&repo, &tags, &body, link.as_deref());
    for n in 1..=tags.len().clamp(1, 4) {
        check_paging(&repo, &tags, n);
    }
});

/// Following the links from the first page of `n` lists every tag once.
fn check_paging(repo: &RepoName, tags: &[String], n: usize) {
    let mut listed: Vec<String> = Vec::new();
    let mut query = format!("n={n}");
    for _ in 0..=tags.len() {
        let (body, link) = page(repo, tags, Some(&query));
        let shown = check_page(repo, tags, &body, link.as_deref());
        assert!(shown.len() <= n, "{query}: {} tags", shown.len());
        listed.extend(shown);
        match link {
            Some(link) => query = next_query(repo, &link),
            None => break,
        }
    }
    assert_eq!(listed, tags, "paging by {n}");
}

/// The tags a page shows, after checking the page is well formed.
fn check_page(repo: &RepoName, tags: &[String], body: &str, link: Option<&str>) -> Vec<String> {
    let json: serde_json::Value = serde_json::from_str(body).expect("a page is JSON");
    assert_eq!(json["name"], repo.as_str());
    let shown: Vec<String> = serde_json::from_value(json["tags"].clone()).expect("tags are strings");
    assert!(shown.windows(2).all(|w| w[0] < w[1]), "{shown:?} is not sorted");
    assert!(shown.iter().all(|t| tags.contains(t)), "{shown:?} invents tags");
    if let Some(link) = link {
        assert!(!shown.is_empty(), "a link after an empty page: {link}");
        let next = next_query(repo, link);
        assert!(next.ends_with(&format!("&last={}", shown[shown.len() - 1])), "{link}");
    }
    shown
}

fn next_query(repo: &RepoName, link: &str) -> String {
    let prefix = format!("</v2/{repo}/tags/list?");
    let query = link
        .strip_prefix(&prefix)
        .and_then(|l| l.strip_suffix(">; rel=\"next\""));
    query.unwrap_or_else(|| panic!("a malformed link: {link}")).to_owned()
}

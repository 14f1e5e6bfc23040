//! A tag list page as the distribution spec pages it: sorted tags after `last`, at most `n`,
//! and a `Link` to the next page when more remain. For lists the mirror makes itself, from
//! the tags it has cached (`--offline`); online, the upstream's pages are passed through.

use serde_json::json;

use crate::reference::RepoName;

/// The body `{"name","tags"}` of the page `query` asks for, and the `Link` header value to the
/// next page, if any. `tags` must be sorted.
pub fn page(repo: &RepoName, tags: &[String], query: Option<&str>) -> (String, Option<String>) {
    let (mut n, mut last) = (None, None);
    for (key, value) in query.unwrap_or("").split('&').filter_map(|pair| pair.split_once('=')) {
        match key {
            "n" => n = value.parse::<usize>().ok(),
            "last" => last = Some(value),
            _ => {}
        }
    }
    let after: Vec<&String> = tags
        .iter()
        .filter(|t| last.is_none_or(|last| t.as_str() > last))
        .collect();
    let shown = &after[..n.unwrap_or(after.len()).min(after.len())];
    let link = match (n, shown.last()) {
        (Some(n), Some(end)) if shown.len() < after.len() => {
            Some(format!("</v2/{repo}/tags/list?n={n}&last={end}>; rel=\"next\""))
        }
        _ => None,
    };
    (json!({ "name": repo.as_str(), "tags": shown }).to_string(), link)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages() {
        let repo: RepoName = "alpine".parse().expect("repo");
        let tags: Vec<String> = ["1", "2", "3"].map(String::from).to_vec();
        let check = |query: Option<&str>, body: &str, link: Option<&str>| {
            assert_eq!(
                page(&repo, &tags, query),
                (body.to_owned(), link.map(String::from)),
                "{query:?}"
            );
        };
        check(None, r#"{"name":"library/alpine","tags":["1","2","3"]}"#, None);
        check(
            Some("n=2"),
            r#"{"name":"library/alpine","tags":["1","2"]}"#,
            Some(r#"</v2/library/alpine/tags/list?n=2&last=2>; rel="next""#),
        );
        check(Some("n=2&last=2"), r#"{"name":"library/alpine","tags":["3"]}"#, None);
        check(Some("n=0"), r#"{"name":"library/alpine","tags":[]}"#, None);
    }
}

//! A tag list page as the distribution spec pages it: sorted tags after `last`, at most `n`,
//! and a `Link` to the next page when more remain. For lists the mirror makes itself, from
//! the tags it has cached (`--offline`) or hosts; online, the upstream's pages are passed
//! through. The catalog of hosted repositories is paged the same way.

use serde_json::json;

use crate::reference::RepoName;

/// The body `{"name","tags"}` of the page `query` asks for, and the `Link` header value to the
/// next page, if any. `tags` must be sorted.
pub fn page(repo: &RepoName, tags: &[String], query: Option<&str>) -> (String, Option<String>) {
    named_page(repo.as_str(), tags, query)
}

/// `page` for a repository as the client names it (a hosted one, with its namespace).
pub fn named_page(name: &str, tags: &[String], query: Option<&str>) -> (String, Option<String>) {
    let (shown, next) = window(tags, query);
    let link = next.map(|next| format!("</v2/{name}/tags/list?{next}>; rel=\"next\""));
    (json!({ "name": name, "tags": shown }).to_string(), link)
}

/// The catalog's page `{"repositories"}` of sorted `names`, paged the same way.
pub fn catalog_page(names: &[String], query: Option<&str>) -> (String, Option<String>) {
    let (shown, next) = window(names, query);
    let link = next.map(|next| format!("</v2/_catalog?{next}>; rel=\"next\""));
    (json!({ "repositories": shown }).to_string(), link)
}

/// The sorted `items` after `last`, at most `n`, and the query of the next page if more remain.
fn window<'a>(items: &'a [String], query: Option<&str>) -> (Vec<&'a String>, Option<String>) {
    let (mut n, mut last) = (None, None);
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match &*key {
            "n" => n = value.parse::<usize>().ok(),
            "last" => last = Some(value.into_owned()),
            _ => {}
        }
    }
    let after: Vec<&String> = items
        .iter()
        .filter(|t| last.as_ref().is_none_or(|last| t.as_str() > last.as_str()))
        .collect();
    let shown = after[..n.unwrap_or(after.len()).min(after.len())].to_vec();
    let next = match (n, shown.last()) {
        (Some(n), Some(end)) if shown.len() < after.len() => Some(
            form_urlencoded::Serializer::new(String::new())
                .append_pair("n", &n.to_string())
                .append_pair("last", end)
                .finish(),
        ),
        _ => None,
    };
    (shown, next)
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

    #[test]
    fn catalog_pages_escape_names_in_the_link() {
        let names: Vec<String> = ["site.lan/a", "site.lan/b/c"].map(String::from).to_vec();
        let (body, link) = catalog_page(&names, Some("n=1"));
        assert_eq!(body, r#"{"repositories":["site.lan/a"]}"#);
        assert_eq!(
            link.as_deref(),
            Some(r#"</v2/_catalog?n=1&last=site.lan%2Fa>; rel="next""#)
        );
        let (body, link) = catalog_page(&names, Some("n=1&last=site.lan%2Fa"));
        assert_eq!((body.as_str(), link), (r#"{"repositories":["site.lan/b/c"]}"#, None));
    }
}

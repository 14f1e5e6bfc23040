//! Tag lists: passed through with the client's pagination, the last good copy of each page
//! standing in while the upstream is down, and made from the cached tags when offline.

use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, LINK};
use http::{HeaderMap, HeaderValue, StatusCode};
use http_body_util::{BodyExt, Limited};

use super::{Error, Mirror, Source};
use crate::reference::RepoName;
use crate::tag_page;
use crate::upstream;

const MAX_TAG_LIST: usize = 16 * 1024 * 1024;
/// Memory for the tag-list pages kept to stand in for an unreachable upstream.
const MAX_TAG_LIST_BYTES: u64 = 64 * 1024 * 1024;
/// What a kept page costs beyond its body, headers and key: moka's bookkeeping, roughly.
const PAGE_OVERHEAD: usize = 512;
/// The longest a kept page stands in for the upstream (`--max-stale` when shorter): a tag list
/// older than that says little of the repository as it is.
const KEPT_PAGE_TTL: Duration = Duration::from_secs(24 * 3600);

type PageKey = (RepoName, Option<String>);

/// The pages kept, weighed by all they hold, so that pages asked for with long `last` values
/// cannot outgrow the bound on tiny bodies.
pub(super) fn tag_list_cache(max_stale: Option<Duration>) -> moka::sync::Cache<PageKey, TagList> {
    moka::sync::Cache::builder()
        .weigher(|key, list| u32::try_from(weight(key, list)).unwrap_or(u32::MAX))
        .max_capacity(MAX_TAG_LIST_BYTES)
        .time_to_live(max_stale.map_or(KEPT_PAGE_TTL, |max| max.min(KEPT_PAGE_TTL)))
        .build()
}

fn weight((repo, page): &PageKey, list: &TagList) -> usize {
    let headers: usize = (list.headers.iter())
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    list.body.len() + headers + repo.as_str().len() + page.as_ref().map_or(0, String::len) + PAGE_OVERHEAD
}

/// The pagination a tag-list query asks for (`n`, `last`), and nothing else: what is passed
/// upstream and what a kept page is known by, so that parameters nobody reads cannot make a
/// new page per request.
fn page_query(query: Option<&str>) -> Option<String> {
    let mut page = form_urlencoded::Serializer::new(String::new());
    let mut any = false;
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let keep = match &*key {
            "n" => value.parse::<u32>().is_ok(),
            "last" => true,
            _ => false,
        };
        if keep {
            page.append_pair(&key, &value);
            any = true;
        }
    }
    any.then(|| page.finish())
}

#[derive(Clone)]
pub struct TagList {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub source: Source,
}

impl Mirror {
    /// Tag lists are passed through with the client's pagination; the last good copy of each
    /// page stands in while the upstream is down.
    pub async fn tags(&self, repo: &RepoName, query: Option<&str>) -> Result<TagList, Error> {
        if self.offline {
            return self.cached_tags(repo, query).await;
        }
        let page = page_query(query);
        let key = (repo.clone(), page.clone());
        let fetched = match self.upstream.tags(repo, page.as_deref()).await {
            Ok(response) => read_tag_list(response).await,
            Err(e) => Err(e),
        };
        match fetched {
            Ok(list) => {
                self.tag_lists.insert(key, list.clone());
                Ok(list)
            }
            Err(e) if e.is_outage() => match self.tag_lists.get(&key) {
                Some(list) => {
                    self.metrics.stale_serves.inc();
                    Ok(TagList {
                        source: Source::Stale,
                        ..list
                    })
                }
                None => Err(Error::Upstream(e)),
            },
            Err(e) => Err(Error::from_upstream(e, Error::NameUnknown)),
        }
    }

    /// Offline, a tag list is what the cache has of the repository's tags.
    async fn cached_tags(&self, repo: &RepoName, query: Option<&str>) -> Result<TagList, Error> {
        let tags = self.cache.repo_tags(&self.registry, repo).await?;
        if tags.is_empty() {
            return Err(Error::OfflineTags);
        }
        let (body, link) = tag_page::page(repo, &tags, query);
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(link) = link.and_then(|l| HeaderValue::from_str(&l).ok()) {
            headers.insert(LINK, link);
        }
        Ok(TagList {
            status: StatusCode::OK,
            headers,
            body: Bytes::from(body),
            source: Source::Cache,
        })
    }
}

async fn read_tag_list(response: upstream::Response) -> Result<TagList, upstream::Error> {
    let status = response.status();
    let mut headers = HeaderMap::new();
    for name in [CONTENT_TYPE, LINK] {
        if let Some(value) = response.headers().get(&name) {
            headers.insert(name, value.clone());
        }
    }
    let body = Limited::new(response.into_body(), MAX_TAG_LIST).collect().await;
    let body = body
        .map_err(|e| upstream::Error::Protocol(format!("reading the tag list: {e}")))?
        .to_bytes();
    Ok(TagList {
        status,
        headers,
        body,
        source: Source::Upstream,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pagination_is_kept_of_a_tag_list_query() {
        assert_eq!(
            page_query(Some("n=10&last=v1&pad=xxxx")).as_deref(),
            Some("n=10&last=v1")
        );
        assert_eq!(page_query(Some("pad=1&other=2")), None);
        assert_eq!(page_query(Some("n=lots")), None);
        assert_eq!(page_query(None), None);
    }

    #[test]
    fn kept_pages_are_weighed_whole_and_expire() {
        let list = TagList {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: Bytes::from_static(b"{}"),
            source: Source::Upstream,
        };
        let repo: RepoName = "a/b".parse().expect("repo");
        let long_key = (repo.clone(), Some(format!("last={}", "x".repeat(8000))));
        assert!(weight(&long_key, &list) > 8000, "the key is weighed, not only the body");
        assert!(weight(&(repo, None), &list) >= PAGE_OVERHEAD);

        let pages = tag_list_cache(None);
        assert_eq!(pages.policy().max_capacity(), Some(MAX_TAG_LIST_BYTES));
        assert_eq!(pages.policy().time_to_live(), Some(KEPT_PAGE_TTL));
        let hour = Duration::from_secs(3600);
        assert_eq!(tag_list_cache(Some(hour)).policy().time_to_live(), Some(hour));
        let long = Duration::from_secs(30 * 86_400);
        assert_eq!(tag_list_cache(Some(long)).policy().time_to_live(), Some(KEPT_PAGE_TTL));
    }
}

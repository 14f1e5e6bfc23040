//! Tag lists: passed through with the client's pagination, the last good copy of each page
//! standing in while the upstream is down, and made from the cached tags when offline.

use bytes::Bytes;
use http::header::{CONTENT_TYPE, LINK};
use http::{HeaderMap, HeaderValue, StatusCode};
use http_body_util::{BodyExt, Limited};

use super::{Error, Mirror, Source};
use crate::reference::RepoName;
use crate::tag_page;
use crate::upstream;

const MAX_TAG_LIST: usize = 16 * 1024 * 1024;
/// Bytes of tag-list pages kept to stand in for an unreachable upstream.
const MAX_TAG_LIST_BYTES: u64 = 64 * 1024 * 1024;

/// The pages kept, weighed by their bodies' bytes.
pub(super) fn tag_list_cache() -> moka::sync::Cache<(RepoName, Option<String>), TagList> {
    moka::sync::Cache::builder()
        .weigher(|_, list: &TagList| u32::try_from(list.body.len()).unwrap_or(u32::MAX).max(1))
        .max_capacity(MAX_TAG_LIST_BYTES)
        .build()
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
}

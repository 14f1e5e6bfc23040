//! Manifest media types and Accept negotiation. Manifests are stored and served as the exact
//! bytes the upstream sent; nothing here parses or rewrites them.

use http::header::ACCEPT;
use http::HeaderMap;

pub const DOCKER_V2: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// Sent on every upstream manifest request, HEAD and GET alike, so the digest a tag resolves
/// to does not depend on which client asked.
pub const UPSTREAM_ACCEPT: &str = "application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.oci.image.index.v1+json";

/// Manifests are read whole; the spec asks registries to accept at least 4 MiB and clients
/// refuse larger ones.
pub const MAX_SIZE: usize = 4 * 1024 * 1024;

/// Whether a client's Accept headers admit `media_type`. No Accept header at all means the
/// client takes anything, as every registry behaves.
pub fn accepts(headers: &HeaderMap, media_type: &str) -> bool {
    let mut values = headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .peekable();
    if values.peek().is_none() {
        return true;
    }
    values
        .flat_map(|v| v.split(','))
        .map(|item| item.split(';').next().unwrap_or("").trim())
        .any(|item| item == "*/*" || item.eq_ignore_ascii_case(media_type))
}

/// Whether `media_type` is one of the manifest types the mirror asks for and serves. Anything
/// else (an upstream's `text/html` error page, say) is never stored or served as a manifest.
pub fn is_manifest(media_type: &str) -> bool {
    let bare = media_type.split(';').next().unwrap_or("").trim();
    [DOCKER_V2, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX]
        .iter()
        .any(|known| bare.eq_ignore_ascii_case(known))
}

/// Legacy schema1 digests cover the payload without its signatures, not the bytes served,
/// so they cannot be verified the way the cache verifies everything else.
pub fn is_schema1(media_type: &str) -> bool {
    media_type.starts_with("application/vnd.docker.distribution.manifest.v1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(lines: &[&'static str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for l in lines {
            h.append(ACCEPT, HeaderValue::from_static(l));
        }
        h
    }

    #[test]
    fn only_manifest_types_are_manifests() {
        assert!(is_manifest(OCI_INDEX));
        assert!(is_manifest(
            "application/vnd.docker.distribution.manifest.v2+json; charset=utf-8"
        ));
        assert!(!is_manifest("text/html"));
        assert!(!is_manifest("application/json"));
        assert!(!is_manifest(
            "application/vnd.docker.distribution.manifest.v1+prettyjws"
        ));
    }

    #[test]
    fn negotiation() {
        assert!(accepts(&headers(&[]), OCI_INDEX));
        assert!(accepts(&headers(&[OCI_MANIFEST, OCI_INDEX]), OCI_INDEX));
        assert!(accepts(
            &headers(&["application/vnd.oci.image.manifest.v1+json, */*;q=0.1"]),
            DOCKER_LIST
        ));
        assert!(accepts(
            &headers(&["a/b; q=0.5, application/vnd.oci.image.index.v1+json;q=0.9"]),
            OCI_INDEX
        ));
        assert!(!accepts(&headers(&[DOCKER_V2]), OCI_INDEX));
    }
}

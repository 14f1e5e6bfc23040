//! What the fuzz targets share: the registry grammar as the specs write it (regular
//! expressions copied from the distribution and image specs, independent of regmirror's
//! hand-written parsers, so each checks the other), and the checks every located repository
//! must pass.

use std::sync::LazyLock;

use regex::Regex;
use regmirror::reference::{Registry, RepoName};

/// distribution-spec "Pulling manifests".
static NAME: LazyLock<Regex> = LazyLock::new(|| {
    let component = r"[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*";
    Regex::new(&format!("^{component}(/{component})*$")).expect("name regex")
});
static TAG: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$").expect("tag regex"));
/// image-spec descriptor.md: the algorithms regmirror supports, with their registered encodings.
static DIGEST: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$").expect("digest regex"));
static ALGORITHM: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z0-9]+([+._-][a-z0-9]+)*$").expect("algorithm regex"));
/// distribution/reference's domain, as regmirror keeps it: lowercase, port digits only.
static HOST: LazyLock<Regex> = LazyLock::new(|| {
    let label = r"([a-z0-9]|[a-z0-9][a-z0-9-]*[a-z0-9])";
    Regex::new(&format!(r"^{label}(\.{label})*(:[0-9]+)?$")).expect("host regex")
});

/// Many clients cap host + `/` + name at 255, so no name is longer.
pub const MAX_NAME_LEN: usize = 255;

pub fn is_spec_name(s: &str) -> bool {
    s.len() <= MAX_NAME_LEN && NAME.is_match(s)
}

pub fn is_spec_tag(s: &str) -> bool {
    TAG.is_match(s)
}

pub fn is_spec_digest(s: &str) -> bool {
    DIGEST.is_match(s)
}

pub fn is_spec_algorithm(s: &str) -> bool {
    ALGORITHM.is_match(s)
}

pub fn is_spec_host(s: &str) -> bool {
    s.len() <= MAX_NAME_LEN && HOST.is_match(s)
}

/// A registry and repository the mirror located from a request: both valid per the grammar,
/// both in the canonical form their own parsers give back, so a cache path, a token scope or
/// a log line made of them says the same thing when read again.
pub fn check_located(registry: &Registry, repo: &RepoName) {
    assert!(
        is_spec_host(registry.as_str()),
        "registry {registry:?} breaks the host grammar"
    );
    assert!(
        is_spec_name(repo.as_str()),
        "repository {repo:?} breaks the name grammar"
    );
    assert_eq!(
        registry.as_str().parse::<Registry>().as_ref(),
        Ok(registry),
        "registry round trip"
    );
    assert_eq!(
        RepoName::on(registry, repo.as_str()).as_ref(),
        Ok(repo),
        "repository round trip"
    );
    if registry.is_docker_hub() {
        assert!(
            repo.as_str().contains('/'),
            "{repo:?}: Docker Hub names carry their namespace"
        );
    }
}

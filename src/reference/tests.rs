use super::*;

#[test]
fn names() {
    let ok = |s: &str, want: &str| assert_eq!(s.parse::<RepoName>().map(|n| n.0), Ok(want.to_owned()), "{s}");
    ok("alpine", "library/alpine");
    ok("library/alpine", "library/alpine");
    ok("someuser/tool", "someuser/tool");
    ok("a/b/c", "a/b/c");
    ok("my-repo/x__y.z", "my-repo/x__y.z");
    ok("a--b/manifests", "a--b/manifests");
    for bad in [
        "",
        "Alpine",
        "a//b",
        "/a",
        "a/",
        "a/../b",
        "a/./b",
        "-a",
        "a-",
        "a___b",
        "a..b",
        "a%2fb",
        "a b",
        &"a".repeat(256),
    ] {
        assert_eq!(bad.parse::<RepoName>(), Err(Error::Name), "{bad}");
    }
}

#[test]
fn a_name_is_capped_with_its_library_prefix_so_it_reads_back() {
    let longest = "a".repeat(MAX_NAME_LEN - "library/".len());
    let name: RepoName = longest.parse().expect("fits with its prefix");
    assert_eq!(name.to_string().parse::<RepoName>(), Ok(name));
    assert_eq!(format!("{longest}a").parse::<RepoName>(), Err(Error::Name));
}

#[test]
fn registries() {
    let ok = |s: &str, want: &str| assert_eq!(s.parse::<Registry>().map(|r| r.0), Ok(want.to_owned()), "{s}");
    ok("docker.io", "docker.io");
    ok("index.docker.io", "docker.io");
    ok("registry-1.docker.io", "docker.io");
    ok("GHCR.io", "ghcr.io");
    ok("registry.example.internal:5000", "registry.example.internal:5000");
    ok("localhost:5000", "localhost:5000");
    for bad in [
        "",
        "a..b",
        "-a.io",
        "a.io:",
        "a.io:0",
        "a.io:99999",
        "a_b.io",
        "a/b",
        "a.io:+5",
        "1:+1",
    ] {
        assert!(bad.parse::<Registry>().is_err(), "{bad}");
    }
    assert!(Registry::looks_like_host("ghcr.io") && Registry::looks_like_host("localhost"));
    assert!(!Registry::looks_like_host("library"));
}

#[test]
fn names_elsewhere_are_not_canonicalised() {
    let ghcr: Registry = "ghcr.io".parse().expect("registry");
    assert_eq!(RepoName::on(&ghcr, "tool").map(|n| n.0), Ok("tool".to_owned()));
    assert_eq!(
        RepoName::on(&Registry::docker_hub(), "tool").map(|n| n.0),
        Ok("library/tool".to_owned())
    );
    assert!(RepoName::on(&ghcr, "Tool").is_err());
}

#[test]
fn tags() {
    for ok in ["latest", "1", "_x", "v1.2.3-rc_1", &"a".repeat(128)] {
        assert!(ok.parse::<Tag>().is_ok(), "{ok}");
    }
    for bad in ["", ".x", "-x", "a/b", "a:b", &"a".repeat(129)] {
        assert!(bad.parse::<Tag>().is_err(), "{bad}");
    }
}

#[test]
fn references() {
    assert!(matches!("latest".parse(), Ok(Reference::Tag(_))));
    let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    assert!(matches!(d.parse(), Ok(Reference::Digest(_))));
    assert!(matches!("sha256:XYZ".parse::<Reference>(), Err(Error::Digest(_))));
}

#[test]
fn image_refs() {
    let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    let full = |s: &str| s.parse::<ImageRef>().map(|r| r.to_string());
    assert_eq!(full("alpine:3.20"), Ok("docker.io/library/alpine:3.20".into()));
    assert_eq!(full("someuser/tool"), Ok("docker.io/someuser/tool:latest".into()));
    assert_eq!(
        full(&format!("library/nginx@{d}")),
        Ok(format!("docker.io/library/nginx@{d}"))
    );
    assert_eq!(
        full(&format!("nginx:1@{d}")),
        Ok(format!("docker.io/library/nginx@{d}"))
    );
    assert_eq!(
        full("docker.io/library/alpine:3.20"),
        Ok("docker.io/library/alpine:3.20".into())
    );
    assert_eq!(full("index.docker.io/a/b/c"), Ok("docker.io/a/b/c:latest".into()));
    // Other registries keep their names as given: no `library/`.
    assert_eq!(full("ghcr.io/a/b:1"), Ok("ghcr.io/a/b:1".into()));
    assert_eq!(full("localhost:5000/a"), Ok("localhost:5000/a:latest".into()));
    assert_eq!(full("Site.LAN/gallery/ui:v1"), Ok("site.lan/gallery/ui:v1".into()));
    assert_eq!(full("bad_host.lan/a"), Err(Error::Registry("bad_host.lan".into())));
    assert_eq!(full("Alpine"), Err(Error::Name));
    assert_eq!(full("alpine:"), Err(Error::Tag));
}

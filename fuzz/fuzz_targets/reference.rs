//! Repository names, tags, registries, references and image references: each accepts exactly
//! what the spec's grammar does (names and tags), gives back a canonical value, and reads its
//! own display again as the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use regmirror::reference::{ImageRef, Reference, Registry, RepoName, Tag};
use regmirror_fuzz::{check_located, is_spec_host, is_spec_name, is_spec_tag};

fuzz_target!(|text: &str| {
    let tag = text.parse::<Tag>();
    assert_eq!(tag.is_ok(), is_spec_tag(text), "tag {text:?}: {tag:?}");
    if let Ok(tag) = &tag {
        assert_eq!(tag.as_str(), text);
    }

    let hub = Registry::docker_hub();
    let name = text.parse::<RepoName>();
    let hub_canonical = text.contains('/') || is_spec_name(&format!("library/{text}"));
    assert_eq!(
        name.is_ok(),
        is_spec_name(text) && hub_canonical,
        "name {text:?}: {name:?}"
    );
    if let Ok(name) = &name {
        check_located(&hub, name);
        assert_eq!(
            name.to_string().parse::<RepoName>().as_ref(),
            Ok(name),
            "name round trip"
        );
    }

    if let Ok(registry) = text.parse::<Registry>() {
        assert!(is_spec_host(registry.as_str()), "registry {text:?} became {registry:?}");
        assert_eq!(registry.to_string().parse::<Registry>().as_ref(), Ok(&registry));
        if let Ok(name) = RepoName::on(&registry, text) {
            check_located(&registry, &name);
        }
    }

    if let Ok(reference) = text.parse::<Reference>() {
        assert_eq!(reference.to_string(), text, "a reference is kept as written");
    }

    if let Ok(image) = text.parse::<ImageRef>() {
        check_located(&image.registry, &image.repo);
        let again = image.to_string().parse::<ImageRef>();
        assert_eq!(again.as_ref(), Ok(&image), "{text:?} displayed as {image}");
    }
});

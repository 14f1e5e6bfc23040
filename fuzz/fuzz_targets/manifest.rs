//! Manifests and indexes as an upstream or a bundle sends them, under each media type, and the
//! media type and Accept checks beside them. What a parse finds survives being written out
//! and read again, and a platform reads back as written.
#![no_main]

use http::header::ACCEPT;
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use regmirror::image::{self, Descriptor, Node, Platform};
use regmirror::manifest;

const TYPES: [&str; 4] = [
    manifest::OCI_INDEX,
    manifest::DOCKER_LIST,
    manifest::OCI_MANIFEST,
    manifest::DOCKER_V2,
];

fuzz_target!(|input: &[u8]| {
    // The media type on the first line (also read as an Accept value and a platform), then
    // the manifest's bytes.
    let (first, bytes) = match input.iter().position(|&b| b == b'\n') {
        Some(end) => (&input[..end], &input[end + 1..]),
        None => (input, &[][..]),
    };
    let Ok(media_type) = std::str::from_utf8(first) else {
        return;
    };

    if image::is_manifest(media_type) {
        assert!(manifest::is_manifest(media_type), "{media_type:?}");
    }
    let _ = manifest::is_schema1(media_type);
    if let Ok(value) = HeaderValue::from_str(media_type) {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, value);
        for known in TYPES {
            let _ = manifest::accepts(&headers, known);
        }
    }
    if let Ok(platform) = media_type.parse::<Platform>() {
        assert_eq!(platform.to_string(), media_type, "a platform reads back as written");
    }

    match Node::parse(media_type, bytes) {
        Ok(Node::Index(children)) => {
            assert!(TYPES[..2].contains(&media_type));
            let json = serde_json::json!({ "manifests": children });
            match Node::parse(media_type, json.to_string().as_bytes()) {
                Ok(Node::Index(again)) => assert_eq!(again, children),
                other => panic!("an index written out reads as {other:?}"),
            }
            children.iter().for_each(check_descriptor);
        }
        Ok(Node::Image { config, layers }) => {
            assert!(TYPES[2..].contains(&media_type));
            let json = serde_json::json!({ "config": config, "layers": layers });
            match Node::parse(media_type, json.to_string().as_bytes()) {
                Ok(Node::Image { config: c, layers: l }) => assert_eq!((c, l), (config.clone(), layers.clone())),
                other => panic!("an image written out reads as {other:?}"),
            }
            std::iter::once(&config).chain(&layers).for_each(check_descriptor);
        }
        Err(_) => {}
    }
});

fn check_descriptor(descriptor: &Descriptor) {
    let _ = descriptor.is_foreign();
    if let Some(platform) = &descriptor.platform {
        let _ = platform.to_string();
    }
}

//! Digests, from a path, a header or a manifest's JSON: accepted exactly when the image spec's
//! grammar for sha256 and sha512 says so, kept as written, read the same from a JSON string,
//! and an algorithm is called unsupported only when it is one the grammar allows.
#![no_main]

use libfuzzer_sys::fuzz_target;
use regmirror::digest::{Digest, Error};
use regmirror_fuzz::{is_spec_algorithm, is_spec_digest};

fuzz_target!(|text: &str| {
    let parsed = text.parse::<Digest>();
    assert_eq!(parsed.is_ok(), is_spec_digest(text), "{text:?}: {parsed:?}");
    match &parsed {
        Ok(digest) => {
            assert_eq!(digest.to_string(), text);
            assert_eq!(format!("{}:{}", digest.algorithm().name(), digest.hex()), text);
        }
        Err(Error::UnsupportedAlgorithm(algorithm)) => {
            assert!(is_spec_algorithm(algorithm), "{algorithm:?} is no algorithm");
            assert!(!["sha256", "sha512"].contains(&algorithm.as_str()));
        }
        Err(_) => {}
    }
    let json = serde_json::to_string(text).expect("a string is JSON");
    let from_json = serde_json::from_str::<Digest>(&json);
    assert_eq!(from_json.ok(), parsed.ok(), "{text:?} read from JSON");
});

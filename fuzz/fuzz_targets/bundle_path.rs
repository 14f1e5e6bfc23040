//! Entry paths of an import bundle (a tar's names and link targets, a directory's files),
//! which whoever made the bundle chose: the one form they are looked up in has no empty, `.`
//! or `..` step, so no lookup climbs out of the bundle, and cleaning twice changes nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use regmirror::airgap::layout;
use regmirror::fuzzing::bundle_path;

fuzz_target!(|path: &str| {
    let clean = bundle_path(path);
    assert!(
        clean.split('/').all(|step| !matches!(step, "." | "..")) && !clean.contains("//"),
        "{path:?} cleaned to {clean:?}"
    );
    assert!(
        !clean.starts_with('/') && !clean.ends_with('/'),
        "{path:?} cleaned to {clean:?}"
    );
    assert_eq!(bundle_path(&clean), clean, "cleaning {path:?} twice");
    if let Some(digest) = layout::digest_of_path(&clean) {
        assert_eq!(layout::blob_path(&digest), clean);
    }
});

//! An OCI layout bundle's `index.json` and blob paths, as an import reads them from a bundle
//! someone handed over: an image name read from an annotation is canonical and reads back as
//! itself, and a path names a digest exactly when it is that digest's own path.
#![no_main]

use libfuzzer_sys::fuzz_target;
use regmirror::airgap::layout::{self, Index};
use regmirror::reference::ImageRef;
use regmirror_fuzz::check_located;

fuzz_target!(|input: &[u8]| {
    // A path on the first line, then an `index.json`.
    let (path, index) = match input.iter().position(|&b| b == b'\n') {
        Some(end) => (&input[..end], &input[end + 1..]),
        None => (input, &[][..]),
    };
    let Ok(path) = std::str::from_utf8(path) else { return };
    if let Some(digest) = layout::digest_of_path(path) {
        assert_eq!(layout::blob_path(&digest), path, "{path:?} names {digest}");
    }

    let Ok(index) = serde_json::from_slice::<Index>(index) else {
        return;
    };
    for descriptor in &index.manifests {
        let digest = &descriptor.digest;
        assert_eq!(
            layout::digest_of_path(&layout::blob_path(digest)).as_ref(),
            Some(digest)
        );
        if let Some(image) = layout::image_name(descriptor) {
            check_located(&image.registry, &image.repo);
            assert_eq!(image.to_string().parse::<ImageRef>().as_ref(), Ok(&image), "{image}");
        }
    }
    let written = serde_json::to_vec(&index).expect("an index is JSON");
    let again: Index = serde_json::from_slice(&written).expect("an index written out reads again");
    assert_eq!(again.manifests, index.manifests);
});

//! Bundles `import` must refuse (README, "Air-gapped sites"): corrupt, cut short, incomplete or
//! inconsistent. Each refusal names the bad entry, by its path in the bundle or by the digest
//! its descriptor gives it, and adds nothing; the command says so on one line and fails.

use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use regmirror::airgap::export::Selection;
use regmirror::airgap::import;
use regmirror::image::Platforms;
use tempfile::TempDir;

use crate::airgap::{assert_all_ok, assert_nothing_added, export, prefetch};
use crate::support::content::{sha256, Image};
use crate::support::process::output_within;
use crate::support::{DataDir, FakeRegistry, Format};

/// `export`'s bundle of `library/tiny:1`, written into `work`, and the image in it.
async fn good_bundle(work: &Path) -> (PathBuf, Image) {
    let upstream = FakeRegistry::start().await;
    let tiny = upstream.push_image("library/tiny", "1", Format::Docker);
    let dir = TempDir::new().unwrap();
    assert_all_ok(&prefetch(&upstream, dir.path(), &["tiny:1"], Platforms::All).await);
    let good = work.join("good.tar");
    export(dir.path(), Selection::All, &[], &good);
    (good, tiny)
}

/// A content file's path in a bundle: `blobs/sha256/<hex>`.
fn entry_of(digest: &str) -> String {
    format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"))
}

/// One entry of a tar, where it lies.
struct Placed {
    name: String,
    header: u64,
    data: u64,
    size: u64,
}

fn placement(bundle: &Path) -> Vec<Placed> {
    let mut archive = tar::Archive::new(std::fs::File::open(bundle).unwrap());
    let entries = archive.entries().unwrap().map(Result::unwrap);
    entries
        .map(|e| Placed {
            name: e.path().unwrap().to_string_lossy().into_owned(),
            header: e.raw_header_position(),
            data: e.raw_file_position(),
            size: e.size(),
        })
        .collect()
}

/// What the refusal of a bundle cut short at byte `cut` must say: that the entry whose data the
/// cut falls in is truncated, or else (a cut header, or padding) after which entry, the last
/// one read whole, the archive broke off.
fn named_by_cut(placed: &[Placed], cut: u64) -> String {
    if let Some(cut_in) = placed.iter().find(|p| (p.data..p.data + p.size).contains(&cut)) {
        return format!("{}: truncated", cut_in.name);
    }
    let whole = placed.iter().rfind(|p| p.data + p.size <= cut);
    format!("(after {})", whole.expect("a cut after the first entry").name)
}

/// A copy of `good` at `out` with every entry passed through `edit`, which may rename it,
/// change its bytes, or (`None`) leave it out.
fn rewrite(good: &Path, out: &Path, edit: impl Fn(&str, Vec<u8>) -> Option<(String, Vec<u8>)>) {
    let mut archive = tar::Archive::new(std::fs::File::open(good).unwrap());
    let mut copy = tar::Builder::new(std::fs::File::create(out).unwrap());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        if let Some((name, bytes)) = edit(&name, bytes) {
            let mut header = entry.header().clone();
            header.set_size(bytes.len() as u64);
            copy.append_data(&mut header, name, &bytes[..]).unwrap();
        }
    }
    copy.finish().unwrap();
}

/// `index.json` with its one image's descriptor saying `digest` and `size`.
fn descriptor(index: &[u8], digest: &str, size: usize) -> Vec<u8> {
    let mut index: serde_json::Value = serde_json::from_slice(index).unwrap();
    index["manifests"][0]["digest"] = digest.into();
    index["manifests"][0]["size"] = size.into();
    serde_json::to_vec(&index).unwrap()
}

/// `good` with one byte of `entry`'s data flipped, at `out`.
fn flip_a_byte(good: &Path, entry: &str, out: &Path) {
    std::fs::copy(good, out).unwrap();
    let placed = placement(good);
    let at = placed.iter().find(|p| p.name == entry).expect("entry in bundle").data + 100;
    let mut file = std::fs::OpenOptions::new().read(true).write(true).open(out).unwrap();
    let mut byte = [0u8];
    file.seek(SeekFrom::Start(at)).unwrap();
    file.read_exact(&mut byte).unwrap();
    file.seek(SeekFrom::Start(at)).unwrap();
    file.write_all(&[byte[0] ^ 0xff]).unwrap();
}

/// Imports `bundle` into `site`, which must refuse it and stay empty; the refusal's message.
async fn refusal(site: &Path, bundle: &Path) -> String {
    let outcome = import::import(site, bundle).await;
    let error = outcome
        .err()
        .unwrap_or_else(|| panic!("{} was imported", bundle.display()));
    assert_nothing_added(site);
    error.to_string()
}

#[tokio::test]
async fn corrupt_and_truncated_bundles_are_refused_naming_the_entry_and_add_nothing() {
    let work = TempDir::new().unwrap();
    let (good, tiny) = good_bundle(work.path()).await;
    let layer = entry_of(&tiny.layers[0].digest);
    let site = TempDir::new().unwrap();

    let corrupt = work.path().join("corrupt.tar");
    flip_a_byte(&good, &layer, &corrupt);
    let error = refusal(site.path(), &corrupt).await;
    assert!(error.starts_with(&format!("{layer}: content hashes to ")), "{error}");

    let bytes = std::fs::read(&good).unwrap();
    let placed = placement(&good);
    let layer_at = placed.iter().find(|p| p.name == layer).expect("layer in bundle");
    let cuts = [
        bytes.len() as u64 / 2,
        layer_at.data + 10,
        // In the layer's header: its name may be lost, the entry before it is not.
        layer_at.header + 100,
        bytes.len() as u64 - 2048,
    ];
    for cut in cuts {
        let truncated = work.path().join("truncated.tar");
        std::fs::write(&truncated, &bytes[..cut as usize]).unwrap();
        let error = refusal(site.path(), &truncated).await;
        let named = named_by_cut(&placed, cut);
        assert!(error.contains(&named), "cut at {cut}: expected {named:?} in: {error}");
    }
    assert!(
        DataDir::new(site.path()).tmp_files().is_empty(),
        "staged files are cleaned up"
    );
    import::import(site.path(), &good)
        .await
        .expect("the good bundle still imports");
}

/// A layer left out, a descriptor whose size is wrong, a manifest that is not one (under its
/// true digest), one over the 4 MiB manifest limit, and an `index.json` that is not JSON.
#[tokio::test]
async fn incomplete_and_inconsistent_bundles_are_refused_naming_the_entry() {
    let work = TempDir::new().unwrap();
    let (good, tiny) = good_bundle(work.path()).await;
    let site = TempDir::new().unwrap();
    let bad = work.path().join("bad.tar");
    let manifest = &tiny.manifest;

    let layer = entry_of(&tiny.layers[0].digest);
    rewrite(&good, &bad, |name, bytes| {
        (name != layer).then(|| (name.to_owned(), bytes))
    });
    let error = refusal(site.path(), &bad).await;
    assert!(error.contains(&format!("needs {}", tiny.layers[0].digest)), "{error}");

    let size = manifest.bytes.len();
    rewrite(&good, &bad, |name, bytes| match name {
        "index.json" => Some((name.to_owned(), descriptor(&bytes, &manifest.digest, size + 1))),
        _ => Some((name.to_owned(), bytes)),
    });
    let error = refusal(site.path(), &bad).await;
    let expected = format!(
        "{}: {size} bytes, but its descriptor says {}",
        manifest.digest,
        size + 1
    );
    assert_eq!(error, expected);

    let not_a_manifest = b"[\"not a manifest\"]".to_vec();
    let digest = sha256(&not_a_manifest);
    rewrite(&good, &bad, |name, bytes| match name {
        "index.json" => Some((name.to_owned(), descriptor(&bytes, &digest, not_a_manifest.len()))),
        _ if name == entry_of(&manifest.digest) => Some((entry_of(&digest), not_a_manifest.clone())),
        _ => Some((name.to_owned(), bytes)),
    });
    let error = refusal(site.path(), &bad).await;
    assert!(error.starts_with(&format!("{}: ", entry_of(&digest))), "{error}");

    // Still JSON with any amount of whitespace after it: only its size is wrong.
    let mut oversized = manifest.bytes.to_vec();
    oversized.resize((4 << 20) + 1, b' ');
    let digest = sha256(&oversized);
    rewrite(&good, &bad, |name, bytes| match name {
        "index.json" => Some((name.to_owned(), descriptor(&bytes, &digest, oversized.len()))),
        _ if name == entry_of(&manifest.digest) => Some((entry_of(&digest), oversized.clone())),
        _ => Some((name.to_owned(), bytes)),
    });
    let error = refusal(site.path(), &bad).await;
    let expected = format!("{digest}: a manifest of {} bytes; ", oversized.len());
    assert!(error.starts_with(&expected), "{error}");

    rewrite(&good, &bad, |name, bytes| match name {
        "index.json" => Some((name.to_owned(), b"{\"manifests\": [".to_vec())),
        _ => Some((name.to_owned(), bytes)),
    });
    let error = refusal(site.path(), &bad).await;
    assert!(error.starts_with("index.json: "), "{error}");
}

/// `regmirror import` itself: a non-zero exit and one line on stderr naming the bundle, the
/// bad entry and that nothing was added.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_import_command_names_the_bad_entry_on_one_line() {
    let work = TempDir::new().unwrap();
    let (good, tiny) = good_bundle(work.path()).await;
    let layer = entry_of(&tiny.layers[0].digest);
    let corrupt = work.path().join("corrupt.tar");
    flip_a_byte(&good, &layer, &corrupt);
    let site = TempDir::new().unwrap();

    let mut command = Command::new(env!("CARGO_BIN_EXE_regmirror"));
    command
        .arg("import")
        .arg("--data-dir")
        .arg(site.path())
        .arg(&corrupt)
        .env_clear();
    let output = output_within(&mut command, Duration::from_secs(60)).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{:?}: {stderr}", output.status);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    let expected = format!("regmirror: {} refused, nothing added: {layer}: ", corrupt.display());
    assert!(stderr.starts_with(&expected), "expected {expected:?}…, got: {stderr}");
    assert!(output.stdout.is_empty(), "{}", String::from_utf8_lossy(&output.stdout));
    assert_nothing_added(site.path());
}

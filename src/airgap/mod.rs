//! Air-gapped sites: fill the cache from a list of images (`prefetch`), carry it across as a
//! standard OCI image layout in one tar file (`export`), and take such a bundle, or a `docker
//! save` tarball, into another mirror's cache (`import`), which then serves it `--offline`.
//!
//! - `prefetch`: references → manifests, configs and layers through `Mirror`, in parallel;
//! - `layout`: the OCI image layout's names (`oci-layout`, `index.json`, `blobs/<alg>/<hex>`);
//! - `export`: cached images → an OCI layout tar, streamed from the cache's files;
//! - `import`: a bundle's images checked whole, then committed together with their tags;
//! - `share`: an import's images put in the fleet's bucket (`import --bucket`);
//! - `staging`: a bundle (tar or directory) read: files hashed, checked, staged in `tmp/`;
//! - `docker_save`: `docker save`'s `manifest.json` → a Docker v2 manifest over its files;
//! - `progress`: the terminal progress bars both long-running commands draw.

pub mod docker_save;
pub mod export;
pub mod import;
pub mod layout;
pub mod prefetch;
mod progress;
pub mod share;
pub(crate) mod staging;

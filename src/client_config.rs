//! `client-config`: exactly what to put where so a client pulls through this mirror and trusts
//! its CA. Nothing here needs `insecure-registries`.

use std::fmt::Write as _;
use std::path::Path;

use crate::cli::ClientKind;

/// The instructions for one client. `mirror` is `HOST:PORT` as clients dial it; `ca` is where
/// the CA certificate is on the mirror's machine.
pub fn render(kind: ClientKind, mirror: &str, ca: &Path, fingerprint: Option<&str>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# 1. Copy the mirror's CA certificate to the client: {} on the mirror,",
        ca.display()
    );
    let _ = writeln!(
        out,
        "#    or fetch https://{mirror}/ca.crt and check its SHA-256 fingerprint:"
    );
    let _ = writeln!(
        out,
        "#    {}",
        fingerprint.unwrap_or("(run `regmirror cert init` first to create the CA)")
    );
    let _ = writeln!(out, "#    (openssl x509 -noout -fingerprint -sha256 -in ca.crt)");
    out.push('\n');
    out.push_str(&match kind {
        ClientKind::Docker => docker(mirror),
        ClientKind::Containerd => containerd(mirror),
        ClientKind::Podman => podman(mirror),
    });
    out
}

fn hosts_toml(mirror: &str, ca: &str) -> String {
    format!(
        "server = \"https://registry-1.docker.io\"\n\n[host.\"https://{mirror}\"]\n  capabilities = [\"pull\", \"resolve\"]\n  ca = \"{ca}\"\n"
    )
}

fn docker(mirror: &str) -> String {
    let ca = format!("/etc/docker/certs.d/{mirror}/ca.crt");
    format!(
        "# 2. dockerd: install the CA where dockerd looks for this registry's CAs\n\
         sudo mkdir -p /etc/docker/certs.d/{mirror}\n\
         sudo cp ca.crt {ca}\n\n\
         # 3. /etc/docker/daemon.json (merge with what is there):\n\
         {{\n  \"registry-mirrors\": [\"https://{mirror}\"]\n}}\n\n\
         # 4. With the containerd image store (default on new Docker Engine 29+ installs), dockerd\n\
         #    ignores certs.d for mirrors; also write /etc/docker/certs.d/docker.io/hosts.toml:\n\
         {}\n\
         # 5. sudo systemctl restart docker\n",
        hosts_toml(mirror, &ca)
    )
}

fn containerd(mirror: &str) -> String {
    let ca = "/etc/containerd/certs.d/docker.io/regmirror-ca.crt";
    format!(
        "# 2. containerd: install the CA\n\
         sudo mkdir -p /etc/containerd/certs.d/docker.io\n\
         sudo cp ca.crt {ca}\n\n\
         # 3. /etc/containerd/certs.d/docker.io/hosts.toml:\n\
         {}\n\
         # 4. Point containerd at the hosts directory (no restart needed once it is set):\n\
         #    containerd 2.x /etc/containerd/config.toml:\n\
         #      [plugins.\"io.containerd.cri.v1.images\".registry]\n\
         #        config_path = \"/etc/containerd/certs.d\"\n\
         #    containerd 1.x:\n\
         #      [plugins.\"io.containerd.grpc.v1.cri\".registry]\n\
         #        config_path = \"/etc/containerd/certs.d\"\n\
         #    ctr: ctr images pull --hosts-dir /etc/containerd/certs.d docker.io/library/alpine:latest\n",
        hosts_toml(mirror, ca)
    )
}

fn podman(mirror: &str) -> String {
    format!(
        "# 2. podman, skopeo, buildah, CRI-O: install the CA\n\
         sudo mkdir -p /etc/containers/certs.d/{mirror}\n\
         sudo cp ca.crt /etc/containers/certs.d/{mirror}/ca.crt\n\n\
         # 3. /etc/containers/registries.conf.d/regmirror.conf:\n\
         [[registry]]\n\
         prefix = \"docker.io\"\n\
         location = \"docker.io\"\n\n\
         [[registry.mirror]]\n\
         location = \"{mirror}\"\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_client_is_told_to_skip_verification() {
        for kind in [ClientKind::Docker, ClientKind::Containerd, ClientKind::Podman] {
            let text = render(
                kind,
                "gw.lan:5000",
                Path::new("/var/lib/regmirror/certs/ca.crt"),
                Some("AA:BB"),
            );
            assert!(!text.contains("insecure"), "{text}");
            assert!(!text.contains("skip_verify"), "{text}");
            assert!(text.contains("gw.lan:5000") && text.contains("AA:BB"), "{text}");
        }
    }

    #[test]
    fn docker_gets_mirrors_certs_d_and_hosts_toml() {
        let text = render(ClientKind::Docker, "gw.lan:5000", Path::new("ca.crt"), None);
        assert!(text.contains("\"registry-mirrors\": [\"https://gw.lan:5000\"]"));
        assert!(text.contains("/etc/docker/certs.d/gw.lan:5000/ca.crt"));
        assert!(text.contains("[host.\"https://gw.lan:5000\"]"));
    }
}

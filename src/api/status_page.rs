//! The status page at `/`: what a person at the gateway wants to know, in plain HTML and CSS.
//! Everything shown comes from `Mirror::overview`; nothing here computes state of its own.

use std::fmt::Write as _;
use std::time::SystemTime;

use html_escape::encode_text as escape;

use super::App;
use crate::cli::ClientKind;
use crate::client_config;
use crate::reference::{Registry, RepoName};
use crate::registries::{HostedOverview, Overview};
use crate::upstream::Health;

const STYLE: &str = "
body{font:15px/1.45 system-ui,sans-serif;margin:0;background:#f4f5f7;color:#1d2430}
header{background:#1d2430;color:#fff;padding:18px 32px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;color:#b8c0cc}main{padding:24px 32px;max-width:1100px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(230px,1fr));gap:14px}
.card{background:#fff;border-radius:8px;padding:14px 16px;box-shadow:0 1px 2px #0002}
.card h2{margin:0;font-size:13px;color:#5b6473;text-transform:uppercase;letter-spacing:.04em}
.card .v{font-size:26px;font-weight:600;margin-top:6px}.card .s{color:#5b6473;font-size:13px}
.bar{height:8px;background:#e3e6eb;border-radius:4px;margin-top:8px;overflow:hidden}
.bar i{display:block;height:100%;background:#2f7de1}
.ok{color:#1a7f37}.bad{color:#c62828}
section{background:#fff;border-radius:8px;padding:14px 16px;margin-top:18px;box-shadow:0 1px 2px #0002}
section h2{margin:0 0 10px;font-size:17px}table{border-collapse:collapse;width:100%}
td,th{text-align:left;padding:5px 8px;border-bottom:1px solid #eceef1}td.n{text-align:right}
code,pre{font:13px/1.4 ui-monospace,monospace}pre{background:#f4f5f7;padding:10px;overflow:auto}
details{margin-top:8px}summary{cursor:pointer;font-weight:600}
";

/// A repository the viewer may see named: the top list and the hosted list show no others.
pub type Visible<'a> = dyn Fn(&Registry, &RepoName) -> bool + Sync + 'a;

pub async fn render(app: &App, host: Option<&str>, visible: &Visible<'_>) -> String {
    let mut hosted = app.registries.hosted_overview().await;
    if let Some(h) = &mut hosted {
        h.repositories.retain(|(repo, _)| visible(&h.namespace, repo));
    }
    let mut o = app.registries.overview();
    o.top_images.retain(|(image, _)| visible(&image.registry, &image.repo));
    let mirror = host.map(str::to_owned).unwrap_or_else(|| app.address.clone());
    let mut page = String::with_capacity(16 * 1024);
    header(&mut page, &mirror);
    cards(&mut page, &o);
    upstreams(&mut page, &o);
    top_images(&mut page, &o);
    if let Some(hosted) = &hosted {
        hosted_repositories(&mut page, hosted, &mirror);
    }
    trust(&mut page, app, &mirror);
    page.push_str("</main></body></html>");
    page
}

/// The address comes from the client's Host header, so it is escaped like every other text
/// a client or upstream controls. All such text lands in element content, hence `encode_text`.
fn header(page: &mut String, mirror: &str) {
    let _ = write!(
        page,
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>regmirror</title>\
         <meta name=viewport content=\"width=device-width\"><style>{STYLE}</style></head><body>\
         <header><h1>regmirror</h1><p>pull-through mirror at {}</p></header><main>",
        escape(mirror)
    );
}

fn cards(page: &mut String, o: &Overview) {
    page.push_str("<div class=cards>");
    let lookups = o.hits + o.misses;
    let ratio = if lookups == 0 {
        "–".to_owned()
    } else {
        format!("{:.1}%", 100.0 * o.hits as f64 / lookups as f64)
    };
    card(
        page,
        "Hit ratio",
        &ratio,
        &format!("{} hits, {} misses, {} stale", o.hits, o.misses, o.stale),
    );
    card(
        page,
        "Served from cache",
        &bytes(o.bytes_from_cache),
        "bytes sent without the upstream",
    );
    card(
        page,
        "Fetched from upstream",
        &bytes(o.bytes_from_upstream),
        "bytes sent while filling the cache",
    );
    let mut detail = format!("{} cached items", o.cache_entries);
    if let Some(cap) = o.cache_cap.filter(|&cap| cap > 0) {
        let percent = o.cache_bytes.min(cap) * 100 / cap;
        let _ = write!(
            detail,
            " of at most {}<div class=bar><i style=\"width:{percent}%\"></i></div>",
            bytes(cap)
        );
    }
    card(page, "Cache use", &bytes(o.cache_bytes), &detail);
    let hub = o.upstreams.iter().find(|u| u.registry.is_docker_hub());
    let headroom = hub
        .and_then(|u| u.rate_limit_remaining)
        .map_or("no limit seen".to_owned(), |n| format!("{n} pulls left"));
    card(
        page,
        "Rate-limit headroom",
        &headroom,
        "Docker Hub's ratelimit-remaining",
    );
    page.push_str("</div>");
}

fn card(page: &mut String, title: &str, value: &str, detail: &str) {
    let _ = write!(
        page,
        "<div class=card><h2>{title}</h2><div class=v>{value}</div><div class=s>{detail}</div></div>"
    );
}

fn upstreams(page: &mut String, o: &Overview) {
    page.push_str(
        "<section><h2>Upstreams</h2><table><tr><th>registry</th><th>upstream</th><th>state</th><th></th></tr>",
    );
    for upstream in &o.upstreams {
        let (state, detail) = health(&upstream.health);
        let _ = write!(
            page,
            "<tr><td><code>{}</code></td><td>{}</td><td>{state}</td><td>{detail}</td></tr>",
            escape(upstream.registry.as_str()),
            escape(&upstream.url)
        );
    }
    page.push_str("</table></section>");
}

fn health(health: &Health) -> (String, String) {
    let ago = |t: SystemTime| {
        t.elapsed()
            .map_or("just now".to_owned(), |d| format!("{}s ago", d.as_secs()))
    };
    match (&health.last_ok, &health.last_error) {
        (_, Some((failed, why))) if health.last_ok.is_none_or(|ok| ok < *failed) => (
            "<span class=bad>failing</span>".to_owned(),
            format!("{}: {}", ago(*failed), escape(why)),
        ),
        (Some(ok), _) => (
            "<span class=ok>healthy</span>".to_owned(),
            format!("last answer {}", ago(*ok)),
        ),
        _ => ("not contacted yet".to_owned(), String::new()),
    }
}

fn top_images(page: &mut String, o: &Overview) {
    page.push_str("<section><h2>Top images</h2>");
    if o.top_images.is_empty() {
        page.push_str("<p>Nothing pulled yet.</p></section>");
        return;
    }
    page.push_str("<table><tr><th>image</th><th class=n>pulls</th></tr>");
    for (image, pulls) in &o.top_images {
        let _ = write!(
            page,
            "<tr><td><code>{}</code></td><td class=n>{pulls}</td></tr>",
            escape(&image.to_string())
        );
    }
    page.push_str("</table></section>");
}

/// The site's own repositories, as clients name them through the mirror, with their tags.
fn hosted_repositories(page: &mut String, hosted: &HostedOverview, mirror: &str) {
    let _ = write!(
        page,
        "<section><h2>Hosted repositories</h2><p>Pushed to <code>{}/{}/…</code></p>",
        escape(mirror),
        escape(hosted.namespace.as_str())
    );
    if hosted.repositories.is_empty() {
        page.push_str("<p>Nothing pushed yet.</p></section>");
        return;
    }
    page.push_str("<table><tr><th>repository</th><th>tags</th></tr>");
    for (repo, tags) in &hosted.repositories {
        let tags = if tags.is_empty() {
            "(untagged)".to_owned()
        } else {
            tags.join(", ")
        };
        let _ = write!(
            page,
            "<tr><td><code>{}/{}</code></td><td>{}</td></tr>",
            escape(hosted.namespace.as_str()),
            escape(repo.as_str()),
            escape(&tags)
        );
    }
    page.push_str("</table></section>");
}

fn trust(page: &mut String, app: &App, mirror: &str) {
    page.push_str("<section><h2>Use this mirror</h2>");
    match &app.ca {
        Some(ca) => {
            let _ = write!(
                page,
                "<p>Clients trust the mirror through its own CA: <a href=\"/ca.crt\">/ca.crt</a>, \
                 SHA-256 fingerprint<br><code>{}</code></p>",
                escape(&ca.fingerprint)
            );
        }
        None => page.push_str("<p>The mirror serves a certificate it was given; clients trust its issuer.</p>"),
    }
    let ca_path = app
        .ca
        .as_ref()
        .map(|ca| ca.path.clone())
        .unwrap_or_else(|| "ca.crt".into());
    let fingerprint = app.ca.as_ref().map(|ca| ca.fingerprint.as_str());
    for (name, kind) in [
        ("Docker", ClientKind::Docker),
        ("containerd", ClientKind::Containerd),
        ("podman, skopeo", ClientKind::Podman),
    ] {
        let text = client_config::render(kind, mirror, &ca_path, fingerprint);
        let _ = write!(
            page,
            "<details><summary>{name}</summary><pre>{}</pre></details>",
            escape(&text)
        );
    }
    page.push_str("</section>");
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hostile_host_writes_no_markup() {
        let mut page = String::new();
        header(&mut page, "<script>alert(1)</script>&");
        assert!(
            page.contains("mirror at &lt;script&gt;alert(1)&lt;/script&gt;&amp;</p>"),
            "{page}"
        );
        assert!(!page.contains("<script>"), "{page}");
    }

    #[test]
    fn human_bytes() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(50 << 30), "50.0 GiB");
    }
}

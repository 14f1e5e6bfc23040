//! A scrape of `/metrics`, parsed: samples by name and labels, and the families the
//! `# TYPE` lines declare. Tests compare two scrapes (`delta`), so counters left over from
//! earlier requests do not matter.

use std::collections::BTreeMap;
use std::fmt;

use super::mirror::Reply;
use super::Mirror;

pub struct Scrape {
    /// `name{k="v",…}` with the labels sorted by key → value.
    samples: BTreeMap<String, f64>,
    /// (family, type) from `# TYPE` lines, in order.
    pub families: Vec<(String, String)>,
    text: String,
}

impl Scrape {
    /// GETs `/metrics` from an in-process mirror.
    pub async fn of(mirror: &Mirror) -> Scrape {
        Scrape::from_reply(&mirror.get("/metrics").await)
    }

    /// Checks the reply is an OpenMetrics text page (what prometheus-client writes) and parses it.
    pub fn from_reply(reply: &Reply) -> Scrape {
        assert_eq!(reply.status.as_u16(), 200, "{reply:?}");
        let content_type = reply.header("content-type").unwrap_or_default();
        assert!(
            content_type.starts_with("application/openmetrics-text; version=1.0.0"),
            "{reply:?}"
        );
        Scrape::parse(&String::from_utf8_lossy(reply.bytes()))
    }

    pub fn parse(text: &str) -> Scrape {
        let mut samples = BTreeMap::new();
        let mut families = Vec::new();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if let Some(declaration) = line.strip_prefix("# TYPE ") {
                let mut words = declaration.split_whitespace();
                let (Some(name), Some(kind)) = (words.next(), words.next()) else {
                    panic!("malformed TYPE line: {line}");
                };
                families.push((name.to_owned(), kind.to_owned()));
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let (series, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("sample without a value: {line}"));
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value in {line}"));
            samples.insert(canonical(series), value);
        }
        Scrape {
            samples,
            families,
            text: text.to_owned(),
        }
    }

    /// A sample's value; 0 when absent (a labelled counter not yet touched is not written).
    pub fn value(&self, series: &str) -> f64 {
        self.samples.get(&canonical(series)).copied().unwrap_or(0.0)
    }

    /// How far a sample moved since `before`.
    pub fn delta(&self, before: &Scrape, series: &str) -> f64 {
        self.value(series) - before.value(series)
    }

    /// Sample names, without labels.
    pub fn sample_names(&self) -> impl Iterator<Item = &str> {
        self.samples.keys().map(|k| k.split('{').next().unwrap_or(k))
    }

    pub fn has_sample(&self, series: &str) -> bool {
        self.samples.contains_key(&canonical(series))
    }
}

impl fmt::Debug for Scrape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// `requests_total{route="blob",status="200"}`, labels in any order, as the parser keys it.
pub fn series(name: &str, labels: &[(&str, &str)]) -> String {
    let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    if labels.is_empty() {
        name.to_owned()
    } else {
        format!("{name}{{{}}}", labels.join(","))
    }
}

/// Sorts the labels so that a series written by hand matches the one the server wrote.
fn canonical(series: &str) -> String {
    let Some((name, rest)) = series.split_once('{') else {
        return series.trim().to_owned();
    };
    let inner = rest.trim_end().strip_suffix('}').unwrap_or(rest);
    let mut labels = Vec::new();
    let (mut current, mut quoted, mut escaped) = (String::new(), false, false);
    for c in inner.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                labels.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    if !current.is_empty() {
        labels.push(current);
    }
    labels.sort();
    format!("{name}{{{}}}", labels.join(","))
}

#[test]
fn parses_labels_in_any_order() {
    let scrape = Scrape::parse(
        "# TYPE regmirror_requests counter\n\
         regmirror_requests_total{status=\"200\",route=\"blob\"} 3\n\
         regmirror_cache_bytes 7\n# EOF\n",
    );
    assert_eq!(
        scrape.value(&series(
            "regmirror_requests_total",
            &[("route", "blob"), ("status", "200")]
        )),
        3.0
    );
    assert_eq!(scrape.value("regmirror_cache_bytes"), 7.0);
    assert_eq!(scrape.value("regmirror_absent_total"), 0.0);
    assert_eq!(
        scrape.families,
        vec![("regmirror_requests".to_owned(), "counter".to_owned())]
    );
}

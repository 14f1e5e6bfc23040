//! A scrape of `/metrics`, parsed: samples by name and labels, and the families the
//! `# TYPE` lines declare. Tests compare two scrapes (`delta`), so counters left over from
//! earlier requests do not matter. Asking for a series the scrape lacks fails the test;
//! `value_or_zero` and `delta_or_zero` allow it only for a labelled series nothing touched.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use super::client::Reply;
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

    /// Scrapes until `series` is at least `at_least`, for up to `within`: waiting on what the
    /// mirror reports instead of sleeping a guessed time. Returns the scrape that showed it.
    pub async fn until(mirror: &Mirror, series: &str, at_least: f64, within: Duration) -> Scrape {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let scrape = Scrape::of(mirror).await;
            if scrape.value(series) >= at_least {
                return scrape;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{series} did not reach {at_least} within {within:?}:\n{scrape:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
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

    /// A sample's value. A series the scrape does not have fails the test, so a misspelled
    /// name cannot pass for a counter that stayed at 0.
    pub fn value(&self, series: &str) -> f64 {
        match self.samples.get(&canonical(series)) {
            Some(value) => *value,
            None => panic!("no series {series} in the scrape:\n{}", self.text),
        }
    }

    /// A sample's value, 0 when absent: only for a labelled series that nothing has touched
    /// yet, which the server does not write. Its family must be declared all the same, so a
    /// misspelled metric name still fails.
    pub fn value_or_zero(&self, series: &str) -> f64 {
        self.value_or_untouched(series, self)
    }

    /// How far a sample moved since `before`. This scrape must have the series; `before` may
    /// lack it if it is labelled (a counter first touched in between).
    pub fn delta(&self, before: &Scrape, series: &str) -> f64 {
        self.value(series) - before.value_or_untouched(series, self)
    }

    /// `delta` for a labelled series that may be absent from both scrapes: one that must stay
    /// untouched, and that nothing touched before either.
    pub fn delta_or_zero(&self, before: &Scrape, series: &str) -> f64 {
        self.value_or_zero(series) - before.value_or_untouched(series, self)
    }

    /// The value, or 0 for a labelled series of a family that `declaring` declares. (A
    /// family with no series yet is not declared at all, so a later scrape may have to.)
    fn value_or_untouched(&self, series: &str, declaring: &Scrape) -> f64 {
        let key = canonical(series);
        if let Some(value) = self.samples.get(&key) {
            return *value;
        }
        let (name, labelled) = match key.split_once('{') {
            Some((name, _)) => (name, true),
            None => (key.as_str(), false),
        };
        assert!(
            labelled && declaring.declares(name),
            "no series {series} in the scrape, and it is not an untouched labelled series of a \
             declared family:\n{}",
            self.text
        );
        0.0
    }

    /// Whether a `# TYPE` line declares the family a sample name belongs to
    /// (`regmirror_requests` for `regmirror_requests_total`, a histogram's `_bucket`, …).
    fn declares(&self, sample: &str) -> bool {
        self.families.iter().any(|(family, _)| {
            sample
                .strip_prefix(family.as_str())
                .is_some_and(|suffix| ["", "_total", "_created", "_bucket", "_sum", "_count"].contains(&suffix))
        })
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

const SAMPLE: &str = "# TYPE regmirror_requests counter\n\
     regmirror_requests_total{status=\"200\",route=\"blob\"} 3\n\
     # TYPE regmirror_cache_bytes gauge\n\
     regmirror_cache_bytes 7\n# EOF\n";

#[test]
fn parses_labels_in_any_order() {
    let scrape = Scrape::parse(SAMPLE);
    assert_eq!(
        scrape.value(&series(
            "regmirror_requests_total",
            &[("route", "blob"), ("status", "200")]
        )),
        3.0
    );
    assert_eq!(scrape.value("regmirror_cache_bytes"), 7.0);
    assert_eq!(
        scrape.families,
        vec![
            ("regmirror_requests".to_owned(), "counter".to_owned()),
            ("regmirror_cache_bytes".to_owned(), "gauge".to_owned())
        ]
    );
    let untouched = series("regmirror_requests_total", &[("route", "blob"), ("status", "404")]);
    assert_eq!(scrape.value_or_zero(&untouched), 0.0);
    assert_eq!(scrape.delta_or_zero(&scrape, &untouched), 0.0);
}

#[test]
#[should_panic(expected = "no series regmirror_cache_byte in the scrape")]
fn a_misspelled_series_fails() {
    Scrape::parse(SAMPLE).value("regmirror_cache_byte");
}

#[test]
#[should_panic(expected = "no series regmirror_cache_hits_total in the scrape")]
fn a_zero_delta_of_a_missing_series_fails() {
    let scrape = Scrape::parse(SAMPLE);
    scrape.delta(&scrape, "regmirror_cache_hits_total");
}

#[test]
#[should_panic(expected = "not an untouched labelled series of a declared family")]
fn absent_is_fine_only_for_a_declared_family() {
    let scrape = Scrape::parse(SAMPLE);
    scrape.value_or_zero(&series("regmirror_request_total", &[("route", "blob")]));
}

#[test]
#[should_panic(expected = "not an untouched labelled series of a declared family")]
fn absent_is_fine_only_for_a_labelled_series() {
    Scrape::parse(SAMPLE).value_or_zero("regmirror_requests_total");
}

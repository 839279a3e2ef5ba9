//! Reading Prometheus expositions in tests: `promtool` (the real parser and linter,
//! from Debian's `prometheus` package) judges validity; [`samples`] reads values.
//!
//! `.ci/run` sets `GANTRY_REQUIRE_PROMTOOL=1`, so CI fails rather than skips when
//! promtool is missing; a local run without it skips only the promtool checks.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::AsyncWriteExt;

/// The promtool binary, or `None` (with a note) when it is absent and not required.
pub fn promtool() -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("promtool"))
        .find(|p| p.is_file());
    if found.is_none() {
        assert!(
            std::env::var_os("GANTRY_REQUIRE_PROMTOOL").is_none(),
            "GANTRY_REQUIRE_PROMTOOL is set but promtool is not on PATH (apt-get install prometheus)"
        );
        eprintln!("promtool not found: skipping the promtool checks (CI requires them)");
    }
    found
}

/// Runs promtool with `args`, feeding `stdin`; panics with its output on failure.
pub async fn run_promtool(promtool: &Path, args: &[&str], stdin: &str) {
    let mut child = tokio::process::Command::new(promtool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool starts");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    let out = child.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "promtool {args:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One sample line: name, labels, value.
#[derive(Debug)]
pub struct Sample {
    /// Metric name (with `_total`, `_bucket`, ... suffixes).
    pub name: String,
    /// Labels in order.
    pub labels: Vec<(String, String)>,
    /// Value.
    pub value: f64,
}

/// The samples of an exposition (the test's reader of values; promtool is the
/// parser that judges validity). Label values may hold any character, escaped.
pub fn samples(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value in {line:?}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let (name, mut rest) = match series.split_once('{') {
            Some((name, rest)) => (name, rest),
            None => (series, ""),
        };
        let mut labels = Vec::new();
        while let Some((key, after)) = rest.split_once("=\"") {
            let mut chars = after.char_indices();
            let mut label = String::new();
            let end = loop {
                match chars.next().unwrap_or_else(|| panic!("unterminated label in {line:?}")) {
                    (_, '\\') => match chars.next() {
                        Some((_, 'n')) => label.push('\n'),
                        Some((_, c)) => label.push(c),
                        None => panic!("bad escape in {line:?}"),
                    },
                    (i, '"') => break i,
                    (_, c) => label.push(c),
                }
            };
            labels.push((key.trim_start_matches(',').to_string(), label));
            rest = &after[end + 1..];
        }
        out.push(Sample { name: name.to_string(), labels, value });
    }
    out
}

/// The sum of the samples `name` whose labels include `labels` (0 when none).
pub fn value(scrape: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .iter()
        .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.labels.iter().any(|(lk, lv)| lk == k && lv == v)))
        .map(|s| s.value)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_read_labels_with_braces_quotes_and_escapes() {
        let text = "# HELP x_total X.\n# TYPE x_total counter\n\
                    x_total{route=\"/v1/jobs/{uuid}\",method=\"GET\",status=\"200\"} 3\n\
                    y{a=\"say \\\"hi\\\"\\n\",b=\"back\\\\slash\"} -1.5\nz +Inf\n";
        let s = samples(text);
        assert_eq!(value(&s, "x_total", &[("route", "/v1/jobs/{uuid}"), ("status", "200")]), 3.0);
        assert_eq!(value(&s, "y", &[("a", "say \"hi\"\n"), ("b", "back\\slash")]), -1.5);
        assert_eq!(value(&s, "z", &[]), f64::INFINITY);
        assert_eq!(value(&s, "x_total", &[("route", "/v1/jobs")]), 0.0);
    }
}

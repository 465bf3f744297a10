//! [`Exposition`]: the Prometheus text format `/metrics` answers with, read
//! into samples (name, labels, value) and summed by name and labels. Only
//! what `top` needs of the format: comments and malformed lines are
//! skipped, timestamps ignored.

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sample {
    /// The metric's name (with `_bucket`, `_sum`, `_count` for histograms).
    pub(crate) name: String,
    /// Its labels, in the order written.
    pub(crate) labels: Vec<(String, String)>,
    /// Its value.
    pub(crate) value: f64,
}

impl Sample {
    /// The value of label `key`, if the sample has it.
    pub(crate) fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Every sample of one scrape.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Exposition {
    samples: Vec<Sample>,
}

impl Exposition {
    /// The samples of `text`.
    pub(crate) fn parse(text: &str) -> Exposition {
        Exposition {
            samples: text.lines().filter_map(parse_line).collect(),
        }
    }

    /// The samples named `name`.
    pub(crate) fn named(&self, name: &str) -> impl Iterator<Item = &Sample> + '_ {
        let name = name.to_owned();
        self.samples.iter().filter(move |s| s.name == name)
    }

    /// The sum of the samples named `name` that `keep` keeps; `None` when
    /// the scrape has none (the metric is not exported).
    pub(crate) fn sum(&self, name: &str, keep: impl Fn(&Sample) -> bool) -> Option<f64> {
        self.named(name)
            .filter(|s| keep(s))
            .fold(None, |acc, s| Some(acc.unwrap_or(0.0) + s.value))
    }

    /// The cumulative buckets of histogram `name` (its `_bucket` samples)
    /// that `keep` keeps, summed by upper bound, in increasing order.
    pub(crate) fn buckets(&self, name: &str, keep: impl Fn(&Sample) -> bool) -> Vec<(f64, f64)> {
        let bucket = format!("{name}_bucket");
        let mut out: Vec<(f64, f64)> = Vec::new();
        for s in self.named(&bucket).filter(|s| keep(s)) {
            let Some(le) = s.label("le").and_then(parse_value) else {
                continue;
            };
            match out.iter_mut().find(|(b, _)| *b == le) {
                Some((_, c)) => *c += s.value,
                None => out.push((le, s.value)),
            }
        }
        out.sort_by(|a, b| a.0.total_cmp(&b.0));
        out
    }
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

/// One `name{labels} value [timestamp]` line; `None` for a comment, a
/// blank or a malformed line.
fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(inner)?;
        labels = parsed;
        rest = after;
    }
    let value = parse_value(rest.split_whitespace().next()?)?;
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// The labels up to the closing `}`, and what follows it.
fn parse_labels(mut s: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start_matches([' ', ',']);
        if let Some(after) = s.strip_prefix('}') {
            return Some((labels, after));
        }
        let eq = s.find('=')?;
        let key = s[..eq].trim().to_owned();
        s = s[eq + 1..].trim_start().strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        labels.push((key, value));
        s = &s[end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP x_total A counter
# TYPE x_total counter
x_total{listener="a",outcome="success"} 3
x_total{listener="b",outcome="success"} 4
x_total{listener="a",outcome="failure"} 1
h_bucket{listener="a",le="0.1"} 2
h_bucket{listener="a",le="+Inf"} 5
h_bucket{listener="b",le="0.1"} 1
h_bucket{listener="b",le="+Inf"} 1
odd{note="say \"hi\", \\ok"} 7 1700000000000
plain 2.5
broken{x="y" 3
"#;

    #[test]
    fn samples_are_summed_by_name_and_labels() {
        let e = Exposition::parse(TEXT);
        assert_eq!(e.sum("x_total", |_| true), Some(8.0));
        assert_eq!(
            e.sum("x_total", |s| s.label("listener") == Some("a")),
            Some(4.0)
        );
        assert_eq!(e.sum("plain", |_| true), Some(2.5));
        assert_eq!(e.sum("absent", |_| true), None);
    }

    #[test]
    fn quoted_label_values_keep_their_escaped_characters_and_broken_lines_are_skipped() {
        let e = Exposition::parse(TEXT);
        let odd = e.named("odd").next().expect("the odd sample");
        assert_eq!(odd.label("note"), Some(r#"say "hi", \ok"#));
        assert_eq!(odd.value, 7.0);
        assert_eq!(e.named("broken").count(), 0);
    }

    #[test]
    fn histogram_buckets_are_summed_by_bound_in_increasing_order() {
        let e = Exposition::parse(TEXT);
        assert_eq!(
            e.buckets("h", |_| true),
            vec![(0.1, 3.0), (f64::INFINITY, 6.0)]
        );
        assert_eq!(
            e.buckets("h", |s| s.label("listener") == Some("b")),
            vec![(0.1, 1.0), (f64::INFINITY, 1.0)]
        );
    }
}

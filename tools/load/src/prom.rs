//! Just enough of the Prometheus text format (and OpenMetrics, which the services serve) to
//! read counters and histograms: `name{label="value",...} value [timestamp] [# exemplar]`.

/// One line of a scrape.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Every sample in a scrape. Comments (`# HELP`, `# TYPE`, `# EOF`) and blank lines are
/// skipped; a line that is not a sample is an error naming it, so a format change is loud.
pub fn parse(text: &str) -> Result<Vec<Sample>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty() && !line.trim_start().starts_with('#'))
        .map(|(n, line)| {
            parse_line(line.trim()).map_err(|e| format!("line {}: {e}: {line}", n + 1))
        })
        .collect()
}

fn parse_line(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .ok_or("no value")?;
    let name = &line[..name_end];
    if name.is_empty() {
        return Err("no metric name".into());
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after_brace) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(after_brace)?;
        labels = parsed;
        rest = after;
    }
    // An OpenMetrics exemplar follows ` # `; only the value before it matters here.
    let rest = rest.split(" # ").next().unwrap_or_default();
    let value = rest.split_whitespace().next().ok_or("no value")?;
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value: parse_value(value)?,
    })
}

type Labels = Vec<(String, String)>;

/// Labels up to the closing brace, and what follows it.
fn parse_labels(mut s: &str) -> Result<(Labels, &str), String> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start_matches([' ', ',']);
        if let Some(after) = s.strip_prefix('}') {
            return Ok((labels, after));
        }
        let eq = s.find('=').ok_or("label without `=`")?;
        let name = s[..eq].trim().to_owned();
        s = s[eq + 1..]
            .trim_start()
            .strip_prefix('"')
            .ok_or("label value not quoted")?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return Err("unterminated label value".into()),
                },
                Some((_, c)) => value.push(c),
                None => return Err("unterminated label value".into()),
            }
        };
        labels.push((name, value));
        s = &s[end + 1..];
    }
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s.parse().map_err(|_| format!("`{s}` is not a number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRAPE: &str = r#"# HELP shop_consumer_events Events consumed from Kafka, by outcome.
# TYPE shop_consumer_events counter
shop_consumer_events_total{service="inventory-service",outcome="processed"} 1200
shop_consumer_events_total{service="inventory-service",outcome="duplicate"} 3
# TYPE shop_order_to_effect_seconds histogram
shop_order_to_effect_seconds_sum 12.5
shop_order_to_effect_seconds_count 1200
shop_order_to_effect_seconds_bucket{le="0.005"} 100
shop_order_to_effect_seconds_bucket{le="+Inf"} 1200
# EOF
"#;

    #[test]
    fn counters_and_histogram_lines_are_read_with_their_labels() {
        let samples = parse(SCRAPE).unwrap();
        assert_eq!(samples.len(), 6);
        assert_eq!(
            samples[0],
            Sample {
                name: "shop_consumer_events_total".into(),
                labels: vec![
                    ("service".into(), "inventory-service".into()),
                    ("outcome".into(), "processed".into())
                ],
                value: 1200.0,
            }
        );
        assert_eq!(samples[2].labels, vec![]);
        assert_eq!(samples[5].label("le"), Some("+Inf"));
    }

    #[test]
    fn infinity_nan_and_exponents_are_numbers() {
        let samples = parse("a +Inf\nb NaN\nc 1.5e3\nd -Inf").unwrap();
        assert_eq!(samples[0].value, f64::INFINITY);
        assert!(samples[1].value.is_nan());
        assert_eq!(samples[2].value, 1500.0);
        assert_eq!(samples[3].value, f64::NEG_INFINITY);
    }

    #[test]
    fn escaped_quotes_commas_and_braces_inside_label_values_are_kept() {
        let samples = parse(r#"m{a="x\"y",b="p,q}r",c="l\\n\n"} 2"#).unwrap();
        assert_eq!(samples[0].label("a"), Some("x\"y"));
        assert_eq!(samples[0].label("b"), Some("p,q}r"));
        assert_eq!(samples[0].label("c"), Some("l\\n\n"));
        assert_eq!(samples[0].value, 2.0);
    }

    #[test]
    fn timestamps_exemplars_and_a_trailing_comma_are_tolerated() {
        let samples =
            parse("m_bucket{le=\"0.1\",} 7 1700000000000\nn_total 3 # {trace_id=\"abc\"} 1.0 1.5")
                .unwrap();
        assert_eq!(samples[0].value, 7.0);
        assert_eq!(samples[0].label("le"), Some("0.1"));
        assert_eq!(samples[1].value, 3.0);
    }

    #[test]
    fn a_line_that_is_not_a_sample_is_an_error_naming_it() {
        let err = parse("ok 1\nbroken{le=\"1\" 2\n").unwrap_err();
        assert!(err.starts_with("line 2:"), "{err}");
        let err = parse("m not-a-number").unwrap_err();
        assert!(err.contains("not-a-number"), "{err}");
    }
}

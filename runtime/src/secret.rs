//! Secrets: passwords and URLs that carry them. Each comes from an environment variable or
//! from a file named by the same variable with `_FILE` appended (as Kubernetes and Docker
//! mount secrets), and none is ever shown: [`Secret`]'s `Debug` prints `[redacted]`, it has
//! no `Display`, and `--help` hides the variables' values.

use std::fmt;
use std::path::Path;

/// A value that must never reach a log line, an error message, a metric or a page.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself, for the one place that hands it to a client library.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

/// The secret `name` given either directly or as `<name>_FILE`, never both.
///
/// The file's content is taken whole but for one trailing line break (what `echo` and most
/// editors add). A file that cannot be read is an error naming the file, never its content.
pub fn resolve(
    name: &str,
    value: Option<Secret>,
    file: Option<&Path>,
) -> Result<Option<Secret>, String> {
    match (value, file) {
        (Some(_), Some(_)) => Err(format!("set {name} or {name}_FILE, not both")),
        (Some(value), None) => Ok(Some(value)),
        (None, Some(path)) => read_file(name, path).map(Some),
        (None, None) => Ok(None),
    }
}

fn read_file(name: &str, path: &Path) -> Result<Secret, String> {
    let content = std::fs::read_to_string(path)
        .map_err(|err| format!("cannot read {name}_FILE={}: {err}", path.display()))?;
    let value = content
        .strip_suffix("\r\n")
        .or_else(|| content.strip_suffix('\n'))
        .unwrap_or(&content);
    if value.is_empty() {
        return Err(format!("{name}_FILE={} is empty", path.display()));
    }
    Ok(Secret(value.to_owned()))
}

/// A URL with its password replaced by `***`, for logs and error messages. A string that
/// does not parse as a URL is not shown at all: it might be anything.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            }
            // sqlx also takes `?password=`.
            if parsed.query_pairs().any(|(key, _)| key == "password") {
                let pairs: Vec<(String, String)> = parsed
                    .query_pairs()
                    .map(|(key, value)| {
                        let value = if key == "password" {
                            "***".into()
                        } else {
                            value
                        };
                        (key.into_owned(), value.into_owned())
                    })
                    .collect();
                parsed.query_pairs_mut().clear().extend_pairs(pairs);
            }
            parsed.to_string()
        }
        Err(_) => "<a URL that does not parse>".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_shows_its_value_in_debug_output() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "[redacted]");
        assert_eq!(format!("{:?}", Some(secret)), "Some([redacted])");
    }

    #[test]
    fn a_secret_file_is_read_without_its_trailing_line_break() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("password");
        std::fs::write(&path, "s3cret\n").unwrap();
        let secret = resolve("X_PASSWORD", None, Some(&path)).unwrap().unwrap();
        assert_eq!(secret.expose(), "s3cret");
    }

    #[test]
    fn a_secret_given_twice_or_from_a_missing_file_is_an_error_naming_the_variable() {
        let both = resolve(
            "X_PASSWORD",
            Some(Secret::new("a")),
            Some(Path::new("/nonexistent")),
        )
        .unwrap_err();
        assert!(both.contains("X_PASSWORD or X_PASSWORD_FILE"), "{both}");
        let missing = resolve("X_PASSWORD", None, Some(Path::new("/nonexistent/pw"))).unwrap_err();
        assert!(
            missing.contains("X_PASSWORD_FILE=/nonexistent/pw"),
            "{missing}"
        );
    }

    #[test]
    fn a_url_is_shown_without_its_password() {
        assert_eq!(
            redact_url("postgres://shop:hunter2@db:5432/orders?sslmode=require"),
            "postgres://shop:***@db:5432/orders?sslmode=require"
        );
        assert_eq!(redact_url("smtp://mail:25"), "smtp://mail:25");
        let shown = redact_url("postgres://shop@db/orders?password=hunter2&sslmode=require");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("sslmode=require"), "{shown}");
        assert!(!redact_url("not a url hunter2").contains("hunter2"));
    }
}

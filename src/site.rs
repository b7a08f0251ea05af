//! Per-site response rules, compiled once at start from `[[headers]]` and `[errors]`: the headers
//! each response gets, and the custom page of each error status.
//!
//! Header rules are globs on the decoded request path (`*` stays within a segment, `**` crosses
//! segments; a pattern without `/` matches the file name anywhere), each with header lines
//! rendered to bytes at start. They apply in order to 2xx and 304 responses, or to every status
//! with `always = true`; a later rule's header replaces an earlier one of the same name.
//! `X-Content-Type-Options: nosniff` goes on every response unless a matching rule sets that
//! header itself. Nothing here does I/O; the exchange asks and appends.

use std::collections::HashMap;
use std::ffi::{CString, OsStr};
use std::os::unix::ffi::OsStrExt;

use globset::{GlobBuilder, GlobMatcher};

use crate::config::{Config, HeaderRule};
use crate::http::Status;

/// The default header every response carries unless a rule replaces it.
const NOSNIFF: &[u8] = b"X-Content-Type-Options: nosniff\r\n";

/// One compiled `[[headers]]` rule.
#[derive(Debug)]
struct Rule {
    matcher: GlobMatcher,
    /// The pattern has no `/`: it is matched against the file name only.
    name_only: bool,
    always: bool,
    /// Lowercase names of the headers it sets, to replace earlier ones.
    names: Vec<String>,
    /// `Name: value\r\n` lines, rendered once.
    lines: Vec<u8>,
}

/// The compiled rules of a site.
#[derive(Debug, Default)]
pub struct SiteRules {
    rules: Vec<Rule>,
    /// Custom error pages: status code → path relative to the root.
    error_pages: HashMap<u16, CString>,
}

impl SiteRules {
    /// Compiles the rules of a validated config. Fails only on a glob the config check let
    /// through, naming it.
    pub fn new(config: &Config) -> Result<SiteRules, String> {
        let rules = config
            .headers
            .iter()
            .map(compile)
            .collect::<Result<Vec<_>, _>>()?;
        let error_pages = config
            .errors
            .iter()
            .filter_map(|(code, path)| {
                let code = code.parse::<u16>().ok()?;
                let rel = CString::new(path.trim_start_matches('/')).ok()?;
                Some((code, rel))
            })
            .collect();
        Ok(SiteRules { rules, error_pages })
    }

    /// The custom page for `status`, if one is configured.
    pub fn error_page(&self, status: Status) -> Option<&CString> {
        self.error_pages.get(&status.code())
    }

    /// Appends the header lines for a response of `status` to the request path `path` to `out`.
    pub fn headers_into(&self, path: &[u8], status: Status, out: &mut Vec<u8>) {
        let code = status.code();
        let success = (200..300).contains(&code) || code == 304;
        if self.rules.is_empty() {
            out.extend_from_slice(NOSNIFF);
            return;
        }
        let name = path.rsplit(|&b| b == b'/').next().unwrap_or(path);
        let matching: Vec<&Rule> = self
            .rules
            .iter()
            .filter(|r| success || r.always)
            .filter(|r| {
                let subject = if r.name_only { name } else { path };
                r.matcher.is_match(OsStr::from_bytes(subject))
            })
            .collect();
        let set_later = |i: usize, header: &str| {
            matching[i + 1..]
                .iter()
                .any(|r| r.names.iter().any(|n| n == header))
        };
        if !matching
            .iter()
            .any(|r| r.names.iter().any(|n| n == "x-content-type-options"))
        {
            out.extend_from_slice(NOSNIFF);
        }
        for (i, rule) in matching.iter().enumerate() {
            // Line by line, skipping headers a later rule sets again.
            for (name, line) in rule
                .names
                .iter()
                .zip(rule.lines.split_inclusive(|&b| b == b'\n'))
            {
                if !set_later(i, name) {
                    out.extend_from_slice(line);
                }
            }
        }
    }
}

fn compile(rule: &HeaderRule) -> Result<Rule, String> {
    let name_only = !rule.pattern.contains('/');
    let matcher = GlobBuilder::new(&rule.pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|e| format!("headers: match {:?}: {e}", rule.pattern))?
        .compile_matcher();
    let mut names = Vec::new();
    let mut lines = Vec::new();
    for (name, value) in &rule.set {
        names.push(name.to_ascii_lowercase());
        lines.extend_from_slice(name.as_bytes());
        lines.extend_from_slice(b": ");
        lines.extend_from_slice(value.trim().as_bytes());
        lines.extend_from_slice(b"\r\n");
    }
    Ok(Rule {
        matcher,
        name_only,
        always: rule.always,
        names,
        lines,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn rule(pattern: &str, set: &[(&str, &str)], always: bool) -> HeaderRule {
        HeaderRule {
            pattern: pattern.into(),
            set: set
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            always,
        }
    }

    fn headers(rules: Vec<HeaderRule>, path: &str, status: Status) -> String {
        let config = Config {
            headers: rules,
            ..Config::default()
        };
        let mut out = Vec::new();
        SiteRules::new(&config)
            .unwrap()
            .headers_into(path.as_bytes(), status, &mut out);
        String::from_utf8(out).unwrap()
    }

    const CC: &str = "Cache-Control";

    #[test]
    fn nosniff_by_default_on_every_status() {
        assert_eq!(
            headers(vec![], "/a", Status::NotFound),
            "X-Content-Type-Options: nosniff\r\n"
        );
    }

    #[test]
    fn star_stays_in_a_segment_and_double_star_crosses() {
        let rules = || {
            vec![
                rule("/assets/*", &[(CC, "one")], false),
                rule("/deep/**", &[("X-Deep", "1")], false),
            ]
        };
        assert!(headers(rules(), "/assets/a.css", Status::Ok).contains("Cache-Control: one\r\n"));
        assert!(!headers(rules(), "/assets/x/a.css", Status::Ok).contains("Cache-Control"));
        assert!(headers(rules(), "/deep/x/y/z.js", Status::Ok).contains("X-Deep: 1\r\n"));
    }

    #[test]
    fn a_file_name_glob_matches_anywhere() {
        let r = || vec![rule("*.css", &[(CC, "css")], false)];
        assert!(headers(r(), "/a/b/c.css", Status::Ok).contains("Cache-Control: css\r\n"));
        assert!(!headers(r(), "/a/b/c.js", Status::Ok).contains("Cache-Control"));
    }

    #[test]
    fn rules_apply_to_success_unless_always() {
        let r = || {
            vec![
                rule("/**", &[(CC, "x")], false),
                rule("/**", &[("Access-Control-Allow-Origin", "*")], true),
            ]
        };
        let ok = headers(r(), "/a.html", Status::NotModified);
        assert!(ok.contains("Cache-Control: x\r\n") && ok.contains("Allow-Origin: *\r\n"));
        let missing = headers(r(), "/a.html", Status::NotFound);
        assert!(!missing.contains("Cache-Control") && missing.contains("Allow-Origin: *\r\n"));
    }

    #[test]
    fn later_rules_replace_earlier_headers_and_nosniff() {
        let r = vec![
            rule("/**", &[(CC, "first")], false),
            rule(
                "*.js",
                &[(CC, "second"), ("X-Content-Type-Options", "off")],
                false,
            ),
        ];
        assert_eq!(
            headers(r, "/a.js", Status::Ok),
            "Cache-Control: second\r\nX-Content-Type-Options: off\r\n"
        );
    }
}

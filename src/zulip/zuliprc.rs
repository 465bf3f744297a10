//! The zuliprc file's syntax: INI as Python's `configparser` reads it,
//! which is what the official Zulip bindings use, so a file that works with
//! them works here, and one they refuse is refused here too.

use std::collections::HashMap;

pub(crate) type Section = HashMap<String, String>;

/// Parses INI text as Python's `configparser.ConfigParser` (strict, default
/// options) does, returning the `[api]` options (falling back to `[DEFAULT]`),
/// or `None` if there is no `[api]` section. Error: (line number, reason).
///
/// Hand-written rather than taken from an INI crate: rust-ini, the usual
/// one, is case-sensitive by default, folds *every* indented line into the
/// previous value in its multi-line mode (configparser only those indented
/// deeper than the option), so `  key=a` / `  email=b` breaks, rejects real
/// continuation lines without it, and accepts duplicate options.
/// As in configparser: the first `=` or `:` separates, `#`/`;` start full-line
/// comments only, option names are lower-cased, section names are not.
/// Not supported: `%` interpolation (Zulip keys are alphanumeric).
pub(crate) fn parse_api_section(text: &str) -> Result<Option<Section>, (usize, String)> {
    let mut sections: HashMap<String, Section> = HashMap::new();
    let mut cur_sect: Option<String> = None;
    let mut cur_opt: Option<String> = None;
    let mut indent_level = 0usize;
    for (idx, raw) in text.trim_start_matches('\u{feff}').lines().enumerate() {
        let line = raw.trim();
        let comment = line.starts_with('#') || line.starts_with(';');
        let value = cur_sect
            .as_ref()
            .zip(cur_opt.as_ref())
            .and_then(|(s, o)| sections.get_mut(s)?.get_mut(o));
        if line.is_empty() || comment {
            // A blank line inside a value is kept; comment lines vanish.
            if let Some(v) = value.filter(|_| !comment) {
                v.push('\n');
            }
            continue;
        }
        let indent = raw.len() - raw.trim_start().len();
        if let Some(v) = value.filter(|_| indent > indent_level) {
            v.push('\n');
            v.push_str(line);
            continue;
        }
        indent_level = indent;
        let err = |reason: &str| Err((idx + 1, reason.to_owned()));
        if let Some(end) = line.rfind(']').filter(|&e| line.starts_with('[') && e > 1) {
            let name = &line[1..end];
            if name != "DEFAULT" && sections.contains_key(name) {
                return err(&format!("section [{name}] appears twice"));
            }
            sections.entry(name.to_owned()).or_default();
            (cur_sect, cur_opt) = (Some(name.to_owned()), None);
            continue;
        }
        let Some(sect) = cur_sect.as_ref().and_then(|s| sections.get_mut(s)) else {
            return err("option appears before any [section] header");
        };
        let Some(pos) = line.find(['=', ':']) else {
            return err("expected `name = value` or `name: value`");
        };
        let name = line[..pos].trim_end().to_lowercase();
        if name.is_empty() {
            return err("option name is empty");
        }
        if sect.contains_key(&name) {
            return err(&format!("option `{name}` appears twice in its section"));
        }
        sect.insert(name.clone(), line[pos + 1..].trim().to_owned());
        cur_opt = Some(name);
    }
    let defaults = sections.remove("DEFAULT").unwrap_or_default();
    Ok(sections.remove("api").map(|mut api| {
        for (k, v) in defaults {
            api.entry(k).or_insert(v);
        }
        api
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parser_handles_continuations_duplicates_and_defaults_like_configparser() {
        let key = |t: &str| parse_api_section(t).map(|s| s.map(|m| m["key"].clone()));
        let some = |v: &str| Ok(Some(v.to_owned()));
        assert_eq!(key("[api]\n  key=a\n  email=b\n"), some("a"));
        assert_eq!(key("[api]\nkey=a\n\n  b\nemail=c\n"), some("a\n\nb"));
        assert_eq!(key("[api]\nkey=a\n# c\n  b\n"), some("a\nb"));
        assert_eq!(key("[DEFAULT]\nkey=d\n[api]\n"), some("d"));
        assert_eq!(key("\u{feff}[api]\r\nkey=x:y ;z\r\n"), some("x:y ;z"));
        assert_eq!(key("[API]\nkey=a\n"), Ok(None));
        let bad = [
            "[api]\nk=a\nK=b",
            "[a]\n[a]",
            "k=a\n[a]",
            "[a]\nk",
            "[a]\n=x",
        ];
        for text in bad {
            assert!(parse_api_section(text).is_err(), "{text:?}");
        }
    }
}

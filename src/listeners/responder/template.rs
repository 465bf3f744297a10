//! A reply template: text with `{name}` fields (`{{` and `}}` for braces),
//! filled by the `strfmt` crate (Rust's own `format!` field syntax, for
//! strings built at run time, so `{topic:>20}` pads as Rust would). A
//! template is checked when the responder is built: every field must be one
//! its rule can fill, so a typo fails `check-config`, never a reply.

use strfmt::{strfmt_map, FmtError, Formatter};

/// The fields every template may use, from the message.
pub(super) const MESSAGE_FIELDS: &[&str] = &[
    "sender_full_name",
    "sender_email",
    "sender_id",
    "sender_mention",
    "topic",
    "channel",
    "channel_id",
    "content",
    "message_id",
    "timestamp",
];

/// A template known to render with the fields of its rule.
#[derive(Debug, Clone)]
pub(super) struct Template {
    text: String,
}

impl Template {
    /// Checks `text` against the fields `known` accepts.
    ///
    /// # Errors
    ///
    /// Why it cannot render: a syntax error or an unknown field, named.
    pub(super) fn compile(text: &str, known: &dyn Fn(&str) -> bool) -> Result<Template, String> {
        let mut unknown: Option<String> = None;
        let checked = strfmt_map(text, |mut f: Formatter| {
            if known(f.key) {
                f.str("")
            } else {
                unknown = Some(f.key.to_owned());
                Err(FmtError::KeyError(f.key.to_owned()))
            }
        });
        match (checked, unknown) {
            (Ok(_), _) => Ok(Template {
                text: text.to_owned(),
            }),
            (Err(_), Some(field)) => Err(format!(
                "template `{text}` uses `{{{field}}}`, which its rule does not fill"
            )),
            (Err(e), None) => Err(format!("template `{text}` is not valid: {}", describe(&e))),
        }
    }

    /// The text with every field filled by `value` (a field it does not
    /// know is empty; compiling made sure there is none).
    pub(super) fn render<'v>(&self, value: impl Fn(&str) -> Option<&'v str>) -> String {
        strfmt_map(&self.text, |mut f: Formatter| {
            let v = value(f.key).unwrap_or_default();
            f.str(v)
        })
        // Compiled with every field the rule fills, so only a value a
        // format option refuses could fail; then the raw text goes out.
        .unwrap_or_else(|_| self.text.clone())
    }
}

fn describe(e: &FmtError) -> String {
    match e {
        FmtError::Invalid(s) | FmtError::KeyError(s) | FmtError::TypeError(s) => {
            format!("{s} (write {{{{ and }}}} for literal braces)")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(k: &str) -> bool {
        MESSAGE_FIELDS.contains(&k) || k == "1"
    }

    #[test]
    fn a_template_fills_its_fields_and_keeps_escaped_braces() {
        let t = Template::compile("Hi {sender_full_name}, {{literal}} #{1}", &known).unwrap();
        let out = t.render(|k| match k {
            "sender_full_name" => Some("Ada"),
            "1" => Some("42"),
            _ => None,
        });
        assert_eq!(out, "Hi Ada, {literal} #42");
    }

    #[test]
    fn an_unknown_field_or_bad_syntax_is_refused_with_its_name() {
        let e = Template::compile("Hi {sender_name}", &known).unwrap_err();
        assert!(e.contains("{sender_name}"), "{e}");
        for bad in ["Hi {sender_email", "Hi {{topic}", "Hi }", "{}"] {
            let e = Template::compile(bad, &known).unwrap_err();
            assert!(e.contains("is not valid"), "{bad}: {e}");
        }
    }
}

//! [`UserRef`]: a user named in the configuration, by id or email, and the
//! reader of a list of them (`[security] blocked_users`, a listener's
//! `senders`).

use toml::Value;

use super::reader::Reader;

/// A user named in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UserRef {
    /// A Zulip user id.
    Id(i64),
    /// An email address, lower-cased (Zulip compares them case-insensitively).
    Email(String),
}

/// A list of user ids (integers, or digits in a string) and emails; `None`
/// when any entry is wrong (each is reported).
pub(super) fn read_users(
    r: &mut Reader,
    key: &str,
    v: &Value,
    may_be_empty: bool,
) -> Option<Vec<UserRef>> {
    let Some(items) = v.as_array() else {
        return r.wrong(key, v, "a list of user ids and emails");
    };
    if items.is_empty() && !may_be_empty {
        r.problem(format!(
            "`{key}` must list at least one user; remove the key to accept all users"
        ));
        return None;
    }
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for item in items {
        match item {
            Value::Integer(i) if *i > 0 => out.push(UserRef::Id(*i)),
            Value::String(s) if s.contains('@') => {
                out.push(UserRef::Email(s.trim().to_lowercase()));
            }
            Value::String(s) if s.parse::<i64>().is_ok_and(|i| i > 0) => {
                out.push(UserRef::Id(s.parse().unwrap_or_default()));
            }
            _ => {
                r.problem(format!(
                    "`{key}` entries must be user ids (positive integers) or email addresses, got `{item}`"
                ));
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

//! `GET /messages` and narrows: parsing a narrow, matching a message
//! against it (also for queues registered with one), the anchor and page
//! logic, and the fake Markdown rendering.

use serde_json::{json, Value};

use super::api::{bad_request, count, missing, ApiError, Params};

/// Zulip's `MAX_MESSAGES_PER_FETCH`: the cap on `num_before + num_after`.
pub(super) const MAX_MESSAGES_PER_FETCH: i64 = 5000;
/// Zulip's `LARGER_THAN_MAX_MESSAGE_ID`: the numeric value of `anchor=newest`.
pub(super) const NEWEST: i64 = 10_000_000_000_000_000;

/// With `markdown`, fake-render the content as Zulip's HTML would look.
pub(super) fn render(msg: &Value, markdown: bool) -> Value {
    let mut m = msg.clone();
    if markdown {
        let raw = m["content"].as_str().unwrap_or_default();
        let escaped = raw.replace('&', "&amp;").replace('<', "&lt;");
        m["content"] = json!(format!("<p>{}</p>", escaped.replace('>', "&gt;")));
        m["content_type"] = json!("text/html");
    }
    m
}

/// One narrow term: operator, operand, negated.
pub(super) type Term = (String, Value, bool);

/// Accepts `[[operator, operand], ...]` and `[{"operator", "operand", "negated"}]`.
pub(super) fn parse_narrow(v: Option<Value>) -> Result<Vec<Term>, ApiError> {
    let items = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(bad_request("Invalid narrow")),
    };
    let term = |t: Value| -> Option<Term> {
        let (op, operand, negated) = match t {
            Value::Array(pair) if pair.len() == 2 => (pair[0].clone(), pair[1].clone(), false),
            Value::Object(o) => {
                let (op, operand) = (o.get("operator")?, o.get("operand")?);
                let negated = o.get("negated").and_then(Value::as_bool);
                (op.clone(), operand.clone(), negated.unwrap_or(false))
            }
            _ => return None,
        };
        Some((op.as_str()?.to_owned(), operand, negated))
    };
    let terms = items.into_iter().map(term).collect::<Option<Vec<_>>>();
    terms.ok_or_else(|| bad_request("Invalid narrow"))
}

/// Supports channel/stream, topic/subject, sender and is:dm/private; other
/// operators (e.g. `channels:public`, `search`) match everything.
pub(super) fn narrow_matches(terms: &[Term], m: &Value) -> bool {
    terms.iter().all(|(op, operand, negated)| {
        let field = |k: &str| m.get(k).and_then(Value::as_str).map(str::to_lowercase);
        let same = |k: &str| {
            operand
                .as_str()
                .is_some_and(|o| Some(o.to_lowercase()) == field(k))
        };
        let same_id = |k: &str| operand.as_i64().is_some() && m.get(k) == Some(operand);
        let channel = m.get("type") == Some(&json!("stream"));
        let hit = match (op.as_str(), operand.as_str()) {
            ("channel" | "stream", _) => {
                channel && (same("display_recipient") || same_id("stream_id"))
            }
            ("topic" | "subject", _) => channel && same("subject"),
            ("sender", _) => same("sender_email") || same_id("sender_id"),
            ("is", Some("dm" | "private")) => m.get("type") == Some(&json!("private")),
            _ => return true,
        };
        hit != *negated
    })
}

/// Zulip's `GET /messages` over the message `history` (in id order): the
/// page around the anchor, paged like its `limit_query_to_range`.
pub(super) fn get_messages(history: &[Value], p: &Params) -> Result<Value, ApiError> {
    let anchor = p.get("anchor").ok_or_else(|| missing("anchor"))?;
    let anchor = match anchor.trim_matches('"') {
        // No unread tracking: first_unread acts as if everything was read.
        "newest" | "first_unread" => NEWEST,
        "oldest" => 0,
        s => s.parse().map_err(|_| bad_request("Invalid anchor"))?,
    };
    let anchor = anchor.clamp(0, NEWEST);
    let (num_before, num_after) = (count(p, "num_before")?, count(p, "num_after")?);
    if num_before + num_after > MAX_MESSAGES_PER_FETCH {
        return Err(bad_request("Too many messages requested (maximum 5000)."));
    }
    let include_anchor = p.bool("include_anchor")?.unwrap_or(true);
    if !include_anchor && num_before > 0 && num_after > 0 {
        let msg = "The anchor can only be excluded at an end of the range";
        return Err(bad_request(msg));
    }
    let narrow = parse_narrow(p.json("narrow")?)?;
    let markdown = p.bool("apply_markdown")?.unwrap_or(true);
    let id = |m: &&Value| m["id"].as_i64().unwrap_or(0);
    let deleted = |m: &&Value| m["deleted"].as_bool().unwrap_or(false);
    let visible = history
        .iter()
        .filter(|m| !deleted(m) && narrow_matches(&narrow, m));
    let before: Vec<&Value> = visible.clone().filter(|m| id(m) < anchor).collect();
    let before = &before[before.len().saturating_sub(num_before as usize)..];
    let at_anchor: Vec<&Value> = visible.clone().filter(|m| id(m) == anchor).collect();
    let after = visible.filter(|m| id(m) > anchor).take(num_after as usize);
    let after: Vec<&Value> = after.collect();
    let at_anchor = if include_anchor { &at_anchor[..] } else { &[] };
    let page = before.iter().chain(at_anchor).chain(&after);
    let messages: Vec<Value> = page.map(|m| render(m, markdown)).collect();
    Ok(json!({
        "result": "success", "msg": "", "messages": messages, "anchor": anchor,
        "found_anchor": !at_anchor.is_empty(), "history_limited": false,
        "found_oldest": anchor == 0 || (before.len() as i64) < num_before,
        "found_newest": anchor == NEWEST || (after.len() as i64) < num_after,
    }))
}

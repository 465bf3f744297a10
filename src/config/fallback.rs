//! `[listeners.NAME] fallback`: the instance that gets an event when
//! NAME's run for it fails for the last time. Checked once every table is
//! read: the name must be another configured instance (or a registered
//! listener), and following fallbacks must never come back to where it
//! started (a chain is fine, a cycle is a configuration error).

use std::collections::{BTreeMap, BTreeSet};

use super::reader::Reader;

/// Every configured instance by name, with the fallback it names.
pub(super) type Links<'a> = BTreeMap<&'a str, Option<&'a str>>;

/// Reports every unknown fallback, self-fallback and cycle among `links`.
pub(super) fn check(r: &mut Reader, links: &Links<'_>) {
    for (&name, &target) in links {
        let Some(target) = target else {
            continue;
        };
        if target == name {
            r.problem(format!(
                "`listeners.{name}.fallback` names `{name}` itself: a fallback must be another instance"
            ));
        } else if !links.contains_key(target) && !r.listeners.contains(&target) {
            let mut available: Vec<&str> = r.listeners.to_vec();
            available.extend(links.keys().copied().filter(|n| *n != name));
            r.problem(format!(
                "`listeners.{name}.fallback` names `{target}`, which is no listener instance (available: {})",
                available.join(", ")
            ));
        }
    }
    for cycle in cycles(links) {
        r.problem(format!(
            "the fallbacks of [listeners] go round in a cycle: {} (a chain must end)",
            cycle.join(" → ")
        ));
    }
}

/// Every cycle of two or more instances, each once, written from its
/// smallest name and back to it (`a → b → a`).
fn cycles(links: &Links<'_>) -> BTreeSet<Vec<String>> {
    let next = |n: &str| links.get(n).copied().flatten().filter(|t| *t != n);
    let mut found = BTreeSet::new();
    for &start in links.keys() {
        let mut path: Vec<&str> = vec![start];
        while let Some(t) = next(path[path.len() - 1]) {
            if let Some(at) = path.iter().position(|p| *p == t) {
                let ring = &path[at..];
                if ring.len() > 1 {
                    let min = (0..ring.len()).min_by_key(|&i| ring[i]).unwrap_or(0);
                    let cycle = (0..=ring.len()).map(|k| ring[(min + k) % ring.len()].to_owned());
                    found.insert(cycle.collect());
                }
                break;
            }
            path.push(t);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    const REGISTERED: &[&str] = &["message_logger", "user_activity_tracker"];

    fn config(tables: &str) -> Result<Config, String> {
        Config::parse(tables, REGISTERED).map_err(|e| e.to_string())
    }

    const HOOK: &str = "kind = \"webhook\"\nurl = \"http://127.0.0.1:9/x\"\n";

    #[test]
    fn a_chain_is_read_and_its_fallbacks_are_built_with_it() {
        let cfg = config(&format!(
            "[listeners]\nenabled = [\"a\"]\n[listeners.a]\n{HOOK}fallback = \"b\"\n\
             [listeners.b]\n{HOOK}fallback = \"message_logger\"\n"
        ))
        .unwrap();
        assert_eq!(cfg.listeners.instances["a"].fallback.as_deref(), Some("b"));
        assert_eq!(
            cfg.listeners.with_fallbacks(&["a".to_owned()]),
            ["a", "b", "message_logger"]
        );
    }

    #[test]
    fn unknown_names_self_fallbacks_and_cycles_are_all_reported_at_once() {
        let err = config(&format!(
            "[listeners]\nenabled = [\"a\"]\n\
             [listeners.a]\n{HOOK}fallback = \"b\"\n\
             [listeners.b]\n{HOOK}fallback = \"a\"\n\
             [listeners.c]\n{HOOK}fallback = \"d\"\n\
             [listeners.d]\n{HOOK}fallback = \"e\"\n\
             [listeners.e]\n{HOOK}fallback = \"c\"\n\
             [listeners.f]\n{HOOK}fallback = \"f\"\n\
             [listeners.g]\n{HOOK}fallback = \"nowhere\"\n\
             [listeners.h]\n{HOOK}timeout = \"soon\"\n"
        ))
        .unwrap_err();
        for expected in [
            "cycle: a → b → a",
            "cycle: c → d → e → c",
            "`listeners.f.fallback` names `f` itself",
            "`listeners.g.fallback` names `nowhere`, which is no listener instance",
            "`listeners.h.timeout`",
        ] {
            assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
        }
        assert_eq!(err.matches("cycle:").count(), 2, "{err}");
    }
}

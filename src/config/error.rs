//! [`ConfigError`]: every problem found in one configuration file, shown
//! as one message with a line per problem.

use std::fmt;
use std::path::PathBuf;

/// Every problem found in one configuration file.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    /// The file, when the problems come from one.
    pub path: Option<PathBuf>,
    /// One sentence per problem, each naming the key it is about.
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        match &self.path {
            Some(p) => write!(f, "{} has {n} problem(s):", p.display())?,
            None => write!(f, "the configuration has {n} problem(s):")?,
        }
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

//! [`validate`]: everything `run` would refuse in a configuration text,
//! every problem at once — the file itself (every key and value, the
//! database URL's form, the organizations), its log file, the admin token
//! file, each organization's Zulip credentials, the database password,
//! the encryption keys, and every enabled instance built as `run` builds
//! it (which checks a responder's templates). `check-config` and a reload
//! use this one check, so a reload refuses exactly what `check-config`
//! reports. Zulip itself is not contacted.

use crate::config::{read_admin_tokens, Config, FilePermissions};
use crate::listeners::{Instance, Registry};
use crate::telemetry::LogFile;
use crate::zulip::Credentials;

/// What [`validate`] found.
pub(crate) struct Validated {
    /// The configuration read, each bad value left at its default;
    /// `None` when the text is not TOML.
    pub(crate) config: Option<Config>,
    /// Every problem, in the order found; empty when the text is valid.
    pub(crate) problems: Vec<String>,
    /// Each organization's name and credentials, for those that load.
    pub(crate) credentials: Vec<(String, Credentials)>,
    /// The enabled instances that could be built.
    pub(crate) instances: Vec<Instance>,
}

/// Checks configuration `text` as `run` would, with `permissions` for the
/// secret files.
pub(crate) fn validate(text: &str, permissions: FilePermissions, registry: &Registry) -> Validated {
    let (mut config, mut problems) = Config::parse_with_problems(text, &registry.names());
    if let Some(c) = config.as_mut() {
        c.file_permissions = permissions;
    }
    let Some(c) = config.as_ref() else {
        return Validated {
            config,
            problems,
            credentials: Vec::new(),
            instances: Vec::new(),
        };
    };
    let credentials = check_organizations(c, &mut problems);
    check_files(c, permissions, &mut problems);
    let (instances, why) = build_each(c, registry);
    problems.extend(why);
    Validated {
        config,
        problems,
        credentials,
        instances,
    }
}

/// Each organization's credentials, read as `run` reads them.
fn check_organizations(config: &Config, problems: &mut Vec<String>) -> Vec<(String, Credentials)> {
    let views = config.organizations();
    let several = views.len() > 1;
    let mut loaded = Vec::new();
    for view in &views {
        let name = &view.scaling.instance_id;
        let whose = match several {
            true => format!("credentials of organization `{name}`"),
            false => "credentials".to_owned(),
        };
        match crate::app::check_credentials(view) {
            Ok(creds) => loaded.push((name.clone(), creds)),
            Err(errors) => problems.extend(errors.iter().map(|e| format!("{whose}: {e}"))),
        }
    }
    loaded
}

/// The files and secrets `run` reads before it starts.
fn check_files(config: &Config, permissions: FilePermissions, problems: &mut Vec<String>) {
    // `run` opens its log file first of all (creating it, as here).
    if let Some(file) = config.logging.file.as_deref() {
        if let Err(e) = LogFile::open(file) {
            problems.push(format!(
                "`logging.file`: cannot open the log file {}: {e}",
                file.display()
            ));
        }
    }
    // `run` reads the admin tokens before it serves HTTP.
    if let Some(path) = config.http.admin_token_file.as_deref() {
        if let Err(e) = read_admin_tokens(path, permissions) {
            problems.push(format!("`http.admin_token_file`: {e}"));
        }
    }
    if let Err(e) = config.database.connect_url(permissions) {
        problems.push(format!("`database.password_file`/`password_env`: {e}"));
    }
    // `run` reads the encryption keys when it opens the store.
    if let Err(e) = crate::app::cipher(config) {
        problems.push(format!("`data_protection.key_file`/`key_env`: {e}"));
    }
}

/// Every enabled instance (and every fallback they reach) built as `run`
/// builds it, one by one, with why
/// each that cannot be is not (a secret file that cannot be read, an unset
/// variable, a template that does not compile): every problem, not the
/// first.
pub(crate) fn build_each(config: &Config, registry: &Registry) -> (Vec<Instance>, Vec<String>) {
    let mut built = Vec::new();
    let mut problems = Vec::new();
    for name in &config.listeners.with_fallbacks(&config.listeners.enabled) {
        match Instance::build_all(registry, config, std::slice::from_ref(name)) {
            Ok(mut one) => built.append(&mut one),
            Err(e) => problems.push(e.to_string()),
        }
    }
    (built, problems)
}

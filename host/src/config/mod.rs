//! `brain.toml`: one file configures everything.
//!
//! [`Config::load`] parses the file (unknown keys are errors, reported with line and column),
//! then resolves it: relative paths become relative to the file's directory, `~` is expanded,
//! plugin references become [`PluginRef`]s and grants absolute [`Grants`]. Everything after
//! loading works on resolved values only.

mod sections;

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
pub use sections::*;

use crate::plugin::{Grants, PluginRef};

/// The default config file name, looked up in the current directory.
pub const DEFAULT_FILE: &str = "brain.toml";

/// The commented default config `brain init` writes.
pub const TEMPLATE: &str = include_str!("template.toml");

/// A place in the config file, printed as `path:line:column`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("no config file at {path}: run `brain init` to write one, or pass --config PATH")]
    Missing { path: PathBuf },
    #[error("cannot read config {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// Bad TOML, an unknown key, or a value of the wrong type.
    #[error("{at}: {message}\n{excerpt}")]
    Parse { at: Location, message: String, excerpt: String },
    /// Well-formed TOML that makes no sense (a duplicate name, a bad threshold, …).
    #[error("{at}: {message}\n{excerpt}  hint: {hint}")]
    Invalid { at: Location, message: String, excerpt: String, hint: String },
}

impl ConfigError {
    /// Where in the file the error is, when known.
    pub fn location(&self) -> Option<&Location> {
        match self {
            ConfigError::Parse { at, .. } | ConfigError::Invalid { at, .. } => Some(at),
            _ => None,
        }
    }
}

/// A loaded, resolved config.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file it was read from (absolute), or the directory's would-be `brain.toml` for
    /// [`Config::from_str`].
    pub path: PathBuf,
    /// The directory relative paths are resolved against.
    pub dir: PathBuf,
    /// The SQLite store (absolute).
    pub store_path: PathBuf,
    pub sources: Vec<PluginEntry>,
    pub filters: Vec<PluginEntry>,
    pub review: Review,
    pub scrub: ScrubSection,
    pub dedup: DedupSection,
    /// Paths resolved.
    pub export: ExportSection,
    pub train: TrainSection,
    pub dpo: DpoSection,
    pub eval: EvalSection,
    pub pipeline: PipelineSection,
    pub plugins: PluginsSection,
    pub serve: ServeSection,
    /// The compile cache directory (resolved from `[plugins] cache_dir` or the default).
    pub cache_dir: PathBuf,
}

/// A configured `[[source]]` or `[[filter]]`, resolved.
#[derive(Clone, Debug)]
pub struct PluginEntry {
    pub name: String,
    pub plugin: PluginRef,
    /// The `plugin` value as written (for messages).
    pub plugin_text: String,
    pub grants: Grants,
    /// The plugin's config table as JSON text.
    pub config_json: String,
    pub enabled: bool,
    /// Where `plugin = …` is written.
    pub at: Location,
    /// The source's own collect budget as written (`[plugins]` gives the rest).
    pub budget: BudgetSection,
}

/// `[review]`, validated.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Review {
    pub approve_above: f64,
    pub reject_below: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    store: StoreSection,
    #[serde(default, rename = "source")]
    sources: Vec<PluginSection>,
    #[serde(default, rename = "filter")]
    filters: Vec<PluginSection>,
    #[serde(default)]
    review: ReviewSection,
    #[serde(default)]
    scrub: ScrubSection,
    #[serde(default)]
    dedup: DedupSection,
    #[serde(default)]
    export: ExportSection,
    #[serde(default)]
    train: TrainSection,
    #[serde(default)]
    dpo: DpoSection,
    #[serde(default)]
    eval: EvalSection,
    #[serde(default)]
    pipeline: PipelineSection,
    #[serde(default)]
    plugins: PluginsSection,
    #[serde(default)]
    serve: ServeSection,
}

impl Config {
    /// Reads and resolves the config file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                ConfigError::Missing { path: path.to_path_buf() }
            } else {
                ConfigError::Io { path: path.to_path_buf(), source }
            }
        })?;
        let abs = absolute(path);
        Config::from_str(&text, &abs)
    }

    /// Parses `text` as if read from the file `path` (used for messages and relative paths).
    pub fn from_str(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let doc = Doc { text, file: path };
        let raw: RawConfig = toml::from_str(text).map_err(|e| doc.parse_error(&e))?;
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
        let resolve = |p: &Path| resolve_path(p, &dir);

        let mut names = HashSet::new();
        let mut sources = Vec::new();
        for s in raw.sources {
            sources.push(doc.entry(s, "source", &mut names, &dir)?);
        }
        let mut names = HashSet::new();
        let mut filters = Vec::new();
        for f in raw.filters {
            filters.push(doc.entry(f, "filter", &mut names, &dir)?);
        }

        let r = &raw.review;
        for v in [&r.approve_above, &r.reject_below] {
            if !(0.0..=1.0).contains(v.get_ref()) {
                return Err(doc.invalid(v.span(), format!("{} is outside [0, 1]", v.get_ref()), "review thresholds are scores between 0 and 1"));
            }
        }
        if r.reject_below.get_ref() > r.approve_above.get_ref() {
            return Err(doc.invalid(
                r.reject_below.span(),
                format!("reject_below ({}) is above approve_above ({})", r.reject_below.get_ref(), r.approve_above.get_ref()),
                "examples scoring between the two wait for review; keep reject_below <= approve_above",
            ));
        }
        let review = Review { approve_above: *r.approve_above.get_ref(), reject_below: *r.reject_below.get_ref() };

        let mut export = raw.export;
        export.out = resolve(&export.out);
        let mut train = raw.train;
        for p in [&mut train.base_model, &mut train.data] {
            *p = p.as_deref().map(&resolve);
        }
        train.adapter_path = resolve(&train.adapter_path);
        train.runs_dir = resolve(&train.runs_dir);
        let mut dpo = raw.dpo;
        for p in [&mut dpo.base_model, &mut dpo.data, &mut dpo.reference_adapter] {
            *p = p.as_deref().map(&resolve);
        }
        dpo.adapter_path = resolve(&dpo.adapter_path);
        let mut eval = raw.eval;
        eval.data = eval.data.as_deref().map(&resolve);
        let mut scrub = raw.scrub;
        scrub.extra_rules = scrub.extra_rules.as_deref().map(&resolve);
        let cache_dir = match &raw.plugins.cache_dir {
            Some(p) => resolve(p),
            None => default_cache_dir().unwrap_or_else(|| dir.join(".brain-cache")),
        };

        Ok(Config {
            path: path.to_path_buf(),
            store_path: resolve(&raw.store.path),
            sources,
            filters,
            review,
            scrub,
            dedup: raw.dedup,
            export,
            train,
            dpo,
            eval,
            pipeline: raw.pipeline,
            plugins: raw.plugins,
            serve: raw.serve,
            cache_dir,
            dir,
        })
    }

    /// The plugin runtime limits from `[plugins]`.
    pub fn limits(&self) -> crate::plugin::Limits {
        crate::plugin::Limits {
            memory_bytes: (self.plugins.memory_mb as usize).saturating_mul(1 << 20),
            call_timeout: std::time::Duration::from_secs(self.plugins.timeout_s),
        }
    }

    pub fn source(&self, name: &str) -> Option<&PluginEntry> {
        self.sources.iter().find(|s| s.name == name)
    }
}

/// The text of the file being loaded, for turning byte spans into messages.
struct Doc<'a> {
    text: &'a str,
    file: &'a Path,
}

impl Doc<'_> {
    fn location(&self, offset: usize) -> Location {
        let offset = offset.min(self.text.len());
        let before = &self.text.as_bytes()[..offset];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = before.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let column = String::from_utf8_lossy(&before[line_start..]).chars().count() + 1;
        Location { file: self.file.to_path_buf(), line, column }
    }

    /// The offending line with a caret under the column.
    fn excerpt(&self, at: &Location) -> String {
        let Some(line) = self.text.lines().nth(at.line - 1) else { return String::new() };
        format!("  {:>4} | {line}\n       | {}^\n", at.line, " ".repeat(at.column - 1))
    }

    fn parse_error(&self, e: &toml::de::Error) -> ConfigError {
        let at = self.location(e.span().map_or(0, |s| s.start));
        let excerpt = self.excerpt(&at);
        let mut message = e.message().trim_end().to_string();
        if message.starts_with("unknown field") {
            message.push_str(" (remove it or fix its spelling; `brain init` writes a commented config listing every key)");
        }
        ConfigError::Parse { at, message, excerpt }
    }

    fn invalid(&self, span: std::ops::Range<usize>, message: String, hint: &str) -> ConfigError {
        let at = self.location(span.start);
        ConfigError::Invalid { excerpt: self.excerpt(&at), at, message, hint: hint.to_string() }
    }

    fn entry(&self, s: PluginSection, what: &str, names: &mut HashSet<String>, dir: &Path) -> Result<PluginEntry, ConfigError> {
        let name = s.name.get_ref();
        if name.trim().is_empty() {
            return Err(self.invalid(s.name.span(), format!("empty {what} name"), "give every entry a short unique name, e.g. \"my-commits\""));
        }
        if !names.insert(name.clone()) {
            return Err(self.invalid(s.name.span(), format!("{what} name {name:?} is used twice"), &format!("every [[{what}]] needs its own name")));
        }
        let text = s.plugin.get_ref();
        let plugin = if looks_like_path(text) {
            PluginRef::Path(resolve_path(Path::new(text), dir))
        } else {
            PluginRef::Bundled(text.clone())
        };
        let paths = |v: &[String]| v.iter().map(|p| resolve_path(Path::new(p), dir)).collect::<Vec<_>>();
        for url in &s.grants.llm {
            if let Err(why) = crate::capability::llm::check_endpoint(url) {
                let hint = "grant model endpoints by their base URL, e.g. `grants = { llm = [\"http://127.0.0.1:8080/v1\"] }`";
                return Err(self.invalid(s.name.span(), format!("{what} {name:?}: llm grant {why}"), hint));
            }
        }
        let llm = crate::capability::llm::LlmGrant {
            endpoints: s.grants.llm.clone(),
            key_env: s.grants.llm_key_env.clone(),
            ..Default::default()
        };
        let grants = Grants { git: paths(&s.grants.git), sqlite: paths(&s.grants.sqlite), read: paths(&s.grants.read), llm };
        Ok(PluginEntry {
            name: name.clone(),
            plugin,
            plugin_text: text.clone(),
            grants,
            config_json: table_to_json(&s.config).to_string(),
            enabled: s.enabled,
            at: self.location(s.plugin.span().start),
            budget: s.budget,
        })
    }
}

/// `plugin = "git"` names a bundled plugin; anything with a path separator or ending in `.wasm`
/// is a file.
fn looks_like_path(s: &str) -> bool {
    s.ends_with(".wasm") || s.contains('/') || s.contains(std::path::MAIN_SEPARATOR) || s.starts_with('~')
}

/// Expands a leading `~` and makes `p` absolute relative to `dir`.
pub fn resolve_path(p: &Path, dir: &Path) -> PathBuf {
    let p = expand_home(p);
    if p.is_absolute() {
        p
    } else {
        dir.join(p)
    }
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME").filter(|h| !h.is_empty()).map(PathBuf::from)
}

/// `~` and `~/x` → the home directory (left alone when HOME is unset).
pub fn expand_home(p: &Path) -> PathBuf {
    if let Ok(rest) = p.strip_prefix("~") {
        if let Some(h) = home() {
            return if rest.as_os_str().is_empty() { h } else { h.join(rest) };
        }
    }
    p.to_path_buf()
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| home().map(|h| h.join(".cache")))?;
    Some(base.join("sam-brain").join("components"))
}

/// A plugin's TOML table as JSON. Strings starting with `~/` are expanded (a plugin cannot see
/// the environment); datetimes become their TOML text.
fn table_to_json(t: &toml::Table) -> serde_json::Value {
    serde_json::Value::Object(t.iter().map(|(k, v)| (k.clone(), value_to_json(v))).collect())
}

fn value_to_json(v: &toml::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        toml::Value::String(s) if s == "~" || s.starts_with("~/") => J::String(expand_home(Path::new(s)).to_string_lossy().into_owned()),
        toml::Value::String(s) => J::String(s.clone()),
        toml::Value::Integer(i) => J::from(*i),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        toml::Value::Boolean(b) => J::Bool(*b),
        toml::Value::Datetime(d) => J::String(d.to_string()),
        toml::Value::Array(a) => J::Array(a.iter().map(value_to_json).collect()),
        toml::Value::Table(t) => table_to_json(t),
    }
}

#[cfg(test)]
mod tests;

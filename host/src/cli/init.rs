//! `brain init [PATH]`: write the commented default config.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _};

use super::Ctx;
use crate::config::{Config, DEFAULT_FILE, TEMPLATE};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The file to write, or a directory to write `brain.toml` in (default: --config's path).
    pub path: Option<PathBuf>,
    /// Overwrite an existing file.
    #[arg(long)]
    pub force: bool,
}

pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<ExitCode> {
    let mut path = args.path.unwrap_or_else(|| ctx.config_path.clone());
    if path.is_dir() {
        path = path.join(DEFAULT_FILE);
    }
    if path.exists() && !args.force {
        bail!("{} already exists: edit it, or pass --force to overwrite it", path.display());
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let dir = std::path::absolute(&dir)?;
    let text = config_for(&dir);
    // What we write must load; a failure here is a bug in the template.
    Config::from_str(&text, &dir.join(DEFAULT_FILE)).context("the built-in config template does not parse")?;
    std::fs::write(&path, &text).with_context(|| format!("cannot write {}", path.display()))?;
    let repo = dir.join(".git").exists();
    if ctx.json {
        super::print_json(&serde_json::json!({ "path": path, "git_source": repo }))?;
    } else if !ctx.quiet {
        println!("wrote {}", path.display());
        if repo {
            println!("added a git source for {} (see [[source]]); run `brain collect`", dir.display());
        } else {
            println!("add a [[source]] (see the examples in the file), then run `brain collect`");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The template; in a git repository's top directory, with a source collecting its commits.
pub fn config_for(dir: &Path) -> String {
    if !dir.join(".git").exists() {
        return TEMPLATE.to_string();
    }
    let name = dir.file_name().map_or("repo".into(), |n| n.to_string_lossy().into_owned());
    let repo = toml::Value::String(dir.display().to_string());
    let source = format!(
        "[[source]]\nname = {}\nplugin = \"git\"\ngrants = {{ git = [{repo}] }}\nconfig = {{ repos = [{repo}] }}\n\n",
        toml::Value::String(format!("{name}-commits")),
    );
    let marker = "# ── Filters";
    match TEMPLATE.find(marker) {
        Some(at) => format!("{}{source}{}", &TEMPLATE[..at], &TEMPLATE[at..]),
        None => format!("{TEMPLATE}\n{source}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_a_git_repository_the_config_collects_it() {
        let dir = tempfile::tempdir().unwrap();
        let plain = config_for(dir.path());
        assert_eq!(plain, TEMPLATE);
        std::fs::create_dir(dir.path().join(".git")).unwrap();
        let text = config_for(dir.path());
        let c = Config::from_str(&text, &dir.path().join(DEFAULT_FILE)).unwrap();
        assert_eq!(c.sources.len(), 1);
        let s = &c.sources[0];
        assert!(s.name.ends_with("-commits"));
        assert_eq!(s.grants.git, vec![dir.path().to_path_buf()]);
        let cfg: serde_json::Value = serde_json::from_str(&s.config_json).unwrap();
        assert_eq!(cfg["repos"][0], dir.path().display().to_string());
    }
}

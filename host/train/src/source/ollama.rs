//! `ollama:NAME[:TAG]`: a model in Ollama's local store, which is a GGUF blob named by a manifest.
//!
//! Store layout: `$OLLAMA_MODELS` (default `~/.ollama/models`) holds
//! `manifests/<registry>/<namespace>/<name>/<tag>` (JSON: `layers[]` of `{mediaType, digest,
//! size}`) and `blobs/sha256-<hex>`. The layer of media type
//! `application/vnd.ollama.image.model` is the model's GGUF. `NAME` alone means registry
//! `registry.ollama.ai`, namespace `library`, tag `latest`.

use std::path::{Path, PathBuf};

use crate::error::{model_err, Error, Result};

/// Media type of the manifest layer that holds the GGUF.
pub const MODEL_MEDIA_TYPE: &str = "application/vnd.ollama.image.model";
pub const DEFAULT_REGISTRY: &str = "registry.ollama.ai";
pub const DEFAULT_NAMESPACE: &str = "library";
pub const DEFAULT_TAG: &str = "latest";

/// A parsed model reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub registry: String,
    pub namespace: String,
    pub name: String,
    pub tag: String,
}

impl Reference {
    /// `NAME[:TAG]`, `NAMESPACE/NAME[:TAG]` or `REGISTRY/NAMESPACE/NAME[:TAG]` (an `ollama:` prefix
    /// is allowed). The tag follows the last `:` after the last `/`, so a registry with a port
    /// (`localhost:5000/ns/name`) still parses.
    pub fn parse(s: &str) -> Result<Self> {
        let s = s.strip_prefix("ollama:").unwrap_or(s);
        let bad = |why: &str| {
            Error::Args(format!(
                "ollama model {s:?}: {why}; write NAME[:TAG], NAMESPACE/NAME[:TAG] or REGISTRY/NAMESPACE/NAME[:TAG]"
            ))
        };
        let slash = s.rfind('/').map_or(0, |i| i + 1);
        let (path, tag) = match s[slash..].rfind(':') {
            Some(i) => (&s[..slash + i], &s[slash + i + 1..]),
            None => (s, DEFAULT_TAG),
        };
        let parts: Vec<&str> = path.split('/').collect();
        let (registry, namespace, name) = match parts.as_slice() {
            [n] => (DEFAULT_REGISTRY, DEFAULT_NAMESPACE, *n),
            [ns, n] => (DEFAULT_REGISTRY, *ns, *n),
            [r, ns, n] => (*r, *ns, *n),
            _ => return Err(bad("too many parts")),
        };
        // Every part becomes a path component: no empties, no `..`, no separators.
        for part in [registry, namespace, name, tag] {
            if part.is_empty() || part == "." || part == ".." || part.contains('\\') {
                return Err(bad("an empty or invalid part"));
            }
        }
        Ok(Reference {
            registry: registry.into(),
            namespace: namespace.into(),
            name: name.into(),
            tag: tag.into(),
        })
    }

    /// The manifest's path under the store.
    pub fn manifest(&self, store: &Path) -> PathBuf {
        store
            .join("manifests")
            .join(&self.registry)
            .join(&self.namespace)
            .join(&self.name)
            .join(&self.tag)
    }

    /// How Ollama shows it: `name:tag`, with the namespace and registry when not the defaults.
    pub fn display(&self) -> String {
        match (self.registry.as_str(), self.namespace.as_str()) {
            (DEFAULT_REGISTRY, DEFAULT_NAMESPACE) => format!("{}:{}", self.name, self.tag),
            (DEFAULT_REGISTRY, ns) => format!("{ns}/{}:{}", self.name, self.tag),
            (r, ns) => format!("{r}/{ns}/{}:{}", self.name, self.tag),
        }
    }
}

/// The Ollama store: `$OLLAMA_MODELS`, else `~/.ollama/models`.
pub fn store_dir() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("OLLAMA_MODELS").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d));
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .ok_or_else(|| Error::Args("HOME is not set: set OLLAMA_MODELS to the Ollama store".into()))?;
    Ok(PathBuf::from(home).join(".ollama").join("models"))
}

/// The GGUF blob of Ollama model `name` (`NAME[:TAG]`, …) in the default store.
pub fn resolve(name: &str) -> Result<PathBuf> {
    resolve_in(&store_dir()?, name)
}

/// [`resolve`] in the store at `store`.
pub fn resolve_in(store: &Path, name: &str) -> Result<PathBuf> {
    let r = Reference::parse(name)?;
    let manifest = r.manifest(store);
    let text = match std::fs::read_to_string(&manifest) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(not_found(store, &r, &manifest)),
        Err(e) => return Err(Error::Io { path: manifest, source: e }),
    };
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| model_err(&manifest, format!("bad Ollama manifest: {e}")))?;
    let layers = json
        .get("layers")
        .and_then(|l| l.as_array())
        .ok_or_else(|| model_err(&manifest, "the Ollama manifest has no layers"))?;
    let layer = layers
        .iter()
        .find(|l| l.get("mediaType").and_then(|m| m.as_str()) == Some(MODEL_MEDIA_TYPE))
        .ok_or_else(|| model_err(&manifest, format!("{} has no model layer ({MODEL_MEDIA_TYPE})", r.display())))?;
    let digest = layer.get("digest").and_then(|d| d.as_str()).unwrap_or("");
    let hex = digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| {
            model_err(
                &manifest,
                format!("the model layer's digest {digest:?} is not sha256:<64 hex digits>"),
            )
        })?;
    let blob = store.join("blobs").join(format!("sha256-{hex}"));
    if !blob.is_file() {
        return Err(model_err(
            &blob,
            format!(
                "the model blob of {} is missing (an interrupted pull?); run `ollama pull {}`",
                r.display(),
                r.display()
            ),
        ));
    }
    Ok(blob)
}

fn not_found(store: &Path, r: &Reference, manifest: &Path) -> Error {
    let have = list(store);
    let msg = if !store.is_dir() {
        format!(
            "ollama model {} not found: there is no Ollama store at {} (set OLLAMA_MODELS to the store, or `ollama pull {}`)",
            r.display(),
            store.display(),
            r.display()
        )
    } else if have.is_empty() {
        format!(
            "ollama model {} not found: the Ollama store at {} has no models (`ollama pull {}`)",
            r.display(),
            store.display(),
            r.display()
        )
    } else {
        format!(
            "ollama model {} not found in {} (no {}); the store has: {}",
            r.display(),
            store.display(),
            manifest.display(),
            have.join(", ")
        )
    };
    Error::Args(msg)
}

/// The models in the store at `store`, as Ollama shows them (`name:tag`, sorted).
pub fn list(store: &Path) -> Vec<String> {
    let dirs = |p: &Path| -> Vec<(String, PathBuf)> {
        let mut v: Vec<(String, PathBuf)> = std::fs::read_dir(p)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
            .collect();
        v.sort();
        v
    };
    let mut out = Vec::new();
    for (registry, rp) in dirs(&store.join("manifests")) {
        for (namespace, np) in dirs(&rp) {
            for (name, mp) in dirs(&np) {
                for (tag, tp) in dirs(&mp) {
                    if tp.is_file() {
                        let r = Reference {
                            registry: registry.clone(),
                            namespace: namespace.clone(),
                            name: name.clone(),
                            tag,
                        };
                        out.push(r.display());
                    }
                }
            }
        }
    }
    out.sort();
    out
}

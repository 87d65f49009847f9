//! `ollama:NAME[:TAG]` against a fake store the test builds.

use std::path::{Path, PathBuf};

use brain_train::gguf::{GgufFile, GgufWriter};
use brain_train::source::ollama::{list, resolve_in, Reference};

/// Put a manifest for `registry/namespace/name:tag` whose model layer is a small GGUF (named by
/// `arch`) into the store; returns the blob's path.
fn add_model(store: &Path, registry: &str, namespace: &str, name: &str, tag: &str, arch: &str) -> PathBuf {
    let hex = format!("{:0>64}", format!("{:x}", arch.len() * 1000 + name.len() * 10 + tag.len()));
    let blob = store.join("blobs").join(format!("sha256-{hex}"));
    std::fs::create_dir_all(blob.parent().unwrap()).unwrap();
    let mut w = GgufWriter::new();
    w.set("general.architecture", arch);
    w.write(&blob).unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": format!("sha256:{}", "c".repeat(64)), "size": 10},
        "layers": [
            {"mediaType": "application/vnd.ollama.image.template", "digest": format!("sha256:{}", "a".repeat(64)), "size": 5},
            {"mediaType": "application/vnd.ollama.image.model", "digest": format!("sha256:{hex}"), "size": 100},
            {"mediaType": "application/vnd.ollama.image.params", "digest": format!("sha256:{}", "b".repeat(64)), "size": 5},
        ],
    });
    let m = store.join("manifests").join(registry).join(namespace).join(name).join(tag);
    std::fs::create_dir_all(m.parent().unwrap()).unwrap();
    std::fs::write(&m, manifest.to_string()).unwrap();
    blob
}

#[test]
fn names_resolve_to_their_gguf_blobs() {
    let td = tempfile::tempdir().unwrap();
    let store = td.path().join("models");
    let latest = add_model(&store, "registry.ollama.ai", "library", "qwen2.5", "latest", "qwen2");
    let small = add_model(&store, "registry.ollama.ai", "library", "qwen2.5", "0.5b", "qwen2");
    let theirs = add_model(&store, "registry.ollama.ai", "someone", "smol", "q4", "llama");
    let other = add_model(&store, "localhost:5000", "team", "m", "v1", "qwen3");
    for (name, want) in [
        ("qwen2.5", &latest),
        ("qwen2.5:latest", &latest),
        ("ollama:qwen2.5", &latest),
        ("qwen2.5:0.5b", &small),
        ("library/qwen2.5:0.5b", &small),
        ("registry.ollama.ai/library/qwen2.5:0.5b", &small),
        ("someone/smol:q4", &theirs),
        ("localhost:5000/team/m:v1", &other),
    ] {
        assert_eq!(&resolve_in(&store, name).unwrap(), want, "{name}");
    }
    assert_eq!(
        GgufFile::open(resolve_in(&store, "someone/smol:q4").unwrap())
            .unwrap()
            .architecture()
            .unwrap(),
        "llama"
    );
    assert_eq!(
        list(&store),
        vec!["localhost:5000/team/m:v1", "qwen2.5:0.5b", "qwen2.5:latest", "someone/smol:q4"]
    );
    assert_eq!(Reference::parse("a:b").unwrap().display(), "a:b");
    for bad in ["", "a/b/c/d", "../x", "a:", "/x"] {
        assert!(Reference::parse(bad).is_err(), "{bad:?} should not parse");
    }
}

#[test]
fn missing_models_say_what_the_store_has() {
    let td = tempfile::tempdir().unwrap();
    let store = td.path().join("models");
    let e = resolve_in(&store, "llama3.2").unwrap_err().to_string();
    assert!(
        e.contains("llama3.2:latest")
            && e.contains("no Ollama store")
            && e.contains(&store.display().to_string())
            && e.contains("OLLAMA_MODELS"),
        "{e}"
    );
    std::fs::create_dir_all(store.join("manifests")).unwrap();
    let e = resolve_in(&store, "llama3.2").unwrap_err().to_string();
    assert!(e.contains("has no models"), "{e}");
    add_model(&store, "registry.ollama.ai", "library", "qwen3", "0.6b", "qwen3");
    add_model(&store, "registry.ollama.ai", "library", "smollm2", "135m", "llama");
    let e = resolve_in(&store, "qwen3").unwrap_err().to_string();
    assert!(
        e.contains("qwen3:latest not found") && e.contains("qwen3:0.6b, smollm2:135m"),
        "{e}"
    );
}

#[test]
fn broken_manifests_and_blobs_are_explained() {
    let td = tempfile::tempdir().unwrap();
    let store = td.path().join("models");
    let blob = add_model(&store, "registry.ollama.ai", "library", "m", "latest", "llama");
    std::fs::remove_file(&blob).unwrap();
    let e = resolve_in(&store, "m").unwrap_err().to_string();
    assert!(e.contains("missing") && e.contains("ollama pull m:latest"), "{e}");
    let manifest = store.join("manifests/registry.ollama.ai/library/m/latest");
    std::fs::write(
        &manifest,
        r#"{"layers": [{"mediaType": "application/vnd.ollama.image.template", "digest": "sha256:00"}]}"#,
    )
    .unwrap();
    assert!(resolve_in(&store, "m").unwrap_err().to_string().contains("no model layer"));
    std::fs::write(
        &manifest,
        r#"{"layers": [{"mediaType": "application/vnd.ollama.image.model", "digest": "sha256:../../etc"}]}"#,
    )
    .unwrap();
    assert!(resolve_in(&store, "m")
        .unwrap_err()
        .to_string()
        .contains("not sha256:<64 hex digits>"));
    std::fs::write(&manifest, "not json").unwrap();
    assert!(resolve_in(&store, "m").unwrap_err().to_string().contains("bad Ollama manifest"));
}

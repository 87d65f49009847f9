//! Ollama export: a Modelfile whose TEMPLATE renders exactly what the model was trained on
//! (the template comes from [`super::family`]).
//!
//! Three layouts: `FROM ./<model>.gguf` (a GGUF file beside the Modelfile), `FROM <fused dir>`
//! (safetensors, weights already merged), or `FROM <base dir>` plus
//! `ADAPTER <dir>` holding a PEFT-layout copy of the LoRA adapter (see [`super::peft`]), whose
//! `lora_alpha` is set so Ollama's converter applies the scale used in training.
//!
//! Ollama's chat endpoint puts the Modelfile's SYSTEM in front of a conversation that has no
//! system message, then hands the template both `.System` (every system message) and
//! `.Messages` (all messages, system ones included). The template therefore renders the system
//! turn from `.System` once and skips system messages in the loop — rendering `.Messages` whole
//! after `.System` would show the system prompt twice.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

/// What the Modelfile builds on.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Weights {
    /// A directory with the adapter already fused into the weights.
    Fused(PathBuf),
    /// The base model directory and a PEFT-layout adapter directory.
    BaseWithAdapter { base: PathBuf, adapter: PathBuf },
    /// A GGUF file next to the Modelfile, written as `FROM ./<file name>` (Ollama resolves it
    /// relative to the Modelfile, so the folder can be moved as a whole).
    Gguf(PathBuf),
}

#[derive(Clone, Debug)]
pub struct ModelfileSpec {
    pub weights: Weights,
    /// The Go template ([`super::family::derive`]).
    pub template: String,
    pub system_prompt: Option<String>,
    /// Sampling temperature written as a PARAMETER (omitted when none).
    pub temperature: Option<f32>,
    /// Stop strings ([`super::family::derive`]).
    pub stop: Vec<String>,
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Renders the Modelfile text.
pub fn modelfile(spec: &ModelfileSpec) -> String {
    let mut out = String::new();
    match &spec.weights {
        Weights::Fused(dir) => out.push_str(&format!("FROM {}\n", dir.display())),
        Weights::BaseWithAdapter { base, adapter } => {
            out.push_str(&format!("FROM {}\n", base.display()));
            out.push_str(&format!("ADAPTER {}\n", adapter.display()));
        }
        Weights::Gguf(file) => {
            let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            out.push_str(&format!("FROM ./{name}\n"));
        }
    }
    out.push_str(&format!("TEMPLATE \"\"\"{}\"\"\"\n", spec.template));
    for stop in &spec.stop {
        out.push_str(&format!("PARAMETER stop {}\n", quote(stop)));
    }
    if let Some(t) = spec.temperature {
        out.push_str(&format!("PARAMETER temperature {t}\n"));
    }
    if let Some(system) = spec.system_prompt.as_deref().filter(|s| !s.is_empty()) {
        // Triple quotes allow newlines; a literal `"""` inside would end the string early.
        out.push_str(&format!("SYSTEM \"\"\"{}\"\"\"\n", system.replace("\"\"\"", "\"\"")));
    }
    out
}

/// The parts of a Modelfile that decide how a conversation is rendered, read back from its text
/// (for checks).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ParsedModelfile {
    pub from: Option<String>,
    pub adapter: Option<String>,
    pub template: Option<String>,
    pub system: Option<String>,
    pub stop: Vec<String>,
}

/// Reads FROM, ADAPTER, TEMPLATE, SYSTEM and `PARAMETER stop` from a Modelfile's text.
pub fn parse_modelfile(text: &str) -> ParsedModelfile {
    let mut p = ParsedModelfile::default();
    let mut rest = text;
    while !rest.is_empty() {
        let line_end = rest.find('\n').unwrap_or(rest.len());
        let line = rest[..line_end].trim_start();
        let (word, arg) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let arg = arg.trim_start();
        let consumed;
        let value = if arg.starts_with("\"\"\"") {
            // `arg` is a slice of `rest`: the body starts after its opening quotes.
            let body_start = arg.as_ptr() as usize - rest.as_ptr() as usize + 3;
            let body = &rest[body_start..];
            let end = body.find("\"\"\"").unwrap_or(body.len());
            let after = (body_start + end + 3).min(rest.len());
            consumed = after + rest[after..].find('\n').map_or(rest.len() - after, |i| i + 1);
            body[..end].to_string()
        } else {
            consumed = line_end + 1;
            let a = arg.trim_end();
            match a.strip_prefix('"').and_then(|x| x.strip_suffix('"')) {
                Some(q) => q.replace("\\\"", "\"").replace("\\\\", "\\"),
                None => a.to_string(),
            }
        };
        match word.to_ascii_uppercase().as_str() {
            "FROM" => p.from = Some(value),
            "ADAPTER" => p.adapter = Some(value),
            "TEMPLATE" => p.template = Some(value),
            "SYSTEM" => p.system = Some(value),
            "PARAMETER" => {
                if let Some((k, v)) = value.split_once(char::is_whitespace) {
                    if k == "stop" {
                        let v = v.trim();
                        let v = v.strip_prefix('"').and_then(|x| x.strip_suffix('"')).map(|q| q.replace("\\\"", "\"").replace("\\\\", "\\")).unwrap_or(v.to_string());
                        p.stop.push(v);
                    }
                }
            }
            _ => {}
        }
        rest = &rest[consumed.min(rest.len())..];
    }
    p
}

/// The `ollama create` command line for a Modelfile (quoted for a POSIX shell).
pub fn create_command(name: &str, modelfile: &Path, quantize: Option<&str>) -> String {
    let q = quantize.map(|q| format!(" --quantize {q}")).unwrap_or_default();
    format!("ollama create {}{q} -f {}", shell_quote(name), shell_quote(&modelfile.display().to_string()))
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=@+".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Runs `ollama create` when asked and installed. Returns the command and whether it ran.
pub fn create(name: &str, modelfile: &Path, quantize: Option<&str>, run_ollama: bool) -> Result<(String, bool)> {
    let command = create_command(name, modelfile, quantize);
    if !(run_ollama && ollama_available()) {
        return Ok((command, false));
    }
    let mut cmd = Command::new("ollama");
    cmd.arg("create").arg(name);
    if let Some(q) = quantize {
        cmd.args(["--quantize", q]);
    }
    let status = cmd.arg("-f").arg(modelfile).status().context("running `ollama create`")?;
    anyhow::ensure!(status.success(), "`{command}` failed with {status}");
    Ok((command, true))
}

/// Whether an `ollama` binary answers `--version`.
pub fn ollama_available() -> bool {
    Command::new("ollama").arg("--version").output().map(|o| o.status.success()).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::super::family::chatml_template;
    use super::*;

    fn conv(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter().map(|(r, c)| (r.to_string(), c.to_string())).collect()
    }

    /// Renders the template as Ollama's chat endpoint would and compares with ChatML.
    #[test]
    fn template_matches_chatml_turns() {
        let t = chatml_template("");
        let out = super::super::gotmpl::render_chat(&t, None, &conv(&[("system", "Be brief."), ("user", "hi")])).unwrap();
        assert_eq!(out, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
        // The Modelfile's SYSTEM is used when the conversation has none, once.
        let out = super::super::gotmpl::render_chat(&t, Some("You are SAM."), &conv(&[("user", "a"), ("assistant", "b"), ("user", "c")])).unwrap();
        assert_eq!(
            out,
            "<|im_start|>system\nYou are SAM.<|im_end|>\n<|im_start|>user\na<|im_end|>\n<|im_start|>assistant\nb<|im_end|>\n\
             <|im_start|>user\nc<|im_end|>\n<|im_start|>assistant\n"
        );
        let out = super::super::gotmpl::render_chat(&t, None, &conv(&[("user", "q")])).unwrap();
        assert_eq!(out, "<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n");
    }

    #[test]
    fn modelfile_has_adapter_stops_and_system_and_reads_back() {
        let spec = ModelfileSpec {
            weights: Weights::BaseWithAdapter { base: "/m/base".into(), adapter: "/m/peft".into() },
            system_prompt: Some("You are SAM.\nBe \"brief\".".into()),
            template: chatml_template(""),
            temperature: Some(0.7),
            stop: vec!["<|im_end|>".into(), "<|endoftext|>".into()],
        };
        let text = modelfile(&spec);
        assert!(text.starts_with("FROM /m/base\nADAPTER /m/peft\n"));
        assert!(text.contains("PARAMETER stop \"<|im_end|>\"\n"));
        assert!(text.contains("PARAMETER stop \"<|endoftext|>\"\n"));
        assert!(text.contains("SYSTEM \"\"\"You are SAM.\nBe \"brief\".\"\"\"\n"));
        assert!(text.contains(&format!("TEMPLATE \"\"\"{}\"\"\"", chatml_template(""))));
        let p = parse_modelfile(&text);
        assert_eq!(p.from.as_deref(), Some("/m/base"));
        assert_eq!(p.adapter.as_deref(), Some("/m/peft"));
        assert_eq!(p.template.as_deref(), Some(chatml_template("").as_str()));
        assert_eq!(p.system.as_deref(), Some("You are SAM.\nBe \"brief\"."));
        assert_eq!(p.stop, ["<|im_end|>", "<|endoftext|>"]);
    }

    #[test]
    fn create_command_quotes() {
        assert_eq!(create_command("sam", Path::new("/o/Modelfile"), None), "ollama create sam -f /o/Modelfile");
        assert_eq!(create_command("sam", Path::new("/my dir/Modelfile"), Some("q4_K_M")), "ollama create sam --quantize q4_K_M -f '/my dir/Modelfile'");
    }

    #[test]
    fn gguf_weights_are_named_relative_to_the_modelfile() {
        let spec = ModelfileSpec {
            weights: Weights::Gguf("/out/sam/ggml-model-f16.gguf".into()),
            template: chatml_template(""),
            system_prompt: None,
            temperature: None,
            stop: vec![],
        };
        let text = modelfile(&spec);
        assert!(text.starts_with("FROM ./ggml-model-f16.gguf\nTEMPLATE"), "{text}");
        assert_eq!(parse_modelfile(&text).from.as_deref(), Some("./ggml-model-f16.gguf"));
    }
}

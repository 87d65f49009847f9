//! The Ollama TEMPLATE for a model, derived from how its own chat template (the one training
//! renders) lays out a conversation.
//!
//! The chat template is not recognized by its text: small probe conversations are rendered with
//! it and the output is matched against the turn layouts of the families we train —
//! ChatML (`<|im_start|>role\ncontent<|im_end|>\n`: Qwen2/2.5, SmolLM2, and Qwen3 for plain chats:
//! with thinking left on, its generation prompt is the plain open assistant turn)
//! and Llama 3 (`<|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>`, including
//! Llama 3.1/3.2's fixed lines in the system turn). Anything else is refused by name: a TEMPLATE
//! that renders differently from training would quietly change what the model sees.
//!
//! BOS: Ollama's tokenizer adds the bos token itself when the model says so (GGUF
//! `tokenizer.ggml.add_bos_token`, which the GGUF export and Ollama's safetensors converter both
//! take from tokenizer.json's post-processor). Ollama's own Llama 3 template therefore starts at
//! the first header, without `<|begin_of_text|>`; the derived template does the same when the
//! tokenizer adds bos, and writes it literally only when it does not.

use anyhow::{bail, Result};
use brain_train::tokenizer::{Message, Tokenizer};

const SYSTEM: &str = "Probe system 5c1e.";
const QUESTION: &str = "Probe question 5c1e?";

/// ChatML's markers.
pub const IM_START: &str = "<|im_start|>";
pub const IM_END: &str = "<|im_end|>";
pub const ENDOFTEXT: &str = "<|endoftext|>";
/// Llama 3's markers.
pub const START_HEADER: &str = "<|start_header_id|>";
pub const END_HEADER: &str = "<|end_header_id|>";
pub const EOT: &str = "<|eot_id|>";

/// The turn layouts we can express as an Ollama Go template.
#[derive(Clone, Debug, PartialEq)]
pub enum ChatFamily {
    ChatMl,
    Llama3 {
        /// Text the template writes at the start of the system turn's content (Llama 3.1's
        /// "Cutting Knowledge Date: …\nToday Date: …\n\n"); empty for Llama 3.
        system_preamble: String,
        /// The system turn is written even for a conversation without a system message
        /// (Llama 3.1 and later: it carries the preamble).
        always_system: bool,
    },
}

impl ChatFamily {
    pub fn name(&self) -> &'static str {
        match self {
            ChatFamily::ChatMl => "chatml",
            ChatFamily::Llama3 { .. } => "llama3",
        }
    }
}

/// What [`derive`] found: the family, the Modelfile's TEMPLATE and stop strings, and notes on
/// what Ollama cannot reproduce.
#[derive(Clone, Debug)]
pub struct DerivedTemplate {
    pub family: ChatFamily,
    pub template: String,
    pub stop: Vec<String>,
    /// The bos token Ollama's tokenizer puts in front of the rendered TEMPLATE (None when the
    /// tokenizer adds none).
    pub auto_bos: Option<String>,
    pub notes: Vec<String>,
}

fn chatml_turn(role: &str, content: &str) -> String {
    format!("{IM_START}{role}\n{content}{IM_END}\n")
}

fn llama3_header(role: &str) -> String {
    format!("{START_HEADER}{role}{END_HEADER}\n\n")
}

/// The bos token Ollama adds in front of every prompt of this model.
pub fn auto_bos(tk: &Tokenizer) -> Option<String> {
    tk.bos_id.filter(|_| tk.add_bos_token()).and_then(|id| tk.inner().id_to_token(id))
}

/// The stop strings: the end-of-turn token training taught the model to write, the eos token
/// and the configs' extra eos ids, and `<|endoftext|>` when the vocabulary has it — each once.
pub fn stop_strings(tk: &Tokenizer) -> Vec<String> {
    let mut stops: Vec<String> = Vec::new();
    let mut push = |s: String| {
        if !s.is_empty() && !stops.contains(&s) {
            stops.push(s);
        }
    };
    if let Some(eot) = tk.end_of_turn() {
        push(eot.to_string());
    }
    for id in tk.stop_ids() {
        if let Some(t) = tk.inner().id_to_token(*id) {
            push(t);
        }
    }
    if tk.inner().token_to_id(ENDOFTEXT).is_some() {
        push(ENDOFTEXT.to_string());
    }
    stops
}

/// The Go template for ChatML: the system turn from `.System` (once; system messages are
/// skipped in the loop, see [`super::ollama`]), every other message as a turn, then the open
/// assistant turn. `lead` is text before everything (a bos the tokenizer does not add).
pub fn chatml_template(lead: &str) -> String {
    format!(
        "{lead}{{{{- if .System }}}}{IM_START}system\n{{{{ .System }}}}{IM_END}\n{{{{ end }}}}\
{{{{- range .Messages }}}}{{{{- if ne .Role \"system\" }}}}{IM_START}{{{{ .Role }}}}\n{{{{ .Content }}}}{IM_END}\n{{{{ end }}}}{{{{- end }}}}{IM_START}assistant\n"
    )
}

/// The Go template for Llama 3: the system turn (its preamble, then `.System`), every other
/// message as a header + content + `<|eot_id|>`, then the open assistant header.
pub fn llama3_template(lead: &str, system_preamble: &str, always_system: bool) -> String {
    let sys = llama3_header("system");
    let system_turn = if always_system {
        format!("{sys}{system_preamble}{{{{ if .System }}}}{{{{ .System }}}}{{{{ end }}}}{EOT}")
    } else {
        format!("{{{{ if .System }}}}{sys}{system_preamble}{{{{ .System }}}}{EOT}{{{{ end }}}}")
    };
    format!(
        "{lead}{system_turn}{{{{ range .Messages }}}}{{{{ if ne .Role \"system\" }}}}{START_HEADER}{{{{ .Role }}}}{END_HEADER}\n\n{{{{ .Content }}}}{EOT}{{{{ end }}}}{{{{ end }}}}{}",
        llama3_header("assistant")
    )
}

fn render(tk: &Tokenizer, messages: &[(&str, &str)]) -> Result<String> {
    let msgs: Vec<Message> = messages.iter().map(|(r, c)| Message::new(r, c)).collect();
    Ok(tk.render_chat(&msgs, true)?)
}

/// Finds the family of the tokenizer's chat template and derives the Modelfile's TEMPLATE and
/// stop strings; refuses a template that is none of the families, naming it.
pub fn derive(tk: &Tokenizer) -> Result<DerivedTemplate> {
    let with_system = render(tk, &[("system", SYSTEM), ("user", QUESTION)])?;
    let without_system = render(tk, &[("user", QUESTION)])?;
    let auto_bos = auto_bos(tk);
    // What the TEMPLATE itself must write: the rendering less the bos Ollama adds.
    let strip = |s: &str| -> String { auto_bos.as_deref().and_then(|b| s.strip_prefix(b)).unwrap_or(s).to_string() };
    let (with_system, without_system) = (strip(&with_system), strip(&without_system));
    let mut notes = Vec::new();

    let family = if let Some(lead) = with_system.strip_suffix(&format!("{}{}{IM_START}assistant\n", chatml_turn("system", SYSTEM), chatml_turn("user", QUESTION))) {
        (lead.to_string(), ChatFamily::ChatMl)
    } else if let Some(found) = llama3_layout(&with_system, &without_system) {
        found
    } else {
        bail!(
            "the chat template ({}) is none of the layouts brain can write as an Ollama TEMPLATE (ChatML: <|im_start|>role…<|im_end|>; \
             Llama 3: <|start_header_id|>role<|end_header_id|>…<|eot_id|>); it renders a system + user conversation as\n{}\n\
             Write the Modelfile's TEMPLATE by hand (see `brain export ollama --help`), or train with a ChatML or Llama 3 model",
            tk.template_source(),
            with_system
        );
    };
    let (lead, family) = family;
    if lead.contains("{{") {
        bail!("the chat template ({}) writes {lead:?} before the first turn, which a Go template cannot hold as text", tk.template_source());
    }
    let template = match &family {
        ChatFamily::ChatMl => chatml_template(&lead),
        ChatFamily::Llama3 { system_preamble, always_system } => {
            if system_preamble.contains("{{") {
                bail!("the chat template ({}) writes {system_preamble:?} in the system turn, which a Go template cannot hold as text", tk.template_source());
            }
            if !system_preamble.is_empty() && tk.chat_template().source().contains("strftime_now") {
                notes.push(format!(
                    "the chat template writes today's date into the system turn (strftime_now); the Modelfile fixes it to the day of export: {:?}",
                    system_preamble.trim_end()
                ));
            }
            llama3_template(&lead, system_preamble, *always_system)
        }
    };
    // Llama 3 trims message content; Ollama passes it as is. (These two probes only add notes:
    // a template that refuses them is judged by the check alone.)
    if render(tk, &[("user", " x ")]).is_ok_and(|padded| !padded.contains(" x ")) {
        notes.push(
            "the chat template trims message content (Jinja `| trim`) and Ollama does not: a message with leading or trailing \
             whitespace renders with it through Ollama"
                .into(),
        );
    }
    // Qwen3 drops the reasoning of earlier assistant turns; Ollama renders what clients send
    // (its API keeps reasoning in a separate `thinking` field, outside the content).
    let reasoning = render(tk, &[("user", QUESTION), ("assistant", "<think>\nr 5c1e\n</think>\n\nA"), ("user", QUESTION)]);
    if reasoning.is_ok_and(|r| !r.contains("r 5c1e")) {
        notes.push(
            "the chat template drops <think>…</think> reasoning from earlier assistant turns (Qwen3) and the Modelfile does not: \
             send earlier replies without their reasoning (Ollama's chat API keeps it in `thinking`, outside the content)"
                .into(),
        );
    }
    // The layout's own end-of-turn marker ends generation even where the vocabulary does not
    // hold it as one token (Ollama's stops match text).
    let mut stop = stop_strings(tk);
    let marker = match family {
        ChatFamily::ChatMl => IM_END,
        ChatFamily::Llama3 { .. } => EOT,
    };
    if !stop.iter().any(|s| s == marker) {
        stop.insert(0, marker.to_string());
    }
    Ok(DerivedTemplate { family, template, stop, auto_bos, notes })
}

/// Llama 3's layout: `lead` + system header + preamble + system content + `<|eot_id|>` + user
/// turn + open assistant header; without a system message either no system turn or one with the
/// preamble only.
fn llama3_layout(with_system: &str, without_system: &str) -> Option<(String, ChatFamily)> {
    let sys_header = llama3_header("system");
    let tail = format!("{SYSTEM}{EOT}{}{QUESTION}{EOT}{}", llama3_header("user"), llama3_header("assistant"));
    let head = with_system.strip_suffix(&tail)?;
    let at = head.find(&sys_header)?;
    let (lead, system_preamble) = (&head[..at], &head[at + sys_header.len()..]);
    let user_turn = format!("{}{QUESTION}{EOT}{}", llama3_header("user"), llama3_header("assistant"));
    let always_system = if without_system == format!("{lead}{user_turn}") {
        false
    } else if without_system == format!("{lead}{sys_header}{system_preamble}{EOT}{user_turn}") {
        true
    } else {
        return None;
    };
    Some((lead.to_string(), ChatFamily::Llama3 { system_preamble: system_preamble.to_string(), always_system }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ship::gotmpl::render_chat;

    fn llama3(turns: &[(&str, &str)]) -> String {
        turns.iter().map(|(r, c)| format!("{}{c}{EOT}", llama3_header(r))).collect::<String>() + &llama3_header("assistant")
    }

    #[test]
    fn llama3_layouts_are_told_apart_by_their_system_turn() {
        let pre = "Cutting Knowledge Date: December 2023\n\n";
        let with = llama3(&[("system", &format!("{pre}{SYSTEM}")), ("user", QUESTION)]);
        let without = llama3(&[("system", pre), ("user", QUESTION)]);
        let found = llama3_layout(&with, &without).unwrap();
        assert_eq!(found, (String::new(), ChatFamily::Llama3 { system_preamble: pre.into(), always_system: true }));
        let plain = llama3_layout(&llama3(&[("system", SYSTEM), ("user", QUESTION)]), &llama3(&[("user", QUESTION)])).unwrap();
        assert_eq!(plain.1, ChatFamily::Llama3 { system_preamble: String::new(), always_system: false });
        // ChatML is not Llama 3.
        assert!(llama3_layout(&format!("{}{}", chatml_turn("system", SYSTEM), chatml_turn("user", QUESTION)), "").is_none());
    }

    #[test]
    fn llama3_go_template_renders_the_layout() {
        let conv = |v: &[(&str, &str)]| v.iter().map(|(r, c)| (r.to_string(), c.to_string())).collect::<Vec<_>>();
        let t = llama3_template("", "", false);
        let msgs = conv(&[("system", "S"), ("user", "a"), ("assistant", "b"), ("user", "c")]);
        assert_eq!(render_chat(&t, None, &msgs).unwrap(), llama3(&[("system", "S"), ("user", "a"), ("assistant", "b"), ("user", "c")]));
        assert_eq!(render_chat(&t, None, &conv(&[("user", "a")])).unwrap(), llama3(&[("user", "a")]));
        let t = llama3_template("", "P\n\n", true);
        assert_eq!(render_chat(&t, None, &conv(&[("user", "a")])).unwrap(), llama3(&[("system", "P\n\n"), ("user", "a")]));
        assert_eq!(render_chat(&t, Some("S"), &conv(&[("user", "a")])).unwrap(), llama3(&[("system", "P\n\nS"), ("user", "a")]));
    }
}

//! A model's Jinja chat template, rendered as Hugging Face transformers renders it.
//!
//! transformers (`utils/chat_template_utils.py`, `_cached_compile_jinja_template` and
//! `render_jinja_template`) compiles the template in a sandboxed Jinja2 environment with
//! `trim_blocks=True, lstrip_blocks=True` (keep_trailing_newline stays off), the loop controls
//! extension, and these additions: `raise_exception(msg)`, `strftime_now(fmt)`, a `tojson`
//! filter that is `json.dumps(ensure_ascii=False, …)`, `dict` and `namespace`. It renders with
//! `messages`, `tools=None`, `documents=None`, `add_generation_prompt` and the tokenizer's named
//! special tokens (`bos_token`, `eos_token`, … when set). Messages lose their `None` values and
//! get their reasoning under both `reasoning_content` and `thinking`.
//!
//! minijinja provides the same language; minijinja-contrib's pycompat adds the Python methods
//! templates call (`.strip()`, `.startswith()`, `.split()`, `.items()`), and [`super::pyfmt`]
//! prints values as Python would. HF's `{% generation %}` tag (assistant-mask tracking, no
//! output of its own) is rewritten to an always-true `if`.

use std::borrow::Cow;

use minijinja::value::{Kwargs, ValueKind};
use minijinja::{Environment, Error as JinjaError, ErrorKind, Value};

use super::pyfmt::{py_json, py_str, JsonStyle};
use super::strftime::strftime_now;
use super::Message;
use crate::error::{Error, Result};

const NAME: &str = "chat_template";

/// The names a message's reasoning goes by; templates read the first (transformers'
/// `_REASONING_FIELDS`).
const REASONING_FIELDS: [&str; 3] = ["reasoning_content", "thinking", "reasoning"];

/// A compiled chat template and where it came from.
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
    origin: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("origin", &self.origin)
            .field("len", &self.source.len())
            .finish()
    }
}

impl ChatTemplate {
    /// Compile `source` (from `origin`, e.g. "tokenizer_config.json", named in errors) with the
    /// special-token strings templates may read, as (name, text): ("bos_token", "<s>"), ….
    pub fn new(source: &str, origin: &str, special_tokens: &[(String, String)]) -> Result<Self> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_keep_trailing_newline(false);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.set_formatter(|out, _state, value| {
            out.write_str(&py_str(value))
                .map_err(|_| JinjaError::new(ErrorKind::WriteFailure, "cannot write the output"))
        });
        env.add_filter("tojson", tojson);
        env.add_function("raise_exception", |msg: String| -> std::result::Result<Value, JinjaError> {
            Err(JinjaError::new(ErrorKind::InvalidOperation, format!("raise_exception: {msg}")))
        });
        env.add_function("strftime_now", |format: String| strftime_now(&format));
        for (name, text) in special_tokens {
            env.add_global(name.clone(), Value::from(text.as_str()));
        }
        let prepared = without_generation_tags(source).into_owned();
        env.add_template_owned(NAME, prepared).map_err(|e| {
            Error::Tokenizer(format!(
                "the chat template of {origin} does not parse: {e:#}; fix or replace the template"
            ))
        })?;
        Ok(ChatTemplate {
            env,
            source: source.to_string(),
            origin: origin.to_string(),
        })
    }

    /// The template text as the model ships it.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Where the template came from ("chat_template.jinja", "tokenizer_config.json", …).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Whether the template text mentions `name` (e.g. "tool_calls": it renders tool calls itself).
    pub fn mentions(&self, name: &str) -> bool {
        self.source.contains(name)
    }

    /// Render `messages`; with `add_generation_prompt` the assistant's turn is opened at the end.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        let msgs: Vec<Value> = messages.iter().map(message_value).collect();
        let ctx = minijinja::context! {
            messages => msgs,
            add_generation_prompt => add_generation_prompt,
            tools => Value::from(()),
            documents => Value::from(()),
        };
        let tmpl = self.env.get_template(NAME).map_err(|e| self.error(e))?;
        tmpl.render(ctx).map_err(|e| self.error(e))
    }

    fn error(&self, e: JinjaError) -> Error {
        let mut msg = format!("the chat template of {} failed: {e}", self.origin);
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            msg.push_str(&format!(": {s}"));
            src = s.source();
        }
        if e.kind() == ErrorKind::InvalidOperation && e.to_string().contains("raise_exception") {
            msg.push_str(" (the template refuses this conversation: check the order of its roles)");
        }
        Error::Tokenizer(msg)
    }
}

/// A message as the template sees it: role, content, then its other keys in their order, with
/// null values dropped and the reasoning under both of its names.
fn message_value(m: &Message) -> Value {
    let mut entries: Vec<(String, Value)> = vec![
        ("role".into(), Value::from(m.role.as_str())),
        ("content".into(), Value::from(m.content.as_str())),
    ];
    for (k, v) in m.extra.iter() {
        if k != "role" && k != "content" && !v.is_none() && !v.is_undefined() {
            entries.push((k.clone(), v.clone()));
        }
    }
    let reasoning = REASONING_FIELDS
        .iter()
        .find_map(|f| entries.iter().find(|(k, _)| k == f).map(|(_, v)| v.clone()));
    if let Some(r) = reasoning {
        if !entries.iter().any(|(k, _)| k == "thinking") {
            entries.insert(0, ("thinking".into(), r.clone()));
        }
        match entries.iter_mut().find(|(k, _)| k == "reasoning_content") {
            Some(e) => e.1 = r,
            None => entries.push(("reasoning_content".into(), r)),
        }
    }
    entries.into_iter().collect()
}

/// HF's `tojson`: `json.dumps(value, ensure_ascii=False, indent=…, separators=…, sort_keys=…)`.
fn tojson(value: Value, kwargs: Kwargs) -> std::result::Result<String, JinjaError> {
    let bad = |what: &str| JinjaError::new(ErrorKind::InvalidOperation, format!("tojson: {what}"));
    let indent = match kwargs.get::<Option<Value>>("indent")? {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) if v.kind() == ValueKind::Number => Some(" ".repeat(v.as_i64().unwrap_or(0).max(0) as usize)),
        Some(v) if v.kind() == ValueKind::String => Some(v.as_str().unwrap_or_default().to_string()),
        Some(_) => return Err(bad("indent must be a number or a string")),
    };
    let separators = match kwargs.get::<Option<Vec<String>>>("separators")? {
        None => None,
        Some(s) if s.len() == 2 => Some((s[0].clone(), s[1].clone())),
        Some(_) => return Err(bad("separators must be two strings")),
    };
    let sort_keys = kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false);
    let ensure_ascii = kwargs.get::<Option<bool>>("ensure_ascii")?.unwrap_or(false);
    kwargs.assert_all_used()?;
    let text = py_json(
        &value,
        &JsonStyle {
            indent,
            separators,
            sort_keys,
        },
    );
    Ok(if ensure_ascii { ascii_escaped(&text) } else { text })
}

/// `ensure_ascii=True`: non-ASCII characters as `\uXXXX` (UTF-16 surrogate pairs above U+FFFF).
fn ascii_escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut buf = [0u16; 2];
            for unit in c.encode_utf16(&mut buf) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

/// Rewrite HF's `{% generation %}` / `{% endgeneration %}` (any whitespace control) to
/// `{% if true %}` / `{% endif %}`: same output, a tag minijinja knows.
fn without_generation_tags(source: &str) -> Cow<'_, str> {
    if !source.contains("generation") {
        return Cow::Borrowed(source);
    }
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(open) = rest.find("{%") {
        out.push_str(&rest[..open]);
        let tag = &rest[open..];
        let Some(close) = tag.find("%}") else {
            break;
        };
        let inner = &tag[2..close];
        let (lead, body) = split_modifier_start(inner);
        let (body, trail) = split_modifier_end(body);
        let word = body.trim();
        let replacement = match word {
            "generation" => Some("if true"),
            "endgeneration" => Some("endif"),
            _ => None,
        };
        match replacement {
            Some(r) => out.push_str(&format!("{{%{lead} {r} {trail}%}}")),
            None => out.push_str(&tag[..close + 2]),
        }
        rest = &tag[close + 2..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

fn split_modifier_start(s: &str) -> (&str, &str) {
    match s.chars().next() {
        Some('-') | Some('+') => s.split_at(1),
        _ => ("", s),
    }
}

fn split_modifier_end(s: &str) -> (&str, &str) {
    match s.chars().last() {
        Some('-') | Some('+') => s.split_at(s.len() - 1),
        _ => (s, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tpl(src: &str) -> ChatTemplate {
        ChatTemplate::new(src, "test", &[("bos_token".into(), "<s>".into())]).unwrap()
    }

    #[test]
    fn jinja2_whitespace_rules_and_python_values() {
        let t = tpl("{{ bos_token }}\n{% for m in messages %}\n  {{ m.role }}={{ m.content.strip() }};\n{% endfor %}\n{{ tools }} {{ add_generation_prompt }}\n");
        let out = t.render(&[Message::new("user", "  hi ")], true).unwrap();
        // trim_blocks drops the newline after a block tag, lstrip_blocks the indentation before
        // it; the final newline of the template is dropped (keep_trailing_newline off).
        assert_eq!(out, "<s>\n  user=hi;\nNone True");
    }

    #[test]
    fn hf_additions() {
        let t = tpl(
            "{{ messages[0] | tojson }}|{{ {'b': [1, 2]} | tojson(indent=2) }}|{{ messages[::-1] | map(attribute='role') | join(',') }}",
        );
        let m = vec![
            Message::new("user", "é中😀").with_field("name", Value::from("x")),
            Message::new("assistant", "a"),
        ];
        assert_eq!(
            t.render(&m, false).unwrap(),
            "{\"role\": \"user\", \"content\": \"é中😀\", \"name\": \"x\"}|{\n  \"b\": [\n    1,\n    2\n  ]\n}|assistant,user"
        );
        let t = tpl("{% if messages[0].role != 'system' %}{{ raise_exception('need a system message') }}{% endif %}");
        let e = t.render(&[Message::new("user", "x")], false).unwrap_err().to_string();
        assert!(e.contains("need a system message") && e.contains("test"), "{e}");
        let t = tpl("{% generation %}x{%- endgeneration -%} {{ strftime_now('%Y')|length }}");
        assert_eq!(t.render(&[], false).unwrap(), "x4");
    }

    #[test]
    fn reasoning_is_aliased_and_nulls_dropped() {
        let t = tpl("{{ messages[0].reasoning_content }}/{{ messages[0].thinking }}/{{ messages[0].tool_calls is defined }}");
        let m = Message::new("assistant", "a")
            .with_field("reasoning", Value::from("r"))
            .with_field("tool_calls", Value::from(()));
        assert_eq!(t.render(&[m], false).unwrap(), "r/r/False");
    }

    #[test]
    fn parse_errors_name_the_origin() {
        let e = ChatTemplate::new("{% if %}", "chat_template.jinja", &[]).unwrap_err().to_string();
        assert!(e.contains("chat_template.jinja") && e.contains("does not parse"), "{e}");
    }
}

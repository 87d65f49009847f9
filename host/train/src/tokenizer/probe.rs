//! What a chat template does, found by rendering small conversations with it instead of
//! recognizing template texts: the token that ends an assistant turn (generation stops there),
//! and the system message it inserts when a conversation has none (Ollama's Modelfile needs it).

use super::chat_template::ChatTemplate;
use super::Message;

const REPLY: &str = "Probe reply 7f3a.";
const QUESTION: &str = "Probe question 7f3a?";
const SYSTEM: &str = "Probe system 7f3a.";

/// The special token the template writes right after an assistant message's content (maybe
/// after whitespace): `<|im_end|>` for ChatML and Qwen, `<|eot_id|>` for Llama 3. `specials`
/// are the vocabulary's added tokens; the longest that matches wins.
pub fn end_of_turn(tpl: &ChatTemplate, specials: &[String]) -> Option<String> {
    let tries = [
        vec![Message::new("user", QUESTION), Message::new("assistant", REPLY)],
        vec![
            Message::new("system", SYSTEM),
            Message::new("user", QUESTION),
            Message::new("assistant", REPLY),
        ],
        vec![
            Message::new("user", QUESTION),
            Message::new("assistant", REPLY),
            Message::new("user", QUESTION),
        ],
    ];
    for conv in tries {
        let Ok(text) = tpl.render(&conv, false) else { continue };
        let Some(p) = text.rfind(REPLY) else { continue };
        let rest = text[p + REPLY.len()..].trim_start();
        return specials
            .iter()
            .filter(|s| !s.is_empty() && rest.starts_with(s.as_str()))
            .max_by_key(|s| s.len())
            .cloned();
    }
    None
}

/// The system message the template puts in front of a conversation without one (SmolLM2's
/// "You are a helpful AI assistant named SmolLM…", Qwen2.5's "You are Qwen…"): what it renders
/// in the place of a system message's content, checked by rendering it back as a system message.
pub fn default_system(tpl: &ChatTemplate) -> Option<String> {
    let user = [Message::new("user", QUESTION)];
    let with = tpl.render(&[Message::new("system", SYSTEM), user[0].clone()], false).ok()?;
    let without = tpl.render(&user, false).ok()?;
    let mark = with.find(SYSTEM)?;
    let question = with.find(QUESTION)?;
    let (head, middle) = (&with[..mark], with.get(mark + SYSTEM.len()..question)?);
    let body = without.strip_prefix(head)?;
    let end = body.find(&format!("{middle}{QUESTION}"))?;
    let found = &body[..end];
    if found.trim().is_empty() {
        return None;
    }
    let again = tpl.render(&[Message::new("system", found), user[0].clone()], false).ok()?;
    (again == without).then(|| found.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::CHATML_TEMPLATE;

    fn specials() -> Vec<String> {
        ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|start_header_id|>"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    #[test]
    fn chatml_ends_turns_with_im_end_and_has_no_default_system() {
        let t = ChatTemplate::new(CHATML_TEMPLATE, "test", &[]).unwrap();
        assert_eq!(end_of_turn(&t, &specials()).as_deref(), Some("<|im_end|>"));
        assert_eq!(default_system(&t), None);
    }

    #[test]
    fn a_template_default_system_is_read_back() {
        let src = "{% if messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are Bob.<|im_end|>\\n' }}{% endif %}\
                   {% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}";
        let t = ChatTemplate::new(src, "test", &[]).unwrap();
        assert_eq!(default_system(&t).as_deref(), Some("You are Bob."));
        let eot = "{% for m in messages %}<|start_header_id|>{{ m.role }}\n\n{{ m.content | trim }}<|eot_id|>{% endfor %}";
        let t = ChatTemplate::new(eot, "test", &[]).unwrap();
        assert_eq!(end_of_turn(&t, &specials()).as_deref(), Some("<|eot_id|>"));
        let plain = ChatTemplate::new("{% for m in messages %}{{ m.content }}\n\n{% endfor %}", "test", &[]).unwrap();
        assert_eq!(end_of_turn(&plain, &specials()), None);
    }
}

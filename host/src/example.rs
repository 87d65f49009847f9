//! The host's own form of what crosses the plugin boundary: an example and a verdict.
//!
//! Plugins speak the WIT types (`sam:plugin/types`); the runtime converts them into these plain
//! structs after validating them, so the store, curation and export never see bindgen types.

use serde::{Deserialize, Serialize};

/// What an example teaches (mirrors the WIT `kind` enum).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Chat,
    Completion,
    Preference,
    Correction,
    Reasoning,
    Routing,
    Principle,
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::Chat,
        Kind::Completion,
        Kind::Preference,
        Kind::Correction,
        Kind::Reasoning,
        Kind::Routing,
        Kind::Principle,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Chat => "chat",
            Kind::Completion => "completion",
            Kind::Preference => "preference",
            Kind::Correction => "correction",
            Kind::Reasoning => "reasoning",
            Kind::Routing => "routing",
            Kind::Principle => "principle",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who speaks a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

/// One training example.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Example {
    pub kind: Kind,
    pub task: String,
    pub messages: Vec<Message>,
    /// The rejected response of a preference pair.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected: Option<String>,
    pub provenance: String,
    /// Always a JSON object.
    #[serde(default)]
    pub metadata: serde_json::Value,
}

/// A filter's judgement of one example.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub score: f32,
    pub flags: Vec<String>,
    pub complexity: u8,
    pub reject_reason: Option<String>,
    pub rule: String,
    pub fired: Vec<String>,
}

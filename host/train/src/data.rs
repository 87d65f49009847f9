//! Data: train/valid/test JSONL in mlx-lm's three formats — chat (`{"messages": [...]}`),
//! completions (`{"prompt", "completion"}`), text (`{"text"}`) — tokenized with loss masks,
//! truncated to `max_seq_length` (counted), grouped by length into padded batches, shuffled
//! deterministically by seed, with a resumable position.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::rng::Rng;
use crate::tokenizer::{Message, Tokenized, Tokenizer};

/// The format of a JSONL file (from its first line; every line must match).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Chat,
    Completions,
    Text,
}

/// One tokenized split.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub path: PathBuf,
    pub format: Format,
    pub examples: Vec<Tokenized>,
    /// Examples cut to `max_seq_length`.
    pub truncated: usize,
    /// Examples dropped because nothing in them is trained (e.g. no assistant turn within the limit).
    pub skipped: usize,
    /// Sampling weight per example (`"weight"` on its line, default 1): expected draws per epoch
    /// (e.g. corrections at 2.0 are oversampled). Honored by [`Batcher::new`].
    pub weights: Vec<f32>,
    /// Curriculum phase per example (`"phase"` on its line, default 0): within each epoch all
    /// batches of phase 0 come first (shuffled among themselves), then phase 1, and so on.
    pub phases: Vec<u32>,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.examples.len()
    }
    pub fn is_empty(&self) -> bool {
        self.examples.is_empty()
    }
    /// Total trained target tokens.
    pub fn trained_tokens(&self) -> usize {
        self.examples.iter().map(|e| e.trained()).sum()
    }
}

/// Tokenize one line of a data file (chat, completions or text), as training does.
pub fn tokenize_line(line: &str, tok: &Tokenizer) -> std::result::Result<(Format, Tokenized), String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("invalid JSON: {e}"))?;
    parse_line(&v, line, tok)
}

/// Parse one JSON line (`v`, parsed from `line`) into a tokenized example.
fn parse_line(v: &Value, line: &str, tok: &Tokenizer) -> std::result::Result<(Format, Tokenized), String> {
    let obj = v.as_object().ok_or("expected a JSON object")?;
    if let (Some(p), Some(c)) = (obj.get("prompt"), obj.get("completion")) {
        let p = p.as_str().ok_or("\"prompt\" must be a string")?;
        let c = c.as_str().ok_or("\"completion\" must be a string")?;
        return tok.encode_completion(p, c).map(|t| (Format::Completions, t)).map_err(|e| e.to_string());
    }
    if let Some(m) = obj.get("messages") {
        let msgs = messages_of(m, line, tok)?;
        return tok.encode_chat(&msgs).map(|t| (Format::Chat, t)).map_err(|e| e.to_string());
    }
    if let Some(t) = obj.get("text") {
        let t = t.as_str().ok_or("\"text\" must be a string")?;
        return tok.encode_text(t).map(|t| (Format::Text, t)).map_err(|e| e.to_string());
    }
    Err("expected {\"messages\": [...]}, {\"prompt\", \"completion\"} or {\"text\"}".into())
}

/// The messages of a chat line (`{"messages": [...]}`) as training reads them.
pub fn parse_messages(line: &str, tok: &Tokenizer) -> std::result::Result<Vec<Message>, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("invalid JSON: {e}"))?;
    messages_of(v.get("messages").ok_or("expected {\"messages\": [...]}")?, line, tok)
}

fn messages_of(m: &Value, line: &str, tok: &Tokenizer) -> std::result::Result<Vec<Message>, String> {
    let arr = m.as_array().ok_or("\"messages\" must be an array")?;
    // The messages again, their objects' keys in written order (serde_json's maps sort them).
    let ordered = serde_json::from_str::<OrderedMessages>(line).ok().map(|o| o.messages).filter(|o| o.len() == arr.len());
    arr.iter()
        .enumerate()
        .map(|(i, m)| parse_message(m, ordered.as_ref().map(|o| &o[i]), tok).map_err(|e| format!("messages[{i}]: {e}")))
        .collect()
}

#[derive(Deserialize)]
struct OrderedMessages {
    messages: Vec<minijinja::Value>,
}

/// A message's `content` as text: a string, a list of `{"text": …}` parts (joined), or null.
pub(crate) fn content_text(v: &Value) -> std::result::Result<String, String> {
    Ok(match v.get("content") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .map(|p| p.get("text").and_then(|t| t.as_str()).ok_or("content parts need \"text\""))
            .collect::<std::result::Result<Vec<_>, _>>()?
            .join(""),
        Some(_) => return Err("\"content\" must be a string, a list of text parts or null".into()),
    })
}

/// A message of a data line: role, content, and its other keys (`tool_calls`, `reasoning_content`,
/// `name`, …) for the chat template, taken from `ordered` (the same message with its keys in
/// written order) when given. A template that does not render `tool_calls` gets them folded into
/// the content Qwen2.5-style (`<tool_call>\n{"name", "arguments"}\n</tool_call>`).
pub(crate) fn parse_message(v: &Value, ordered: Option<&minijinja::Value>, tok: &Tokenizer) -> std::result::Result<Message, String> {
    let role = v.get("role").and_then(|r| r.as_str()).ok_or("missing string \"role\"")?;
    let mut msg = Message::new(role, &content_text(v)?);
    let obj = v.as_object().ok_or("a message must be a JSON object")?;
    let keys: Vec<String> = match ordered {
        Some(o) => o.try_iter().map(|it| it.filter_map(|k| k.as_str().map(String::from)).collect()).unwrap_or_default(),
        None => obj.keys().cloned().collect(),
    };
    for k in keys.iter().filter(|k| *k != "role" && *k != "content") {
        let value = match ordered.and_then(|o| o.get_attr(k).ok()) {
            Some(x) if !x.is_undefined() => x,
            _ => obj.get(k).map(minijinja::Value::from_serialize).unwrap_or_default(),
        };
        msg.extra.set(k, value);
    }
    if !tok.chat_template().mentions("tool_calls") {
        if let Some(Value::Array(calls)) = v.get("tool_calls") {
            msg.extra.remove("tool_calls");
            for c in calls {
                let f = c.get("function").unwrap_or(c);
                let call = serde_json::json!({"name": f.get("name"), "arguments": f.get("arguments")});
                if !msg.content.is_empty() {
                    msg.content.push('\n');
                }
                msg.content.push_str(&format!("<tool_call>\n{call}\n</tool_call>"));
            }
        }
    }
    Ok(msg)
}

/// Load one JSONL split. `Ok(None)` if the file does not exist.
pub fn load_split(path: &Path, tok: &Tokenizer, max_seq_length: usize) -> Result<Option<Dataset>> {
    let Some(lines) = crate::jsonl::read_lines(path)? else { return Ok(None) };
    let mut ds = Dataset { path: path.to_path_buf(), format: Format::Text, examples: Vec::new(), truncated: 0, skipped: 0, weights: Vec::new(), phases: Vec::new() };
    let mut first: Option<Format> = None;
    for (n, line) in &lines {
        let err = |msg: String| Error::Data { file: path.to_path_buf(), line: *n, msg };
        let v: Value = serde_json::from_str(line).map_err(|e| err(format!("invalid JSON: {e}")))?;
        let (fmt, mut t) = parse_line(&v, line, tok).map_err(err)?;
        match first {
            None => first = Some(fmt),
            Some(f) if f != fmt => return Err(err(format!("this line is {fmt:?} but the file started as {f:?}"))),
            _ => {}
        }
        if t.tokens.len() > max_seq_length {
            t.tokens.truncate(max_seq_length);
            t.mask.truncate(max_seq_length);
            ds.truncated += 1;
        }
        let (weight, phase) = sampling_fields(&v).map_err(err)?;
        if t.trained() == 0 {
            ds.skipped += 1;
            continue;
        }
        ds.examples.push(t);
        ds.weights.push(weight);
        ds.phases.push(phase);
    }
    ds.format = first.unwrap_or(Format::Text);
    if ds.truncated > 0 {
        tracing::warn!("{}: {} examples were longer than {max_seq_length} tokens and were truncated", path.display(), ds.truncated);
    }
    if ds.skipped > 0 {
        tracing::warn!("{}: {} examples have nothing to train on (no assistant turn within the length limit) and were skipped", path.display(), ds.skipped);
    }
    Ok(Some(ds))
}

/// Optional `"weight"` (a finite number ≥ 0, default 1) and `"phase"` (an integer ≥ 0,
/// default 0) of a line; mlx-lm ignores both keys.
fn sampling_fields(v: &Value) -> std::result::Result<(f32, u32), String> {
    let weight = match v.get("weight") {
        None | Some(Value::Null) => 1.0,
        Some(w) => w.as_f64().filter(|w| w.is_finite() && *w >= 0.0).ok_or("\"weight\" must be a number ≥ 0")? as f32,
    };
    let phase = match v.get("phase") {
        None | Some(Value::Null) => 0,
        Some(p) => p.as_u64().and_then(|p| u32::try_from(p).ok()).ok_or("\"phase\" must be an integer ≥ 0")?,
    };
    Ok((weight, phase))
}

/// train/valid/test of a data directory.
#[derive(Debug, Clone)]
pub struct Splits {
    pub train: Option<Dataset>,
    pub valid: Option<Dataset>,
    pub test: Option<Dataset>,
}

/// Load `DIR/{train,valid,test}.jsonl` (missing files are `None`).
pub fn load_dir(dir: &Path, tok: &Tokenizer, max_seq_length: usize) -> Result<Splits> {
    if !dir.is_dir() {
        return Err(Error::Args(format!("data directory {} does not exist (it should hold train.jsonl, valid.jsonl, test.jsonl)", dir.display())));
    }
    let load = |n: &str| load_split(&dir.join(format!("{n}.jsonl")), tok, max_seq_length);
    Ok(Splits { train: load("train")?, valid: load("valid")?, test: load("test")? })
}

/// A padded batch: inputs `tokens[:, :-1]`, targets `tokens[:, 1:]`, and a 0/1 loss weight per
/// target (padding and masked tokens 0). Row-major `(batch, len)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub batch: usize,
    pub len: usize,
    pub inputs: Vec<i32>,
    pub targets: Vec<i32>,
    pub weights: Vec<f32>,
    /// Trained target tokens (sum of weights).
    pub tokens: usize,
}

/// Pad examples into one batch (to the longest one; `pad` fills).
pub fn collate(examples: &[&Tokenized], pad: u32) -> Batch {
    let longest = examples.iter().map(|e| e.tokens.len()).max().unwrap_or(1).max(2);
    let len = longest - 1;
    let b = examples.len();
    let mut inputs = vec![pad as i32; b * len];
    let mut targets = vec![pad as i32; b * len];
    let mut weights = vec![0f32; b * len];
    let mut tokens = 0;
    for (r, e) in examples.iter().enumerate() {
        for j in 0..e.tokens.len().saturating_sub(1) {
            inputs[r * len + j] = e.tokens[j] as i32;
            targets[r * len + j] = e.tokens[j + 1] as i32;
            if e.mask[j + 1] {
                weights[r * len + j] = 1.0;
                tokens += 1;
            }
        }
    }
    Batch { batch: b, len, inputs, targets, weights, tokens }
}

impl Batch {
    /// Pad every row to the next multiple of `multiple` (inputs and targets `pad`, weight 0):
    /// the loss is unchanged (padding comes after each row's tokens and attention is causal),
    /// and a compiled step sees few distinct lengths, each traced and compiled once.
    pub fn pad_len_to_multiple(&mut self, multiple: usize, pad: u32) {
        let len = self.len.div_ceil(multiple.max(1)) * multiple.max(1);
        if len == self.len {
            return;
        }
        fn widen<T: Copy>(v: &[T], from: usize, to: usize, fill: T) -> Vec<T> {
            v.chunks(from).flat_map(|row| row.iter().copied().chain(std::iter::repeat_n(fill, to - from))).collect()
        }
        self.inputs = widen(&self.inputs, self.len, len, pad as i32);
        self.targets = widen(&self.targets, self.len, len, pad as i32);
        self.weights = widen(&self.weights, self.len, len, 0.0);
        self.len = len;
    }
}

/// Where the training iterator stands: epoch and index into that epoch's shuffled batch order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataPosition {
    pub epoch: usize,
    pub index: usize,
}

/// Length-grouped batches of a dataset; training order shuffled per epoch from the seed.
/// Sampling weights repeat examples (fractional parts drawn once, from the seed); curriculum
/// phases order the batches of an epoch by phase (a batch never mixes phases).
#[derive(Debug, Clone)]
pub struct Batcher {
    groups: Vec<Vec<usize>>,
    /// Curriculum phase of each group.
    group_phases: Vec<u32>,
    /// Every item once, by length (evaluation).
    eval_groups: Vec<Vec<usize>>,
    seed: u64,
    pub position: DataPosition,
    order: Vec<usize>,
    order_epoch: Option<usize>,
}

impl Batcher {
    /// Sort by length (stable) and cut into groups of `batch_size` (the last may be smaller),
    /// honoring the dataset's sampling weights and curriculum phases.
    pub fn new(ds: &Dataset, batch_size: usize, seed: u64) -> Self {
        let lengths: Vec<usize> = ds.examples.iter().map(|e| e.tokens.len()).collect();
        Self::with_sampling(&lengths, &ds.weights, &ds.phases, batch_size, seed)
    }

    /// Batches of item indices for items of the given lengths (e.g. preference pairs);
    /// `weights` and `phases` may be empty (all 1, all 0).
    pub fn with_sampling(lengths: &[usize], weights: &[f32], phases: &[u32], batch_size: usize, seed: u64) -> Self {
        let bs = batch_size.max(1);
        let mut idx: Vec<usize> = (0..lengths.len()).collect();
        idx.sort_by_key(|&i| lengths[i]);
        let eval_groups = idx.chunks(bs).map(|c| c.to_vec()).collect();
        let mut draw = Rng::new(seed ^ 0x5A30_11E5);
        let mut drawn: Vec<usize> = Vec::with_capacity(lengths.len());
        for i in 0..lengths.len() {
            let w = weights.get(i).copied().unwrap_or(1.0).max(0.0);
            let extra = w.fract() > 0.0 && draw.uniform() < w.fract() as f64;
            drawn.extend(std::iter::repeat_n(i, w.trunc() as usize + extra as usize));
        }
        if drawn.is_empty() && !lengths.is_empty() {
            tracing::warn!("every sampling weight is 0; ignoring the weights");
            drawn = (0..lengths.len()).collect();
        }
        let phase = |i: usize| phases.get(i).copied().unwrap_or(0);
        drawn.sort_by_key(|&i| (phase(i), lengths[i]));
        let (mut groups, mut group_phases) = (Vec::new(), Vec::new());
        for run in drawn.chunk_by(|&a, &b| phase(a) == phase(b)) {
            for c in run.chunks(bs) {
                groups.push(c.to_vec());
                group_phases.push(phase(c[0]));
            }
        }
        Batcher { groups, group_phases, eval_groups, seed, position: DataPosition::default(), order: Vec::new(), order_epoch: None }
    }

    /// Batches per epoch in each curriculum phase, in training order.
    pub fn phase_batches(&self) -> Vec<(u32, usize)> {
        let mut out: Vec<(u32, usize)> = Vec::new();
        let mut sorted = self.group_phases.clone();
        sorted.sort_unstable();
        for p in sorted {
            match out.last_mut() {
                Some((q, n)) if *q == p => *n += 1,
                _ => out.push((p, 1)),
            }
        }
        out
    }

    pub fn batches_per_epoch(&self) -> usize {
        self.groups.len()
    }

    fn epoch_order(&mut self) {
        if self.order_epoch != Some(self.position.epoch) {
            let mut order: Vec<usize> = (0..self.groups.len()).collect();
            Rng::new(self.seed.wrapping_add((self.position.epoch as u64).wrapping_mul(0x1000_0000_01B3))).shuffle(&mut order);
            // Curriculum: phases in ascending order, shuffled within (stable sort).
            order.sort_by_key(|&g| self.group_phases[g]);
            self.order = order;
            self.order_epoch = Some(self.position.epoch);
        }
    }

    /// Item indices of the next training batch (advances the position, wrapping into the next
    /// epoch).
    pub fn next_indices(&mut self) -> Vec<usize> {
        self.epoch_order();
        let g = self.groups[self.order[self.position.index]].clone();
        self.position.index += 1;
        if self.position.index >= self.groups.len() {
            self.position = DataPosition { epoch: self.position.epoch + 1, index: 0 };
        }
        g
    }

    /// The next training batch (advances the position, wrapping into the next epoch).
    pub fn next_batch(&mut self, ds: &Dataset, pad: u32) -> Batch {
        let g = self.next_indices();
        let ex: Vec<&Tokenized> = g.iter().map(|&i| &ds.examples[i]).collect();
        collate(&ex, pad)
    }

    /// Every item once, in groups by length (evaluation; weights and phases do not apply).
    pub fn eval_groups(&self) -> &[Vec<usize>] {
        &self.eval_groups
    }

    /// Every example once, in length order (evaluation; weights and phases do not apply).
    pub fn all_batches<'a>(&'a self, ds: &'a Dataset, pad: u32) -> impl Iterator<Item = Batch> + 'a {
        self.eval_groups.iter().map(move |g| collate(&g.iter().map(|&i| &ds.examples[i]).collect::<Vec<_>>(), pad))
    }
}

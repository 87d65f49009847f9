//! Source plugin `code-dedup`: snippets of a code-dedup SQLite database → grounded code
//! examples (explain, write-a-function, where-else-is-this). See README.md.
//!
//! [`analyze`] reads what a snippet says about itself; [`examples_for`] turns that and the
//! snippet's locations into examples; [`Db`] is the read-only database (the host's `sqlite`
//! capability in the guest, any SQLite connection in tests).

pub mod analyze;

use std::collections::VecDeque;

use sam_plugin::source::sqlite::{Rows, Value};
use sam_plugin::source::{assistant, user, Batch, Discards, Example, Kind};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::analyze::{analyze, name_words, summary, Lang};

/// Read-only SQL access.
pub trait Db {
    fn tables(&self) -> Result<Vec<String>, String>;
    fn columns(&self, table: &str) -> Result<Vec<String>, String>;
    fn query(&self, sql: &str, params: &[Value]) -> Result<Rows, String>;
}

impl Db for sam_plugin::source::sqlite::Connection {
    fn tables(&self) -> Result<Vec<String>, String> {
        sam_plugin::source::sqlite::Connection::tables(self)
    }
    fn columns(&self, table: &str) -> Result<Vec<String>, String> {
        sam_plugin::source::sqlite::Connection::columns(self, table)
    }
    fn query(&self, sql: &str, params: &[Value]) -> Result<Rows, String> {
        sam_plugin::source::sqlite::Connection::query(self, sql, params)
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Columns {
    pub id: String,
    pub language: String,
    pub file_path: String,
    pub content: String,
    pub content_hash: String,
}

impl Default for Columns {
    fn default() -> Self {
        Columns {
            id: "id".into(),
            language: "language".into(),
            file_path: "file_path".into(),
            content: "content".into(),
            content_hash: "content_hash".into(),
        }
    }
}

/// An optional table of the places a snippet occurs.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Locations {
    pub table: String,
    /// Column holding the snippet's id.
    pub snippet_id: String,
    pub file_path: String,
    /// Optional line-number column ("" for none).
    pub line: String,
}

impl Default for Locations {
    fn default() -> Self {
        Locations { table: "locations".into(), snippet_id: "snippet_id".into(), file_path: "file_path".into(), line: "line".into() }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Path of the database file (absolute: the plugin cannot expand `~`); it must be granted
    /// with `grants.sqlite`.
    pub db: String,
    pub table: String,
    pub columns: Columns,
    /// Where the places of a snippet are listed. Without it (or when its table is missing),
    /// rows of `table` sharing a content hash are the places.
    pub locations: Option<Locations>,
    pub languages: Vec<String>,
    /// Rows read per query.
    pub page_size: u32,
    pub max_snippet_chars: usize,
    /// Places listed at most in a where-else answer.
    pub max_locations: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            db: String::new(),
            table: "snippets".into(),
            columns: Columns::default(),
            locations: None,
            languages: ["python", "rust", "javascript", "typescript", "vue", "swift", "bash"].map(String::from).to_vec(),
            page_size: 200,
            max_snippet_chars: 8000,
            max_locations: 20,
        }
    }
}

/// One snippet row.
#[derive(Clone, Debug)]
pub struct Snippet {
    pub id: Value,
    pub language: String,
    pub file_path: String,
    pub content: String,
    pub content_hash: String,
    /// Length of the stored content in characters (the content itself is not fetched when it is
    /// over `max_snippet_chars`, so that a page stays within the host's result cap).
    pub chars: i64,
}

/// One place a snippet occurs.
#[derive(Clone, Debug, PartialEq)]
pub struct Place {
    pub file_path: String,
    pub line: Option<i64>,
}

fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

fn text(v: &Value) -> String {
    match v {
        Value::Text(s) => s.clone(),
        Value::Integer(i) => i.to_string(),
        Value::Real(r) => r.to_string(),
        Value::Blob(b) => String::from_utf8_lossy(b).into_owned(),
        Value::Null => String::new(),
    }
}

fn to_json(v: &Value) -> serde_json::Value {
    match v {
        Value::Integer(i) => json!(i),
        Value::Real(r) => json!(r),
        Value::Null => serde_json::Value::Null,
        other => json!(text(other)),
    }
}

fn from_json(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Number(n) => n.as_i64().map(Value::Integer).unwrap_or_else(|| Value::Real(n.as_f64().unwrap_or(0.0))),
        serde_json::Value::String(s) => Value::Text(s.clone()),
        _ => Value::Null,
    }
}

/// The queries for one configured database, checked against its schema.
pub struct Queries {
    page_first: String,
    page_after: String,
    count_after: String,
    same_hash: String,
    locations: Option<String>,
    languages: Vec<Value>,
}

impl Queries {
    /// Checks that the configured table and columns exist; errors name the config key to set.
    pub fn new(db: &dyn Db, cfg: &Config) -> Result<Queries, String> {
        let tables = db.tables()?;
        if !tables.contains(&cfg.table) {
            return Err(format!(
                "code-dedup: table \"{}\" not found in {} (it has: {}); set config key `table`",
                cfg.table,
                cfg.db,
                if tables.is_empty() { "no tables".to_string() } else { tables.join(", ") }
            ));
        }
        let have = db.columns(&cfg.table)?;
        let c = &cfg.columns;
        for (key, col) in [
            ("id", &c.id),
            ("language", &c.language),
            ("file_path", &c.file_path),
            ("content", &c.content),
            ("content_hash", &c.content_hash),
        ] {
            if !have.contains(col) {
                return Err(format!(
                    "code-dedup: column \"{col}\" not found in table \"{}\" (it has: {}); set config key `columns.{key}`",
                    cfg.table,
                    have.join(", ")
                ));
            }
        }
        let mut languages: Vec<Value> = vec![];
        for l in &cfg.languages {
            let lang = Lang::parse(l).ok_or_else(|| format!("code-dedup: unsupported language {l:?} in `languages` (supported: python, rust, javascript, typescript, vue, swift, bash)"))?;
            languages.extend(lang.aliases().iter().map(|a| Value::Text(a.to_string())));
        }
        let t = quote(&cfg.table);
        let (id, lang) = (quote(&c.id), quote(&c.language));
        let content = quote(&c.content);
        let select = format!(
            "SELECT {id}, {lang}, {}, CASE WHEN length({content}) > {max} THEN '' ELSE {content} END, {}, length({content}) FROM {t}",
            quote(&c.file_path),
            quote(&c.content_hash),
            max = cfg.max_snippet_chars
        );
        let marks = |from: usize| (0..languages.len()).map(|i| format!("?{}", i + from)).collect::<Vec<_>>().join(", ");
        let page_first = format!("{select} WHERE lower({lang}) IN ({}) ORDER BY {id} LIMIT ?1", marks(2));
        let page_after = format!("{select} WHERE {id} > ?2 AND lower({lang}) IN ({}) ORDER BY {id} LIMIT ?1", marks(3));
        let count_after = format!("SELECT COUNT(*) FROM {t} WHERE ({id} > ?1 OR ?1 IS NULL) AND lower({lang}) IN ({})", marks(2));
        let same_hash =
            format!("SELECT {id}, {} FROM {t} WHERE {} = ?1 ORDER BY {id} LIMIT ?2", quote(&c.file_path), quote(&c.content_hash));
        let locations = match &cfg.locations {
            Some(l) if tables.contains(&l.table) => {
                let lcols = db.columns(&l.table)?;
                for (key, col) in [("locations.snippet_id", &l.snippet_id), ("locations.file_path", &l.file_path)] {
                    if !lcols.contains(col) {
                        return Err(format!(
                            "code-dedup: column \"{col}\" not found in table \"{}\" (it has: {}); set config key `{key}`",
                            l.table,
                            lcols.join(", ")
                        ));
                    }
                }
                let line = if !l.line.is_empty() && lcols.contains(&l.line) { quote(&l.line) } else { "NULL".into() };
                Some(format!(
                    "SELECT {}, {line} FROM {} WHERE {} = ?1 ORDER BY 1, 2 LIMIT ?2",
                    quote(&l.file_path),
                    quote(&l.table),
                    quote(&l.snippet_id)
                ))
            }
            Some(l) => return Err(format!(
                "code-dedup: locations table \"{}\" not found in {} (it has: {}); set config key `locations.table` or remove `locations`",
                l.table,
                cfg.db,
                tables.join(", ")
            )),
            None => None,
        };
        Ok(Queries { page_first, page_after, count_after, same_hash, locations, languages })
    }

    /// The next page of snippets after `after` (from the start when `None`).
    pub fn page(&self, db: &dyn Db, after: Option<&Value>, size: u32) -> Result<Vec<Snippet>, String> {
        let mut params = vec![Value::Integer(size as i64)];
        let sql = match after {
            Some(a) => {
                params.push(a.clone());
                &self.page_after
            }
            None => &self.page_first,
        };
        params.extend(self.languages.iter().cloned());
        let rows = db.query(sql, &params)?;
        Ok(rows
            .rows
            .into_iter()
            .filter(|r| r.len() >= 6)
            .map(|mut r| {
                let mut take = |i: usize| std::mem::replace(&mut r[i], Value::Null);
                let chars = match take(5) {
                    Value::Integer(n) => n,
                    _ => 0,
                };
                Snippet {
                    id: take(0),
                    language: text(&take(1)),
                    file_path: text(&take(2)),
                    content: text(&take(3)),
                    content_hash: text(&take(4)),
                    chars,
                }
            })
            .collect())
    }

    pub fn remaining(&self, db: &dyn Db, after: Option<&Value>) -> Result<u64, String> {
        let mut params = vec![after.cloned().unwrap_or(Value::Null)];
        params.extend(self.languages.iter().cloned());
        let rows = db.query(&self.count_after, &params)?;
        Ok(match rows.rows.first().and_then(|r| r.first()) {
            Some(Value::Integer(n)) => *n as u64,
            _ => 0,
        })
    }

    /// The ids and places of the rows sharing `s`'s content hash, smallest id first, plus the
    /// places listed for `s` in the locations table.
    pub fn places(&self, db: &dyn Db, s: &Snippet, max: u32) -> Result<(Option<Value>, Vec<Place>), String> {
        let mut places: Vec<Place> = vec![];
        let mut first = None;
        if !s.content_hash.is_empty() {
            let rows = db.query(&self.same_hash, &[Value::Text(s.content_hash.clone()), Value::Integer(max as i64)])?;
            for r in rows.rows {
                if first.is_none() {
                    first = r.first().cloned();
                }
                if let Some(p) = r.get(1) {
                    places.push(Place { file_path: text(p), line: None });
                }
            }
        }
        if let Some(sql) = &self.locations {
            let rows = db.query(sql, &[s.id.clone(), Value::Integer(max as i64)])?;
            for r in rows.rows {
                let line = match r.get(1) {
                    Some(Value::Integer(n)) => Some(*n),
                    _ => None,
                };
                places.push(Place { file_path: r.first().map(text).unwrap_or_default(), line });
            }
        }
        let mut unique: Vec<Place> = vec![];
        for p in places {
            if p.file_path.is_empty() {
                continue;
            }
            match unique.iter_mut().find(|u| u.file_path == p.file_path) {
                Some(u) => u.line = u.line.or(p.line),
                None => unique.push(p),
            }
        }
        unique.truncate(max as usize);
        Ok((first, unique))
    }
}

fn same_id(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Integer(x), Value::Integer(y)) => x == y,
        (Value::Text(x), Value::Text(y)) => x == y,
        (Value::Real(x), Value::Real(y)) => x == y,
        _ => false,
    }
}

/// The examples one snippet grounds, given the places it occurs; discards are counted when
/// nothing can be said.
pub fn examples_for(s: &Snippet, places: &[Place], db_name: &str, table: &str, cfg: &Config, discards: &mut Discards) -> Vec<Example> {
    let Some(lang) = Lang::parse(&s.language) else {
        discards.add("unsupported_language");
        return vec![];
    };
    if s.chars > cfg.max_snippet_chars as i64 || s.content.chars().count() > cfg.max_snippet_chars {
        discards.add("snippet_too_long");
        return vec![];
    }
    if s.content.trim().is_empty() {
        discards.add("empty_snippet");
        return vec![];
    }
    let a = analyze(lang, &s.content);
    let fence = |code: &str| format!("```{}\n{}\n```", lang.fence(), code.trim_end());
    let provenance = format!("{db_name}#{table}/{}", text(&s.id));
    let meta = |form: &str| {
        json!({
            "snippet_id": to_json(&s.id),
            "file_path": s.file_path,
            "language": lang.fence(),
            "content_hash": s.content_hash,
            "form": form,
            "function": a.function.as_ref().map(|f| f.name.clone()),
            "places": places.iter().map(|p| p.file_path.clone()).collect::<Vec<_>>(),
        })
        .to_string()
    };
    let example = |task: &str, prompt: String, answer: String| Example {
        kind: Kind::Chat,
        task: task.into(),
        messages: vec![user(prompt), assistant(answer)],
        rejected: None,
        provenance: provenance.clone(),
        metadata: meta(task),
    };
    let mut out = vec![];

    // The author's own explanation of the code.
    if let Some(doc) = &a.doc {
        let code_lines = a.code_without_doc.lines().filter(|l| !l.trim().is_empty()).count();
        if code_lines >= 2 {
            let where_ = if s.file_path.is_empty() { String::new() } else { format!(" from `{}`", s.file_path) };
            out.push(example(
                "explain-code",
                format!("Explain what this {} code{where_} does:\n\n{}", lang.display(), fence(&a.code_without_doc)),
                doc.clone(),
            ));
        }
    }

    // The function from its name, signature and (when documented) purpose.
    if let Some(f) = &a.function {
        let named = name_words(&f.name).len() >= 2;
        if f.body_lines >= 2 && (a.doc.is_some() || named) {
            let prompt = match &a.doc {
                Some(doc) => format!(
                    "Write a {} function `{}` for this purpose: {}\n\nSignature: `{}`",
                    lang.display(),
                    f.name,
                    summary(doc),
                    f.signature
                ),
                None => format!("Write the {} function `{}` ({}).", lang.display(), f.signature, name_words(&f.name).join(" ")),
            };
            out.push(example("write-function", prompt, fence(&f.text)));
        }
    }

    // Copies in several files: where they are and what to share.
    if places.len() >= 2 {
        let list = places
            .iter()
            .map(|p| match p.line {
                Some(l) => format!("- `{}` (line {l})", p.file_path),
                None => format!("- `{}`", p.file_path),
            })
            .collect::<Vec<_>>()
            .join("\n");
        let helper = match &a.function {
            Some(f) => format!(
                "Each copy defines `{}`. Keeping one `{}` in a module that these files import, and deleting the copies, removes the duplication.",
                f.name, f.name
            ),
            None => "Moving this block into one shared helper function that these files call removes the duplication.".to_string(),
        };
        out.push(example(
            "find-duplicates",
            format!(
                "This {} code occurs in more than one file of the codebase:\n\n{}\n\nWhere else does this pattern appear, and what shared helper could replace the copies?",
                lang.display(),
                fence(&s.content)
            ),
            format!("It appears in {} files:\n{list}\n\n{helper}", places.len()),
        ));
    }

    if out.is_empty() {
        discards.add("no_grounded_example");
    }
    out
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Checkpoint {
    v: u32,
    /// Id of the last snippet whose examples were all handed out.
    last_id: serde_json::Value,
}

pub struct CodeDedup<D: Db> {
    db: D,
    cfg: Config,
    queries: Queries,
    db_name: String,
    /// Last id fetched from the database, and last id whose examples were all handed out.
    fetched: Option<Value>,
    done_id: Option<Value>,
    rows: VecDeque<Snippet>,
    queue: VecDeque<(Example, Option<Value>)>,
    discards: Discards,
    exhausted: bool,
    remaining: u64,
    checkpoint_dirty: bool,
}

impl<D: Db> CodeDedup<D> {
    pub fn with_db(db: D, cfg: Config, checkpoint: Option<&str>) -> Result<Self, String> {
        let queries = Queries::new(&db, &cfg)?;
        let ckpt: Checkpoint = match checkpoint {
            None | Some("") => Checkpoint::default(),
            Some(s) => serde_json::from_str(s)
                .map_err(|e| format!("code-dedup: stored checkpoint is unreadable ({e}); reset this source's checkpoint"))?,
        };
        let last = match &ckpt.last_id {
            serde_json::Value::Null => None,
            v => Some(from_json(v)),
        };
        let remaining = queries.remaining(&db, last.as_ref())?;
        let db_name = cfg.db.rsplit('/').next().unwrap_or(&cfg.db).to_string();
        Ok(CodeDedup {
            db,
            cfg,
            queries,
            db_name,
            fetched: last.clone(),
            done_id: last,
            rows: VecDeque::new(),
            queue: VecDeque::new(),
            discards: Discards::default(),
            exhausted: false,
            remaining,
            checkpoint_dirty: false,
        })
    }

    /// Examples of the next snippet, each tagged with the snippet's id on its last example (so
    /// that the checkpoint advances when that one is handed out). `None` when done.
    fn next_snippet(&mut self) -> Result<Option<()>, String> {
        if self.rows.is_empty() {
            if self.exhausted {
                return Ok(None);
            }
            let page = self.queries.page(&self.db, self.fetched.as_ref(), self.cfg.page_size.max(1))?;
            if page.len() < self.cfg.page_size.max(1) as usize {
                self.exhausted = true;
            }
            if let Some(last) = page.last() {
                self.fetched = Some(last.id.clone());
            }
            self.rows.extend(page);
            if self.rows.is_empty() {
                return Ok(None);
            }
        }
        let s = self.rows.pop_front().expect("non-empty");
        self.remaining = self.remaining.saturating_sub(1);
        let (first, places) = self.queries.places(&self.db, &s, self.cfg.max_locations)?;
        let examples = match first {
            Some(f) if !same_id(&f, &s.id) => {
                // An exact copy of an earlier snippet: its examples came with that one.
                self.discards.add("duplicate_of_earlier_snippet");
                vec![]
            }
            _ => examples_for(&s, &places, &self.db_name, &self.cfg.table, &self.cfg, &mut self.discards),
        };
        if examples.is_empty() {
            self.done_id = Some(s.id);
            self.checkpoint_dirty = true;
        } else {
            let n = examples.len();
            for (i, e) in examples.into_iter().enumerate() {
                self.queue.push_back((e, (i + 1 == n).then(|| s.id.clone())));
            }
        }
        Ok(Some(()))
    }

    pub fn next_batch(&mut self, max: u32) -> Result<Option<Batch>, String> {
        let max = max.max(1) as usize;
        let mut examples = vec![];
        while examples.len() < max {
            if let Some((e, done)) = self.queue.pop_front() {
                examples.push(e);
                if let Some(id) = done {
                    self.done_id = Some(id);
                    self.checkpoint_dirty = true;
                }
                continue;
            }
            if self.next_snippet()?.is_none() {
                break;
            }
        }
        let discarded = self.discards.take();
        if examples.is_empty() && discarded.is_empty() && !self.checkpoint_dirty {
            return Ok(None);
        }
        self.checkpoint_dirty = false;
        let ckpt = Checkpoint { v: 1, last_id: self.done_id.as_ref().map(to_json).unwrap_or(serde_json::Value::Null) };
        Ok(Some(Batch { examples, discarded, checkpoint: Some(serde_json::to_string(&ckpt).map_err(|e| e.to_string())?) }))
    }

    pub fn remaining(&self) -> u64 {
        self.remaining + self.queue.len() as u64
    }
}

pub struct Plugin(CodeDedup<sam_plugin::source::sqlite::Connection>);

impl sam_plugin::Source for Plugin {
    fn open(config: serde_json::Value, checkpoint: Option<String>) -> Result<Self, String> {
        let cfg: Config = serde_json::from_value(config).map_err(|e| format!("code-dedup config: {e}"))?;
        if cfg.db.is_empty() {
            return Err("code-dedup config: set `db` to the database file's absolute path (and grant it with grants.sqlite)".into());
        }
        if cfg.db.starts_with('~') {
            return Err(format!(
                "code-dedup config: `db` = {:?}: use an absolute path (the plugin cannot expand ~), the same as in grants.sqlite",
                cfg.db
            ));
        }
        let db = sam_plugin::source::sqlite::Connection::open(&cfg.db).map_err(|e| format!("code-dedup: cannot open {}: {e}", cfg.db))?;
        CodeDedup::with_db(db, cfg, checkpoint.as_deref()).map(Plugin)
    }

    fn next(&mut self, max: u32) -> Result<Option<Batch>, String> {
        self.0.next_batch(max)
    }

    fn estimate(&self) -> Option<u64> {
        Some(self.0.remaining())
    }
}

sam_plugin::export_source!(Plugin);

#[cfg(test)]
mod tests;

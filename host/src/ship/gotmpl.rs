//! A small interpreter of the Go `text/template` subset Ollama chat templates use, to check what a
//! Modelfile's TEMPLATE renders without Ollama: text; `{{ .Field }}` and `{{ $.Field }}`;
//! `if` / `else if` / `else` / `end`; `range .Messages` (also `range $i, $m := .Messages`);
//! the functions `eq`, `ne`, `not`, `and`, `or`; string literals; `{{-` and `-}}` trimming.
//!
//! [`render_chat`] follows Ollama's chat handler: the model's SYSTEM is prepended as a system
//! message when the conversation has none; then system messages are collected into `.System`
//! (joined by a blank line) while staying in `.Messages`, and consecutive messages of one role
//! are merged (Ollama's `collate`).

use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("Go template: {0}")]
pub struct TemplateError(pub String);

type Result<T> = std::result::Result<T, TemplateError>;

fn err<T>(m: impl Into<String>) -> Result<T> {
    Err(TemplateError(m.into()))
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Text(String),
    Print(Expr),
    If(Vec<(Expr, Vec<Node>)>, Vec<Node>),
    Range(Expr, Vec<Node>),
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    /// `.A.B` (relative to the dot) or `$.A` (to the root).
    Field { root: bool, path: Vec<String> },
    Str(String),
    Call(String, Vec<Expr>),
}

/// A value a template sees.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    List(Vec<Value>),
    Map(BTreeMap<String, Value>),
    Bool(bool),
    Nil,
}

impl Value {
    fn truthy(&self) -> bool {
        match self {
            Value::Str(s) => !s.is_empty(),
            Value::List(l) => !l.is_empty(),
            Value::Map(m) => !m.is_empty(),
            Value::Bool(b) => *b,
            Value::Nil => false,
        }
    }

    fn text(&self) -> String {
        match self {
            Value::Str(s) => s.clone(),
            Value::Bool(b) => b.to_string(),
            Value::Nil => "<no value>".into(),
            other => format!("{other:?}"),
        }
    }
}

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    nodes: Vec<Node>,
}

enum Tok {
    Text(String),
    Action(String),
}

fn lex(src: &str) -> Result<Vec<Tok>> {
    let mut toks = Vec::new();
    let mut rest = src;
    let mut trim_next = false;
    while let Some(open) = rest.find("{{") {
        let mut text = &rest[..open];
        if trim_next {
            text = text.trim_start();
        }
        let after = &rest[open + 2..];
        let trim_before = after.starts_with("- ") || after.starts_with("-\n") || after.starts_with("-\t");
        if trim_before {
            text = text.trim_end();
        }
        if !text.is_empty() {
            toks.push(Tok::Text(text.to_string()));
        }
        let close = after.find("}}").ok_or_else(|| TemplateError("an action is not closed with }}".into()))?;
        let mut inner = &after[..close];
        if trim_before {
            inner = &inner[1..];
        }
        trim_next = inner.ends_with(" -") || inner.ends_with("\n-") || inner.ends_with("\t-");
        if trim_next {
            inner = &inner[..inner.len() - 1];
        }
        toks.push(Tok::Action(inner.trim().to_string()));
        rest = &after[close + 2..];
    }
    let text = if trim_next { rest.trim_start() } else { rest };
    if !text.is_empty() {
        toks.push(Tok::Text(text.to_string()));
    }
    Ok(toks)
}

fn words(s: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '"' {
            chars.next();
            let mut lit = String::from("\"");
            loop {
                match chars.next() {
                    Some('\\') => match chars.next() {
                        Some('n') => lit.push('\n'),
                        Some('t') => lit.push('\t'),
                        Some(x) => lit.push(x),
                        None => return err("unterminated string"),
                    },
                    Some('"') => break,
                    Some(x) => lit.push(x),
                    None => return err("unterminated string"),
                }
            }
            out.push(lit);
        } else if c == '(' || c == ')' {
            out.push(c.to_string());
            chars.next();
        } else {
            let mut w = String::new();
            while let Some(&x) = chars.peek() {
                if x.is_whitespace() || x == '(' || x == ')' {
                    break;
                }
                w.push(x);
                chars.next();
            }
            out.push(w);
        }
    }
    Ok(out)
}

fn parse_operand(ws: &[String], i: &mut usize) -> Result<Expr> {
    let w = ws.get(*i).ok_or_else(|| TemplateError("missing operand".into()))?.clone();
    *i += 1;
    if w == "(" {
        let e = parse_pipe(ws, i)?;
        if ws.get(*i).map(String::as_str) != Some(")") {
            return err("missing )");
        }
        *i += 1;
        return Ok(e);
    }
    if let Some(lit) = w.strip_prefix('"') {
        return Ok(Expr::Str(lit.to_string()));
    }
    if w == "." {
        return Ok(Expr::Field { root: false, path: vec![] });
    }
    if let Some(p) = w.strip_prefix("$.") {
        return Ok(Expr::Field { root: true, path: p.split('.').map(String::from).collect() });
    }
    if w == "$" {
        return Ok(Expr::Field { root: true, path: vec![] });
    }
    if let Some(p) = w.strip_prefix('.') {
        return Ok(Expr::Field { root: false, path: p.split('.').map(String::from).collect() });
    }
    if let Some(p) = w.strip_prefix('$') {
        // A range variable: only `$_`/`$m` bound to the element is supported, as the dot.
        let mut path: Vec<String> = p.split('.').map(String::from).collect();
        path.remove(0);
        return Ok(Expr::Field { root: false, path });
    }
    err(format!("unsupported operand {w:?}"))
}

fn parse_pipe(ws: &[String], i: &mut usize) -> Result<Expr> {
    let first = ws.get(*i).ok_or_else(|| TemplateError("empty action".into()))?;
    if matches!(first.as_str(), "eq" | "ne" | "not" | "and" | "or") {
        let name = first.clone();
        *i += 1;
        let mut args = Vec::new();
        while *i < ws.len() && ws[*i] != ")" {
            args.push(parse_operand(ws, i)?);
        }
        return Ok(Expr::Call(name, args));
    }
    parse_operand(ws, i)
}

fn parse_expr(s: &str) -> Result<Expr> {
    let ws = words(s)?;
    let mut i = 0;
    let e = parse_pipe(&ws, &mut i)?;
    if i != ws.len() {
        return err(format!("unsupported action {s:?}"));
    }
    Ok(e)
}

enum Stop {
    End,
    Else(Option<Expr>),
    Eof,
}

fn parse_list(toks: &[Tok], i: &mut usize) -> Result<(Vec<Node>, Stop)> {
    let mut nodes = Vec::new();
    while *i < toks.len() {
        let t = &toks[*i];
        *i += 1;
        match t {
            Tok::Text(s) => nodes.push(Node::Text(s.clone())),
            Tok::Action(a) if a.starts_with("/*") => {}
            Tok::Action(a) if a == "end" => return Ok((nodes, Stop::End)),
            Tok::Action(a) if a == "else" => return Ok((nodes, Stop::Else(None))),
            Tok::Action(a) if a.starts_with("else if ") => return Ok((nodes, Stop::Else(Some(parse_expr(&a[8..])?)))),
            Tok::Action(a) if a.starts_with("if ") => {
                let mut branches = vec![];
                let mut cond = parse_expr(&a[3..])?;
                let mut otherwise = vec![];
                loop {
                    let (body, stop) = parse_list(toks, i)?;
                    match stop {
                        Stop::End => {
                            branches.push((cond, body));
                            break;
                        }
                        Stop::Else(Some(next)) => {
                            branches.push((cond, body));
                            cond = next;
                        }
                        Stop::Else(None) => {
                            branches.push((cond, body));
                            let (body, stop) = parse_list(toks, i)?;
                            if !matches!(stop, Stop::End) {
                                return err("`else` without `end`");
                            }
                            otherwise = body;
                            break;
                        }
                        Stop::Eof => return err("`if` without `end`"),
                    }
                }
                nodes.push(Node::If(branches, otherwise));
            }
            Tok::Action(a) if a.starts_with("range ") => {
                let spec = &a[6..];
                let over = match spec.find(":=") {
                    Some(p) => &spec[p + 2..],
                    None => spec,
                };
                let (body, stop) = parse_list(toks, i)?;
                if !matches!(stop, Stop::End) {
                    return err("`range` without `end`");
                }
                nodes.push(Node::Range(parse_expr(over)?, body));
            }
            Tok::Action(a) => nodes.push(Node::Print(parse_expr(a)?)),
        }
    }
    Ok((nodes, Stop::Eof))
}

impl Template {
    pub fn parse(src: &str) -> Result<Template> {
        let toks = lex(src)?;
        let mut i = 0;
        let (nodes, stop) = parse_list(&toks, &mut i)?;
        match stop {
            Stop::Eof => Ok(Template { nodes }),
            _ => err("`end` or `else` without `if` / `range`"),
        }
    }

    /// Renders with `data` as the dot.
    pub fn render(&self, data: &Value) -> Result<String> {
        let mut out = String::new();
        exec(&self.nodes, data, data, &mut out)?;
        Ok(out)
    }
}

fn lookup(base: &Value, path: &[String]) -> Value {
    let mut v = base.clone();
    for p in path {
        v = match v {
            Value::Map(m) => m.get(p).cloned().unwrap_or(Value::Nil),
            _ => Value::Nil,
        };
    }
    v
}

fn eval(e: &Expr, dot: &Value, root: &Value) -> Result<Value> {
    Ok(match e {
        Expr::Field { root: r, path } => lookup(if *r { root } else { dot }, path),
        Expr::Str(s) => Value::Str(s.clone()),
        Expr::Call(name, args) => {
            let vals = args.iter().map(|a| eval(a, dot, root)).collect::<Result<Vec<_>>>()?;
            match (name.as_str(), vals.as_slice()) {
                ("eq", [a, rest @ ..]) if !rest.is_empty() => Value::Bool(rest.iter().any(|b| b == a)),
                ("ne", [a, b]) => Value::Bool(a != b),
                ("not", [a]) => Value::Bool(!a.truthy()),
                ("and", vs) if !vs.is_empty() => vs.iter().find(|v| !v.truthy()).unwrap_or(vs.last().expect("non-empty")).clone(),
                ("or", vs) if !vs.is_empty() => vs.iter().find(|v| v.truthy()).unwrap_or(vs.last().expect("non-empty")).clone(),
                _ => return err(format!("bad call of {name} with {} arguments", vals.len())),
            }
        }
    })
}

fn exec(nodes: &[Node], dot: &Value, root: &Value, out: &mut String) -> Result<()> {
    for n in nodes {
        match n {
            Node::Text(s) => out.push_str(s),
            Node::Print(e) => out.push_str(&eval(e, dot, root)?.text()),
            Node::If(branches, otherwise) => {
                let mut taken = false;
                for (cond, body) in branches {
                    if eval(cond, dot, root)?.truthy() {
                        exec(body, dot, root, out)?;
                        taken = true;
                        break;
                    }
                }
                if !taken {
                    exec(otherwise, dot, root, out)?;
                }
            }
            Node::Range(e, body) => {
                if let Value::List(items) = eval(e, dot, root)? {
                    for item in &items {
                        exec(body, item, root, out)?;
                    }
                }
            }
        }
    }
    Ok(())
}

/// Renders an Ollama chat `template` for `messages` ((role, content) pairs) the way Ollama's chat
/// endpoint does, with the Modelfile's `model_system` (SYSTEM) as default system prompt.
pub fn render_chat(template: &str, model_system: Option<&str>, messages: &[(String, String)]) -> Result<String> {
    let mut msgs: Vec<(String, String)> = messages.to_vec();
    if let Some(sys) = model_system.filter(|s| !s.is_empty()) {
        if msgs.first().is_none_or(|m| m.0 != "system") {
            msgs.insert(0, ("system".into(), sys.to_string()));
        }
    }
    // collate
    let mut system = Vec::new();
    let mut collated: Vec<(String, String)> = Vec::new();
    for (role, content) in msgs {
        if role == "system" {
            system.push(content.clone());
        }
        match collated.last_mut() {
            Some(last) if last.0 == role && role != "tool" => {
                last.1.push_str("\n\n");
                last.1.push_str(&content);
            }
            _ => collated.push((role, content)),
        }
    }
    let list = collated
        .into_iter()
        .map(|(r, c)| Value::Map(BTreeMap::from([("Role".to_string(), Value::Str(r)), ("Content".to_string(), Value::Str(c))])))
        .collect();
    let data = Value::Map(BTreeMap::from([
        ("System".to_string(), Value::Str(system.join("\n\n"))),
        ("Messages".to_string(), Value::List(list)),
        ("Prompt".to_string(), Value::Str(String::new())),
        ("Response".to_string(), Value::Str(String::new())),
    ]));
    Template::parse(template)?.render(&data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter().map(|(r, c)| (r.to_string(), c.to_string())).collect()
    }

    #[test]
    fn fields_if_range_and_trimming() {
        let t = "{{- if .System }}S:{{ .System }}\n{{ end }}{{- range .Messages }}{{ if ne .Role \"system\" }}{{ .Role }}={{ .Content }};{{ end }}{{ end -}}\n  END";
        let out = render_chat(t, None, &msgs(&[("system", "be"), ("user", "hi"), ("assistant", "yo")])).unwrap();
        assert_eq!(out, "S:be\nuser=hi;assistant=yo;END");
        let out = render_chat(t, Some("dflt"), &msgs(&[("user", "a"), ("user", "b")])).unwrap();
        assert_eq!(out, "S:dflt\nuser=a\n\nb;END");
    }

    #[test]
    fn else_if_and_functions() {
        let t = "{{ range $i, $m := .Messages }}{{ if eq .Role \"user\" }}U{{ else if or (eq .Role \"tool\") (eq .Role \"x\") }}T{{ else }}A{{ end }}{{ end }}{{ if and .System (not .Prompt) }}!{{ end }}";
        let out = render_chat(t, None, &msgs(&[("system", "s"), ("user", "1"), ("tool", "2"), ("assistant", "3")])).unwrap();
        assert_eq!(out, "AUTA!");
    }

    #[test]
    fn errors_are_reported() {
        assert!(Template::parse("{{ if .X }}no end").is_err());
        assert!(Template::parse("{{ .X ").is_err());
        assert!(Template::parse("{{ end }}").is_err());
        assert!(Template::parse("{{ printf \"%s\" .X }}").is_err());
    }
}

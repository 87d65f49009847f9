//! Python's text forms of template values, so a chat template prints what Jinja2 prints.
//!
//! Hugging Face renders chat templates with Jinja2, where `{{ x }}` is Python's `str(x)`
//! (`None`, `True`, `['a', 1]`, `1e+16`) and the `tojson` filter is `json.dumps(x,
//! ensure_ascii=False, …)` (`{"a": 1, "b": [1, 2]}`, with spaces after `,` and `:`).
//! minijinja's own forms differ (`none`, `true`, `["a", 1]`, compact JSON), and any
//! difference changes the tokens a model is trained on.

use minijinja::value::ValueKind;
use minijinja::Value;

/// Python's `str(value)`: strings as they are, everything else as `repr`.
pub fn py_str(value: &Value) -> String {
    match value.as_str() {
        Some(s) if value.kind() == ValueKind::String => s.to_string(),
        _ => {
            let mut out = String::new();
            py_repr(value, &mut out);
            out
        }
    }
}

/// Python's `repr(value)` for the JSON-like values templates see.
pub fn py_repr(value: &Value, out: &mut String) {
    match value.kind() {
        ValueKind::Undefined => {}
        ValueKind::None => out.push_str("None"),
        ValueKind::Bool => out.push_str(if value.is_true() { "True" } else { "False" }),
        ValueKind::Number => push_number(value, out, false),
        ValueKind::String => repr_string(value.as_str().unwrap_or_default(), out),
        ValueKind::Seq | ValueKind::Iterable => {
            out.push('[');
            for (i, item) in value.try_iter().into_iter().flatten().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                py_repr(&item, out);
            }
            out.push(']');
        }
        ValueKind::Map => {
            out.push('{');
            for (i, key) in value.try_iter().into_iter().flatten().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                py_repr(&key, out);
                out.push_str(": ");
                py_repr(&value.get_item(&key).unwrap_or_default(), out);
            }
            out.push('}');
        }
        _ => out.push_str(&value.to_string()),
    }
}

fn repr_string(s: &str, out: &mut String) {
    let quote = if s.contains('\'') && !s.contains('"') { '"' } else { '\'' };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push(quote);
}

/// Integers as they are; floats as Python's `repr(float)` (`1.0`, `0.0001`, `1e-05`, `1e+16`),
/// or in JSON as `json.dumps` writes them (`NaN`, `Infinity`).
fn push_number(value: &Value, out: &mut String, json: bool) {
    if value.is_integer() {
        out.push_str(&value.to_string());
        return;
    }
    match f64::try_from(value.clone()) {
        Ok(x) => out.push_str(&py_float(x, json)),
        Err(_) => out.push_str(&value.to_string()),
    }
}

/// `repr(x)` for a float: the shortest digits that read back as `x`, in positional notation
/// when the decimal exponent is in [-4, 16), else scientific with a signed two-digit exponent.
pub fn py_float(x: f64, json: bool) -> String {
    if x.is_nan() {
        return if json { "NaN" } else { "nan" }.into();
    }
    if x.is_infinite() {
        let s = if json { "Infinity" } else { "inf" };
        return if x < 0.0 { format!("-{s}") } else { s.into() };
    }
    // Rust's `{:e}` gives the shortest round-trip digits: "-1.2345e-5".
    let sci = format!("{x:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = mantissa.strip_prefix('-').map_or(("", mantissa), |m| ("-", m));
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if (-4..16).contains(&exp) {
        let point = exp + 1; // digits before the decimal point
        let body = if point <= 0 {
            format!("0.{}{}", "0".repeat((-point) as usize), digits)
        } else if point as usize >= digits.len() {
            format!("{}{}.0", digits, "0".repeat(point as usize - digits.len()))
        } else {
            format!("{}.{}", &digits[..point as usize], &digits[point as usize..])
        };
        format!("{sign}{body}")
    } else {
        let m = if digits.len() > 1 {
            format!("{}.{}", &digits[..1], &digits[1..])
        } else {
            digits
        };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{m}e{esign}{:02}", exp.abs())
    }
}

/// Options of HF's `tojson` filter, which is `json.dumps(x, ensure_ascii=False, indent=…,
/// separators=…, sort_keys=…)`.
#[derive(Debug, Clone, Default)]
pub struct JsonStyle {
    /// `None`: one line; `Some(s)`: newlines, each level indented by `s`.
    pub indent: Option<String>,
    /// (item, key) separators; default `(", ", ": ")`, or `(",", ": ")` with an indent.
    pub separators: Option<(String, String)>,
    pub sort_keys: bool,
}

/// `json.dumps(value, ensure_ascii=False, …)`.
pub fn py_json(value: &Value, style: &JsonStyle) -> String {
    let (item, key) = match &style.separators {
        Some((i, k)) => (i.clone(), k.clone()),
        None if style.indent.is_some() => (",".into(), ": ".into()),
        None => (", ".into(), ": ".into()),
    };
    let mut out = String::new();
    Dumper {
        style,
        item: &item,
        key: &key,
    }
    .dump(value, 0, &mut out);
    out
}

struct Dumper<'a> {
    style: &'a JsonStyle,
    item: &'a str,
    key: &'a str,
}

impl Dumper<'_> {
    fn newline(&self, level: usize, out: &mut String) {
        if let Some(ind) = &self.style.indent {
            out.push('\n');
            for _ in 0..level {
                out.push_str(ind);
            }
        }
    }

    fn dump(&self, value: &Value, level: usize, out: &mut String) {
        match value.kind() {
            ValueKind::Undefined | ValueKind::None => out.push_str("null"),
            ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
            ValueKind::Number => push_number(value, out, true),
            ValueKind::String => json_string(value.as_str().unwrap_or_default(), out),
            ValueKind::Seq | ValueKind::Iterable => {
                let items: Vec<Value> = value.try_iter().into_iter().flatten().collect();
                if items.is_empty() {
                    out.push_str("[]");
                    return;
                }
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(self.item);
                    }
                    self.newline(level + 1, out);
                    self.dump(v, level + 1, out);
                }
                self.newline(level, out);
                out.push(']');
            }
            ValueKind::Map => {
                let mut entries: Vec<(String, Value)> = value
                    .try_iter()
                    .into_iter()
                    .flatten()
                    .map(|k| {
                        let v = value.get_item(&k).unwrap_or_default();
                        (json_key(&k), v)
                    })
                    .collect();
                if self.style.sort_keys {
                    entries.sort_by(|a, b| a.0.cmp(&b.0));
                }
                if entries.is_empty() {
                    out.push_str("{}");
                    return;
                }
                out.push('{');
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push_str(self.item);
                    }
                    self.newline(level + 1, out);
                    json_string(k, out);
                    out.push_str(self.key);
                    self.dump(v, level + 1, out);
                }
                self.newline(level, out);
                out.push('}');
            }
            _ => json_string(&value.to_string(), out),
        }
    }
}

/// Python turns non-string keys into strings: `True` → "true", `None` → "null", 1 → "1".
fn json_key(k: &Value) -> String {
    match k.kind() {
        ValueKind::String => k.as_str().unwrap_or_default().to_string(),
        ValueKind::Bool => if k.is_true() { "true" } else { "false" }.into(),
        ValueKind::None | ValueKind::Undefined => "null".into(),
        ValueKind::Number => {
            let mut s = String::new();
            push_number(k, &mut s, true);
            s
        }
        _ => k.to_string(),
    }
}

/// A JSON string with `ensure_ascii=False`: only `"`, `\` and control characters are escaped.
fn json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_as_python_repr() {
        for (x, want) in [
            (1.0, "1.0"),
            (0.5, "0.5"),
            (-2.25, "-2.25"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (1e15, "1000000000000000.0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (123.456, "123.456"),
            (0.1, "0.1"),
            (0.0, "0.0"),
        ] {
            assert_eq!(py_float(x, false), want, "{x}");
        }
        assert_eq!(py_float(f64::NAN, true), "NaN");
        assert_eq!(py_float(f64::NEG_INFINITY, true), "-Infinity");
    }

    #[test]
    fn json_dumps_like_python() {
        let v: Value = serde_json::from_str(r#"{"b": [1, 2.0, "é\n"], "a": {"x": null, "y": true}, "e": []}"#).unwrap();
        assert_eq!(
            py_json(&v, &JsonStyle::default()),
            r#"{"b": [1, 2.0, "é\n"], "a": {"x": null, "y": true}, "e": []}"#
        );
        let sorted = JsonStyle {
            sort_keys: true,
            ..Default::default()
        };
        assert_eq!(
            py_json(&v, &sorted),
            r#"{"a": {"x": null, "y": true}, "b": [1, 2.0, "é\n"], "e": []}"#
        );
        let indented = JsonStyle {
            indent: Some("  ".into()),
            ..Default::default()
        };
        assert_eq!(
            py_json(&v, &indented),
            "{\n  \"b\": [\n    1,\n    2.0,\n    \"é\\n\"\n  ],\n  \"a\": {\n    \"x\": null,\n    \"y\": true\n  },\n  \"e\": []\n}"
        );
        assert_eq!(py_json(&Value::from("\u{1}<tag>&"), &JsonStyle::default()), "\"\\u0001<tag>&\"");
    }

    #[test]
    fn str_and_repr_like_python() {
        let v: Value = serde_json::from_str(r#"["it's", "a", 1, null, true, {"k": 1.5}]"#).unwrap();
        assert_eq!(py_str(&v), r#"["it's", 'a', 1, None, True, {'k': 1.5}]"#);
        assert_eq!(py_str(&Value::from("plain")), "plain");
        assert_eq!(py_str(&Value::from(())), "None");
    }
}

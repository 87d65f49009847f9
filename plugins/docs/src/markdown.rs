//! A markdown document → its title and sections, each with its own content as markdown.
//!
//! The parser is pulldown-cmark; a section's answer is re-assembled from the source text of its
//! top-level blocks (so code blocks, lists and tables keep their markdown), leaving out front
//! matter, HTML blocks, tables of contents and badge lines. Sections too small to stand alone are
//! merged into their parent under their own heading.

use pulldown_cmark::{Event, MetadataBlockKind, Options, Parser, Tag, TagEnd};

#[derive(Clone, Debug)]
pub struct Limits {
    /// A section whose content (with merged children) is shorter is merged into its parent, or
    /// dropped when it has none.
    pub min_section_chars: usize,
    /// A longer section is cut at a block boundary.
    pub max_answer_chars: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Section {
    /// Headings from the top of the document down to this section (the title excluded); empty
    /// for the text under the title.
    pub path: Vec<String>,
    /// `#anchor` of the section, as GitHub would make it (the title's anchor for the intro).
    pub anchor: String,
    pub content: String,
    /// Headings of small subsections merged into this one.
    pub merged: Vec<String>,
    pub truncated: bool,
}

#[derive(Debug, Default)]
pub struct Doc {
    pub title: String,
    pub sections: Vec<Section>,
    /// Sections left out, by reason.
    pub dropped: Vec<&'static str>,
}

struct RawSection {
    level: u8,
    path: Vec<String>,
    anchor: String,
    blocks: Vec<String>,
    children: Vec<usize>,
    toc: bool,
}

const TOC_HEADINGS: &[&str] = &["table of contents", "contents", "toc", "index", "content"];

/// Parses `text`. `fallback_title` is used when there is neither a front-matter `title` nor a
/// leading `# Title`.
pub fn parse(text: &str, fallback_title: &str, limits: &Limits) -> Doc {
    let opts = Options::ENABLE_TABLES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_FOOTNOTES
        | Options::ENABLE_HEADING_ATTRIBUTES
        | Options::ENABLE_YAML_STYLE_METADATA_BLOCKS
        | Options::ENABLE_PLUSES_DELIMITED_METADATA_BLOCKS;
    let mut title: Option<String> = None;
    let mut anchors = Anchors::default();
    let mut sections = vec![RawSection { level: 0, path: vec![], anchor: String::new(), blocks: vec![], children: vec![], toc: false }];
    let mut stack = vec![0usize];
    let mut seen_heading = false;

    let mut depth = 0usize;
    let mut block: Option<BlockScan> = None;
    for (event, range) in Parser::new_ext(text, opts).into_offset_iter() {
        match &event {
            Event::Start(tag) => {
                if depth == 0 {
                    block = Some(BlockScan::new(tag, range.clone()));
                }
                depth += 1;
            }
            Event::End(_) => depth = depth.saturating_sub(1),
            _ => {}
        }
        let Some(scan) = block.as_mut() else { continue };
        scan.see(&event);
        if depth > 0 {
            continue;
        }
        let scan = block.take().expect("scanned block");
        match scan.kind {
            BlockKind::Heading(level) => {
                let heading = scan.heading_text.trim().to_string();
                if heading.is_empty() {
                    continue;
                }
                if level == 1 && !seen_heading && title.is_none() {
                    sections[0].anchor = anchors.make(&heading);
                    title = Some(heading);
                    seen_heading = true;
                    continue;
                }
                seen_heading = true;
                while stack.len() > 1 && sections[*stack.last().expect("non-empty")].level >= level {
                    stack.pop();
                }
                let parent = *stack.last().expect("root stays");
                let mut path = sections[parent].path.clone();
                path.push(heading.clone());
                let toc = TOC_HEADINGS.contains(&heading.to_lowercase().as_str());
                sections.push(RawSection { level, path, anchor: anchors.make(&heading), blocks: vec![], children: vec![], toc });
                let id = sections.len() - 1;
                sections[parent].children.push(id);
                stack.push(id);
            }
            BlockKind::Metadata => {
                if title.is_none() {
                    title = front_matter_title(&scan.text);
                }
            }
            BlockKind::Drop => {}
            BlockKind::Content => {
                if scan.is_toc_or_badges() {
                    continue;
                }
                let src = text[scan.range.clone()].trim_end();
                if !src.trim().is_empty() {
                    let current = *stack.last().expect("root stays");
                    sections[current].blocks.push(src.to_string());
                }
            }
        }
    }

    let mut doc = Doc { title: title.unwrap_or_else(|| fallback_title.to_string()), ..Default::default() };
    let mut out = vec![];
    render(&sections, 0, limits, &mut out, &mut doc.dropped);
    // `render` pushes children before their parent; present the document's order.
    out.sort_by_key(|(i, _)| *i);
    doc.sections = out.into_iter().map(|(_, s)| s).collect();
    doc
}

/// Renders section `i`: its blocks, then each small child under its heading. Children big
/// enough stand alone (pushed to `out`). Returns the content pieces of `i` and merged headings.
fn render(
    sections: &[RawSection],
    i: usize,
    limits: &Limits,
    out: &mut Vec<(usize, Section)>,
    dropped: &mut Vec<&'static str>,
) -> (Vec<String>, Vec<String>) {
    let s = &sections[i];
    let mut pieces: Vec<String> = if s.toc { vec![] } else { s.blocks.clone() };
    let mut merged = vec![];
    for &c in &s.children {
        let (child, child_merged) = render(sections, c, limits, out, dropped);
        if child.is_empty() {
            continue;
        }
        let chars: usize = child.iter().map(|p| p.chars().count()).sum();
        let child_section = &sections[c];
        if chars < limits.min_section_chars && (i != 0 || !s.blocks.is_empty()) {
            let heading = child_section.path.last().cloned().unwrap_or_default();
            pieces.push(format!("{} {}", "#".repeat(child_section.level.max(2) as usize), heading));
            pieces.extend(child);
            merged.push(heading);
            merged.extend(child_merged);
        } else {
            emit(sections, c, child, child_merged, limits, out, dropped);
        }
    }
    if i == 0 && !pieces.is_empty() {
        emit(sections, 0, pieces.clone(), merged.clone(), limits, out, dropped);
    }
    (pieces, merged)
}

fn emit(
    sections: &[RawSection],
    i: usize,
    pieces: Vec<String>,
    merged: Vec<String>,
    limits: &Limits,
    out: &mut Vec<(usize, Section)>,
    dropped: &mut Vec<&'static str>,
) {
    let chars: usize = pieces.iter().map(|p| p.chars().count()).sum();
    if chars < limits.min_section_chars {
        dropped.push("section_too_short");
        return;
    }
    let mut content = String::new();
    let mut truncated = false;
    for p in &pieces {
        if !content.is_empty() && content.chars().count() + p.chars().count() + 2 > limits.max_answer_chars {
            truncated = true;
            break;
        }
        if !content.is_empty() {
            content.push_str("\n\n");
        }
        content.push_str(p);
    }
    if content.chars().count() > limits.max_answer_chars {
        dropped.push("section_too_long");
        return;
    }
    let s = &sections[i];
    out.push((i, Section { path: s.path.clone(), anchor: s.anchor.clone(), content, merged, truncated }));
}

#[derive(Debug, PartialEq)]
enum BlockKind {
    Heading(u8),
    Metadata,
    Drop,
    Content,
}

/// What is seen inside one top-level block.
struct BlockScan {
    kind: BlockKind,
    range: std::ops::Range<usize>,
    heading_text: String,
    text: String,
    link_depth: usize,
    internal_links: usize,
    images: usize,
    loose_text: usize,
}

impl BlockScan {
    fn new(tag: &Tag, range: std::ops::Range<usize>) -> Self {
        let kind = match tag {
            Tag::Heading { level, .. } => BlockKind::Heading(*level as u8),
            Tag::MetadataBlock(MetadataBlockKind::YamlStyle | MetadataBlockKind::PlusesStyle) => BlockKind::Metadata,
            Tag::HtmlBlock => BlockKind::Drop,
            _ => BlockKind::Content,
        };
        BlockScan {
            kind,
            range,
            heading_text: String::new(),
            text: String::new(),
            link_depth: 0,
            internal_links: 0,
            images: 0,
            loose_text: 0,
        }
    }

    fn see(&mut self, event: &Event) {
        match event {
            Event::Start(Tag::Link { dest_url, .. }) => {
                self.link_depth += 1;
                if dest_url.starts_with('#') {
                    self.internal_links += 1;
                }
            }
            Event::Start(Tag::Image { .. }) => {
                self.link_depth += 1;
                self.images += 1;
            }
            Event::End(TagEnd::Link | TagEnd::Image) => self.link_depth = self.link_depth.saturating_sub(1),
            Event::Text(t) | Event::Code(t) => {
                if matches!(self.kind, BlockKind::Heading(_)) {
                    if matches!(event, Event::Code(_)) {
                        self.heading_text.push_str(&format!("`{t}`"));
                    } else {
                        self.heading_text.push_str(t);
                    }
                }
                if matches!(self.kind, BlockKind::Metadata) {
                    self.text.push_str(t);
                }
                if self.link_depth == 0 {
                    self.loose_text += t.chars().filter(|c| c.is_alphanumeric()).count();
                    if matches!(t.trim(), "[TOC]" | "[[_TOC_]]" | "{:toc}" | "[[TOC]]") {
                        self.internal_links += 2;
                    }
                }
            }
            _ => {}
        }
    }

    /// A list of in-page links, a `[TOC]` marker, or a line of badge images.
    fn is_toc_or_badges(&self) -> bool {
        let toc_marker = self.internal_links >= 2 && self.loose_text == 0;
        let badges = self.images > 0 && self.loose_text == 0;
        toc_marker || badges
    }
}

/// `title:` of YAML front matter or `title =` of TOML front matter.
fn front_matter_title(meta: &str) -> Option<String> {
    meta.lines().find_map(|l| {
        let l = l.trim();
        let rest = l.strip_prefix("title:").or_else(|| l.strip_prefix("title =")).or_else(|| l.strip_prefix("title="))?;
        let t = rest.trim().trim_matches(|c| c == '"' || c == '\'').trim();
        (!t.is_empty()).then(|| t.to_string())
    })
}

/// GitHub-style heading anchors, unique within a document.
#[derive(Default)]
struct Anchors(Vec<String>);

impl Anchors {
    fn make(&mut self, heading: &str) -> String {
        let base: String = heading
            .to_lowercase()
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                _ => None,
            })
            .collect();
        let n = self.0.iter().filter(|a| **a == base).count();
        self.0.push(base.clone());
        if n == 0 {
            base
        } else {
            format!("{base}-{n}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits { min_section_chars: 40, max_answer_chars: 400 }
    }

    #[test]
    fn sections_with_code_kept_and_front_matter_toc_html_dropped() {
        let md = "---\ntitle: \"Store guide\"\nauthor: x\n---\n\n[![ci](https://x/badge.svg)](https://x)\n\n<!-- toc -->\n- [Setup](#setup)\n- [Usage](#usage)\n<!-- tocstop -->\n\nThe store keeps every example in one SQLite file.\n\n## Setup\n\nCreate the database with the init command:\n\n```sh\nbrain init\n```\n\n## Usage\n\nThe store is used by every command of the tool, always.\n";
        let doc = parse(md, "fallback", &limits());
        assert_eq!(doc.title, "Store guide");
        let paths: Vec<Vec<String>> = doc.sections.iter().map(|s| s.path.clone()).collect();
        assert_eq!(paths, vec![vec![], vec!["Setup".to_string()], vec!["Usage".to_string()]]);
        assert_eq!(doc.sections[0].content, "The store keeps every example in one SQLite file.");
        assert_eq!(doc.sections[1].content, "Create the database with the init command:\n\n```sh\nbrain init\n```");
        assert_eq!(doc.sections[1].anchor, "setup");
        assert!(!doc.sections.iter().any(|s| s.content.contains("toc") || s.content.contains("badge") || s.content.contains("author")));
    }

    #[test]
    fn tiny_sections_merge_into_their_parent() {
        let md = "# Tool\n\nIntro text that is long enough to stand on its own here.\n\n## Install\n\nInstalling needs a few words of explanation first.\n\n### Linux\n\napt install x\n\n### macOS\n\nbrew install x\n\n## Contents\n\n- [Install](#install)\n- [Linux](#linux)\n";
        let doc = parse(md, "fallback", &limits());
        assert_eq!(doc.title, "Tool");
        assert_eq!(doc.sections.len(), 2, "{:#?}", doc.sections);
        let install = &doc.sections[1];
        assert_eq!(install.path, vec!["Install".to_string()]);
        assert_eq!(install.merged, vec!["Linux".to_string(), "macOS".to_string()]);
        assert_eq!(
            install.content,
            "Installing needs a few words of explanation first.\n\n### Linux\n\napt install x\n\n### macOS\n\nbrew install x"
        );
        assert_eq!(doc.sections[0].anchor, "tool");
    }

    #[test]
    fn long_sections_are_cut_at_block_boundaries_and_short_docs_dropped() {
        let para = "word ".repeat(30);
        let md = format!("## Big\n\n{para}\n\n{para}\n\n{para}\n\n{para}\n\n## Small\n\nhi\n");
        let doc = parse(&md, "f", &limits());
        assert_eq!(doc.title, "f");
        assert_eq!(doc.sections.len(), 1);
        assert!(doc.sections[0].truncated);
        assert!(doc.sections[0].content.chars().count() <= 400);
        assert_eq!(doc.dropped, vec!["section_too_short"]);
    }

    #[test]
    fn deeply_nested_markdown_is_fine() {
        let md = format!("# Deep\n\n{}deep quote text that goes on for a while\n\n{}- item\n", ">".repeat(5000), "  ".repeat(3000));
        let doc = parse(&md, "f", &Limits { min_section_chars: 10, max_answer_chars: 100_000 });
        assert_eq!(doc.title, "Deep");
        assert_eq!(doc.sections.len(), 1);
        let headings = (1..=6).map(|l| format!("{} h{l}\n\ntext of level {l} which is long enough\n", "#".repeat(l))).collect::<String>();
        let doc = parse(&headings, "f", &Limits { min_section_chars: 10, max_answer_chars: 100_000 });
        assert_eq!(doc.sections.last().unwrap().path.len(), 5);
    }

    #[test]
    fn duplicate_anchors_are_numbered() {
        let md = "## Example\n\nfirst example text long enough to keep\n\n## Example\n\nsecond example text long enough to keep\n";
        let doc = parse(md, "f", &Limits { min_section_chars: 10, max_answer_chars: 1000 });
        let anchors: Vec<&str> = doc.sections.iter().map(|s| s.anchor.as_str()).collect();
        assert_eq!(anchors, vec!["example", "example-1"]);
    }
}

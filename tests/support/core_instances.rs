//! Hostile components made from a healthy one: more core instances appended to its binary, each
//! bringing its own memories or tables (what a multi-module component can do whatever language it
//! is written in). Hand-encoded: a component is a header and a list of (id, size, payload)
//! sections, and appended core module (id 1) and core instance (id 2) sections are valid anywhere.

/// Appends `v` as an unsigned LEB128 number.
fn leb(mut v: usize, out: &mut Vec<u8>) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        out.push(if v == 0 { byte } else { byte | 0x80 });
        if v == 0 {
            return;
        }
    }
}

/// Appends a binary section: its id, its size, its payload.
fn section(id: u8, payload: &[u8], out: &mut Vec<u8>) {
    out.push(id);
    leb(payload.len(), out);
    out.extend_from_slice(payload);
}

/// `component` with `n` more core instances of `module` appended: each instance brings the
/// module's own memories and tables into the plugin's store at instantiation, however the
/// component's own code is written.
pub fn with_core_instances(component: &[u8], module: &[u8], n: usize) -> Vec<u8> {
    // The new module's index is the number of core modules the component defines at top level.
    let (mut at, mut modules) = (8, 0);
    while at < component.len() {
        let id = component[at];
        let (mut size, mut shift) = (0usize, 0);
        at += 1;
        loop {
            let b = component[at];
            at += 1;
            size |= ((b & 0x7f) as usize) << shift;
            shift += 7;
            if b & 0x80 == 0 {
                break;
            }
        }
        modules += usize::from(id == 1);
        at += size;
    }
    let mut out = component.to_vec();
    section(1, module, &mut out);
    let mut instances = Vec::new();
    leb(n, &mut instances);
    for _ in 0..n {
        instances.push(0x00); // instantiate
        leb(modules, &mut instances);
        instances.push(0x00); // with no arguments
    }
    section(2, &instances, &mut out);
    out
}

/// A core module with one memory of `memory_pages` and/or one funcref table of `table_elements`.
pub fn core_module(memory_pages: Option<usize>, table_elements: Option<usize>) -> Vec<u8> {
    let mut m = b"\0asm\x01\0\0\0".to_vec();
    if let Some(elements) = table_elements {
        let mut body = vec![0x01, 0x70, 0x00];
        leb(elements, &mut body);
        section(4, &body, &mut m);
    }
    if let Some(pages) = memory_pages {
        let mut body = vec![0x01, 0x00];
        leb(pages, &mut body);
        section(5, &body, &mut m);
    }
    m
}

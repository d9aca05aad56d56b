//! The layering of `policy/src` and `host/src`: no import circles. A file imports another by a
//! path that starts with `crate::`, `super::` or `self::` (in a `use` or in the code); a file
//! that declares a module (`mod x;`) is above it and may use it freely, so that edge is not
//! followed. Two checks on what is left, outside `#[cfg(test)]` items:
//!
//! - between files: no file reaches itself through the files it imports;
//! - within each folder: its files and subfolders, each taken whole, import each other in no
//!   circle either (a subfolder that imports a sibling file that imports the subfolder is one,
//!   even when no single file is on both sides).

use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The crates whose sources are checked, as their `src` folders relative to the workspace root.
const CRATES: [&str; 2] = ["policy/src", "host/src"];

/// A module path below the crate root: `["store", "tokens"]` for `store/tokens.rs`.
type ModPath = Vec<String>;

/// Fails naming every circle found, with the files on it.
pub fn check(root: &Path) -> Result<()> {
    let mut circles = Vec::new();
    for src in CRATES {
        let graph = Graph::read(&root.join(src))?;
        for circle in graph.file_circles() {
            circles.push(format!(
                "{src}: the files {} import each other",
                circle.join(", ")
            ));
        }
        for (folder, circle) in graph.folder_circles() {
            let folder = if folder.is_empty() {
                src.to_string()
            } else {
                format!("{src}/{folder}")
            };
            circles.push(format!(
                "in {folder}: {} import each other",
                circle.join(", ")
            ));
        }
    }
    if !circles.is_empty() {
        bail!(
            "import circles (a file may import only what lies beneath it):\n  {}",
            circles.join("\n  ")
        );
    }
    println!("no import circles in {}", CRATES.join(" or "));
    Ok(())
}

/// The files of one crate and what each imports.
struct Graph {
    files: BTreeMap<ModPath, PathBuf>,
    edges: BTreeMap<ModPath, BTreeSet<ModPath>>,
}

impl Graph {
    fn read(src: &Path) -> Result<Graph> {
        let mut files = BTreeMap::new();
        for path in rust_files(src)? {
            if let Some(module) = module_path(src, &path) {
                files.insert(module, path);
            }
        }
        let mut code_of = BTreeMap::new();
        let mut test_only = Vec::new();
        for (module, path) in &files {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let code = code_only(&text);
            test_only.extend(test_modules(&code).into_iter().map(|name| {
                let mut child = module.clone();
                child.push(name);
                child
            }));
            code_of.insert(module.clone(), without_test_items(&code));
        }
        files.retain(|module, _| !test_only.iter().any(|t| module.starts_with(t)));
        let mut edges: BTreeMap<ModPath, BTreeSet<ModPath>> = BTreeMap::new();
        for module in files.keys() {
            let Some(code) = code_of.get(module) else {
                continue;
            };
            for target in imported_paths(code) {
                let Some(absolute) = resolve(module, &target) else {
                    continue;
                };
                let Some(file) = longest_file(&files, &absolute) else {
                    continue;
                };
                let declared_here = file.len() == module.len() + 1 && file.starts_with(module);
                if file != *module && !declared_here {
                    edges.entry(module.clone()).or_default().insert(file);
                }
            }
        }
        Ok(Graph { files, edges })
    }

    /// The strongly connected groups of more than one file, each as a closed walk of names.
    fn file_circles(&self) -> Vec<Vec<String>> {
        let nodes: Vec<ModPath> = self.files.keys().cloned().collect();
        components(&nodes, &self.edges)
            .into_iter()
            .map(|group| group.iter().map(name).collect())
            .collect()
    }

    /// For each folder, the groups of its direct entries (files and subfolders) in a circle.
    fn folder_circles(&self) -> Vec<(String, Vec<String>)> {
        let folders: BTreeSet<ModPath> = self
            .files
            .keys()
            .filter_map(|m| m.split_last().map(|(_, parent)| parent.to_vec()))
            .collect();
        let mut out = Vec::new();
        for folder in folders {
            let entry = |m: &ModPath| -> Option<ModPath> {
                if !m.starts_with(&folder) {
                    return None;
                }
                Some(
                    m.get(folder.len())
                        .map_or_else(Vec::new, |s| vec![s.clone()]),
                )
            };
            let mut units = BTreeSet::new();
            let mut edges: BTreeMap<ModPath, BTreeSet<ModPath>> = BTreeMap::new();
            for module in self.files.keys() {
                units.extend(entry(module));
            }
            for (from, tos) in &self.edges {
                let Some(a) = entry(from) else { continue };
                for to in tos {
                    match entry(to) {
                        Some(b) if b != a => {
                            edges.entry(a.clone()).or_default().insert(b);
                        }
                        _ => {}
                    }
                }
            }
            let units: Vec<ModPath> = units.into_iter().collect();
            for group in components(&units, &edges) {
                let names = group
                    .iter()
                    .map(|u| {
                        u.first()
                            .map_or("(the folder's own file)".into(), Clone::clone)
                    })
                    .collect();
                out.push((folder.join("/"), names));
            }
        }
        out
    }
}

/// A module's name as the circles print it.
fn name(module: &ModPath) -> String {
    if module.is_empty() {
        "lib".to_string()
    } else {
        module.join("::")
    }
}

/// Every `.rs` file below `src`, except the binary's `main.rs` beside a `lib.rs`.
fn rust_files(src: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut pending = vec![src.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?
        {
            let path = entry
                .with_context(|| format!("reading {}", dir.display()))?
                .path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The module a file holds: `lib.rs` the root, `x/mod.rs` and `x.rs` the module `x`.
fn module_path(src: &Path, file: &Path) -> Option<ModPath> {
    let rel = file.strip_prefix(src).ok()?.with_extension("");
    let mut parts: ModPath = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    match parts.as_slice() {
        [only] if only == "main" => return None,
        [only] if only == "lib" => return Some(Vec::new()),
        _ => {}
    }
    if parts.last().is_some_and(|l| l == "mod") {
        parts.pop();
    }
    Some(parts)
}

/// A `crate::`, `super::` or `self::` path made absolute from the module that names it.
fn resolve(module: &ModPath, path: &[String]) -> Option<ModPath> {
    let mut rest = path;
    let mut base = match rest.first().map(String::as_str) {
        Some("crate") => {
            rest = rest.get(1..)?;
            Vec::new()
        }
        Some("super" | "self") => module.clone(),
        _ => return None,
    };
    while let Some(first) = rest.first() {
        match first.as_str() {
            "super" => {
                base.pop()?;
            }
            "self" => {}
            _ => break,
        }
        rest = rest.get(1..)?;
    }
    base.extend(rest.iter().filter(|s| *s != "*" && *s != "self").cloned());
    Some(base)
}

/// The file whose module is the longest prefix of `path`.
fn longest_file(files: &BTreeMap<ModPath, PathBuf>, path: &[String]) -> Option<ModPath> {
    (0..=path.len())
        .rev()
        .filter_map(|n| path.get(..n))
        .find(|prefix| files.contains_key(*prefix))
        .map(<[String]>::to_vec)
}

/// Every path that starts with `crate`, `super` or `self` and goes on with `::`, in the code
/// and in `use` trees (expanded: `use crate::{a, b::c}` names `crate::a` and `crate::b::c`).
fn imported_paths(code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    let mut at = 0;
    while at < bytes.len() {
        let starts_word = bytes.get(at).is_some_and(|b| is_ident(*b))
            && (at == 0
                || bytes
                    .get(at - 1)
                    .is_some_and(|b| !is_ident(*b) && *b != b':'));
        if !starts_word {
            at += 1;
            continue;
        }
        let word_end = (at..bytes.len())
            .find(|i| bytes.get(*i).is_none_or(|b| !is_ident(*b)))
            .unwrap_or(bytes.len());
        let word = code.get(at..word_end).unwrap_or_default();
        if word == "use" {
            let end = code
                .get(word_end..)
                .and_then(|r| r.find(';'))
                .map_or(bytes.len(), |e| word_end + e);
            let tree = without_renames(code.get(word_end..end).unwrap_or_default());
            out.extend(expand_use(&tree));
            at = end;
            continue;
        }
        if matches!(word, "crate" | "super" | "self")
            && code.get(word_end..).is_some_and(|r| r.starts_with("::"))
        {
            let mut end = word_end;
            while code.get(end..).is_some_and(|r| r.starts_with("::")) {
                let next = end + 2;
                let seg_end = (next..bytes.len())
                    .find(|i| bytes.get(*i).is_none_or(|b| !is_ident(*b)))
                    .unwrap_or(bytes.len());
                if seg_end == next {
                    break;
                }
                end = seg_end;
            }
            let path = code.get(at..end).unwrap_or_default();
            out.push(path.split("::").map(str::to_string).collect());
            at = end;
            continue;
        }
        at = word_end;
    }
    out
}

/// Whether the character before `i` continues an identifier (other than a byte string's `b`).
fn ident_before(chars: &[char], i: usize) -> bool {
    let Some(before) = i.checked_sub(1).and_then(|p| chars.get(p)) else {
        return false;
    };
    let continues = |c: &char| c.is_alphanumeric() || *c == '_';
    if *before == 'b' {
        return i
            .checked_sub(2)
            .and_then(|p| chars.get(p))
            .is_some_and(continues);
    }
    continues(before)
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// A `use` tree without white space and without its renames: `a::{b as c, d}` gives
/// `a::{b,d}`.
fn without_renames(tree: &str) -> String {
    let mut out = String::new();
    let mut words = tree.split_whitespace();
    while let Some(word) = words.next() {
        if word == "as" {
            let rename = words.next().unwrap_or_default();
            out.push_str(rename.trim_start_matches(|c: char| c.is_alphanumeric() || c == '_'));
        } else {
            out.push_str(word);
        }
    }
    out
}

/// The paths of a `use` tree written without white space: `a::{b,c::{d,e}}` gives `a::b`,
/// `a::c::d`, `a::c::e`.
fn expand_use(tree: &str) -> Vec<Vec<String>> {
    let tree = tree.strip_prefix("::").unwrap_or(tree);
    let mut out = Vec::new();
    let mut stack: Vec<Vec<String>> = vec![Vec::new()];
    let mut current = String::new();
    let flush = |current: &mut String, stack: &[Vec<String>], out: &mut Vec<Vec<String>>| {
        if !current.is_empty() {
            let mut path = stack.last().cloned().unwrap_or_default();
            path.extend(
                current
                    .split("::")
                    .filter(|s| !s.is_empty())
                    .map(str::to_string),
            );
            // `a::{self, b}` names `a` itself.
            if path.len() > 1 && path.last().is_some_and(|s| s == "self") {
                path.pop();
            }
            out.push(path);
            current.clear();
        }
    };
    for c in tree.chars() {
        match c {
            '{' => {
                let mut prefix = stack.last().cloned().unwrap_or_default();
                prefix.extend(
                    current
                        .split("::")
                        .filter(|s| !s.is_empty())
                        .map(str::to_string),
                );
                stack.push(prefix);
                current.clear();
            }
            '}' => {
                flush(&mut current, &stack, &mut out);
                stack.pop();
            }
            ',' => flush(&mut current, &stack, &mut out),
            _ => current.push(c),
        }
    }
    flush(&mut current, &stack, &mut out);
    out
}

/// The source with comments, string and character literals blanked (new lines kept).
fn code_only(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    while let Some(&c) = chars.get(i) {
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while chars.get(i).is_some_and(|c| *c != '\n') {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while let Some(&c) = chars.get(i) {
                let n = chars.get(i + 1).copied();
                if c == '/' && n == Some('*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if c == '*' && n == Some('/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(c));
                    i += 1;
                }
            }
        } else if c == 'r' && matches!(next, Some('"' | '#')) && !ident_before(&chars, i) {
            // A raw string: r"…" or r#"…"#, any number of #.
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                match chars.get(j) {
                    None => break,
                    Some('"') if (1..=hashes).all(|k| chars.get(j + k) == Some(&'#')) => {
                        j += 1 + hashes;
                        break;
                    }
                    _ => j += 1,
                }
            }
            for k in i..j {
                out.push(chars.get(k).copied().map_or(' ', blank));
            }
            i = j;
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while let Some(&c) = chars.get(i) {
                out.push(blank(c));
                i += 1;
                if c == '\\' {
                    out.push(chars.get(i).copied().map_or(' ', blank));
                    i += 1;
                } else if c == '"' {
                    break;
                }
            }
        } else if c == '\'' {
            // A character literal ('x', '\n', '\u{1F600}'), else a lifetime or label.
            let close = if next == Some('\\') {
                (i + 3..i + 13).find(|k| chars.get(*k) == Some(&'\''))
            } else {
                Some(i + 2).filter(|k| chars.get(*k) == Some(&'\''))
            };
            match close {
                Some(end) => {
                    for _ in i..=end {
                        out.push(' ');
                    }
                    i = end + 1;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// The modules declared in their own files under `#[cfg(test)]` (`#[cfg(test)] mod tests;`):
/// tests, left out like the items under it.
fn test_modules(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (at, _) in code.match_indices("#[cfg(test)]") {
        let mut words = code
            .get(at + "#[cfg(test)]".len()..)
            .unwrap_or_default()
            .split_whitespace();
        let mut word = words.next().unwrap_or_default();
        if word.starts_with("pub") {
            word = words.next().unwrap_or_default();
        }
        if word == "mod" {
            if let Some(name) = words.next().and_then(|n| n.strip_suffix(';')) {
                out.push(name.to_string());
            }
        }
    }
    out
}

/// The code with every item under `#[cfg(test)]` blanked: the attribute, then up to the end
/// of the item (a `;` or `,` outside brackets, or the `}` that closes its first block).
fn without_test_items(code: &str) -> String {
    const MARK: &str = "#[cfg(test)]";
    let mut out = code.as_bytes().to_vec();
    let mut from = 0;
    while let Some(found) = code.get(from..).and_then(|r| r.find(MARK)) {
        let start = from + found;
        let mut i = start + MARK.len();
        let mut depth = 0usize;
        while let Some(&b) = code.as_bytes().get(i) {
            match b {
                b'(' | b'[' => depth += 1,
                b')' | b']' => depth = depth.saturating_sub(1),
                b';' | b',' if depth == 0 => break,
                b'}' if depth == 0 => {
                    i = i.saturating_sub(1);
                    break;
                }
                b'{' if depth == 0 => {
                    let mut braces = 0usize;
                    while let Some(&b) = code.as_bytes().get(i) {
                        match b {
                            b'{' => braces += 1,
                            b'}' => {
                                braces -= 1;
                                if braces == 0 {
                                    break;
                                }
                            }
                            _ => {}
                        }
                        i += 1;
                    }
                    break;
                }
                _ => {}
            }
            i += 1;
        }
        for b in out.iter_mut().take(i + 1).skip(start) {
            if *b != b'\n' {
                *b = b' ';
            }
        }
        from = i + 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Tarjan's strongly connected components of more than one node, each sorted.
fn components(
    nodes: &[ModPath],
    edges: &BTreeMap<ModPath, BTreeSet<ModPath>>,
) -> Vec<Vec<ModPath>> {
    struct Walk<'a> {
        edges: &'a BTreeMap<ModPath, BTreeSet<ModPath>>,
        index: BTreeMap<ModPath, usize>,
        low: BTreeMap<ModPath, usize>,
        stack: Vec<ModPath>,
        on_stack: BTreeSet<ModPath>,
        out: Vec<Vec<ModPath>>,
    }
    impl Walk<'_> {
        fn visit(&mut self, v: &ModPath) {
            let n = self.index.len();
            self.index.insert(v.clone(), n);
            self.low.insert(v.clone(), n);
            self.stack.push(v.clone());
            self.on_stack.insert(v.clone());
            let empty = BTreeSet::new();
            let edges = self.edges;
            for w in edges.get(v).unwrap_or(&empty) {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low.get(w).copied().unwrap_or(n);
                    self.low.entry(v.clone()).and_modify(|l| *l = (*l).min(lw));
                } else if self.on_stack.contains(w) {
                    let iw = self.index.get(w).copied().unwrap_or(n);
                    self.low.entry(v.clone()).and_modify(|l| *l = (*l).min(iw));
                }
            }
            if self.low.get(v) == self.index.get(v) {
                let mut group = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(&w);
                    let done = w == *v;
                    group.push(w);
                    if done {
                        break;
                    }
                }
                if group.len() > 1 {
                    group.sort();
                    self.out.push(group);
                }
            }
        }
    }
    let mut walk = Walk {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in nodes {
        if !walk.index.contains_key(v) {
            walk.visit(v);
        }
    }
    walk.out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(code: &str) -> Vec<String> {
        imported_paths(&without_test_items(&code_only(code)))
            .into_iter()
            .map(|p| p.join("::"))
            .collect()
    }

    #[test]
    fn use_trees_are_expanded_and_comments_and_strings_are_not_read() {
        let code = r#"
            use crate::{a::B, c::{self, d::E as F}};
            // use crate::commented;
            const S: &str = "crate::in_a_string";
            fn f() { super::g::h(); }
        "#;
        assert_eq!(
            paths(code),
            ["crate::a::B", "crate::c", "crate::c::d::E", "super::g::h"]
        );
    }

    #[test]
    fn test_items_are_not_read() {
        let code = "enum E { A, #[cfg(test)] B(crate::x::Y), C }\n#[cfg(test)]\nmod tests { use crate::z; }\nuse crate::w;";
        assert_eq!(paths(code), ["crate::w"]);
    }

    #[test]
    fn a_circle_through_two_files_is_found_and_a_declared_child_is_not_one() {
        let src = tempdir();
        std::fs::create_dir_all(src.join("store")).unwrap();
        let write = |p: &str, t: &str| std::fs::write(src.join(p), t).unwrap();
        write("lib.rs", "mod store; mod state;");
        write("store/mod.rs", "mod tokens; use tokens::T; pub struct S;");
        write("store/tokens.rs", "use super::S; pub struct T;");
        write("state.rs", "use crate::store::S;");
        let graph = Graph::read(&src);
        let graph = graph.as_ref().map_err(|e| e.to_string());
        assert_eq!(graph.map(|g| g.file_circles().len()), Ok(0));
        write(
            "store/tokens.rs",
            "use super::S; use crate::state::X; pub struct T;",
        );
        let graph = Graph::read(&src).map_err(|e| e.to_string());
        assert_eq!(graph.as_ref().map(|g| g.file_circles().len()), Ok(0));
        let folders = graph.map(|g| g.folder_circles()).unwrap_or_default();
        assert_eq!(
            folders,
            [(
                String::new(),
                vec!["state".to_string(), "store".to_string()]
            )]
        );
        write("state.rs", "use crate::store::tokens::T;");
        let graph = Graph::read(&src).map_err(|e| e.to_string());
        assert_eq!(
            graph.map(|g| g.file_circles()),
            Ok(vec![vec!["state".to_string(), "store::tokens".to_string()]])
        );
    }

    fn tempdir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-layers-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}

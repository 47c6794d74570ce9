//! The crate's layers, as `src/lib.rs` draws them, hold in the code: each module
//! names only the modules below it (`crate::<module>` paths), and inside `server/`
//! the folders import one way (event_loop/ runs frontend/, both count in
//! operations/). A new import that points up fails here with the line that does it.
//! Test code may reach any layer (the replication simulator drives the node
//! facade): a file its parent declares under `#[cfg(test)]`, and a file's inline
//! `#[cfg(test)] mod tests`, are not read.

use std::path::{Path, PathBuf};

/// Each part of `src/` and the parts of the crate it may name. Everything may name
/// itself; `main.rs` and `lib.rs` are the top and may name anything.
const LAYERS: &[(&str, &[&str])] = &[
    ("number.rs", &[]),
    ("store_mode.rs", &[]),
    ("tls.rs", &[]),
    ("protocol", &["number", "store_mode"]),
    ("store", &["number", "store_mode"]),
    ("replication", &["store", "tls"]),
    ("node.rs", &["store", "replication"]),
    ("server", &["node", "number", "protocol", "replication", "store", "store_mode", "tls"]),
    ("ffi", &["node", "number", "protocol", "server", "store", "store_mode", "tls"]),
];

/// The folders of `server/` and the sibling folders each may name.
const SERVER_FOLDERS: &[(&str, &[&str])] = &[
    ("config", &[]),
    ("operations", &[]),
    ("frontend", &["operations"]),
    ("event_loop", &["frontend", "operations", "config"]),
];

fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            files.extend(sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// Every `crate::<name>` (or `crate::server::<name>`, with `under` = "server") that a
/// line of `text` names, with the line.
fn named<'t>(text: &'t str, under: &str) -> Vec<(&'t str, &'t str)> {
    let prefix = if under.is_empty() { "crate::".to_string() } else { format!("crate::{under}::") };
    let mut found = Vec::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find(&prefix) {
            let after = &rest[at + prefix.len()..];
            let end = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(after.len());
            found.push((&after[..end], line.trim()));
            rest = &after[end..];
        }
    }
    found
}

/// The code of `file` that ships: none when its parent declares it under
/// `#[cfg(test)]`, else all but an inline test module at its end.
fn shipped_code(file: &Path) -> String {
    let text = std::fs::read_to_string(file).expect("read");
    let stem = file.file_stem().and_then(|s| s.to_str()).expect("a name");
    let dir = file.parent().expect("a folder");
    let parent = if stem == "mod" { dir.with_extension("rs") } else { dir.join("mod.rs") };
    let declared_for_tests = |parent: &Path| {
        std::fs::read_to_string(parent).is_ok_and(|p| p.contains(&format!("#[cfg(test)]\nmod {stem};")))
    };
    if stem != "mod" && (declared_for_tests(&parent) || declared_for_tests(&dir.with_extension("rs"))) {
        return String::new();
    }
    match text.find("#[cfg(test)]\nmod tests {") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

fn stem(part: &str) -> &str {
    part.strip_suffix(".rs").unwrap_or(part)
}

#[test]
fn every_module_names_only_the_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut upward = Vec::new();
    for file in sources(&src) {
        let relative = file.strip_prefix(&src).expect("under src");
        let part = relative.components().next().expect("a part").as_os_str().to_str().expect("utf-8");
        if part == "main.rs" || part == "lib.rs" || part == "service.rs" {
            continue;
        }
        let (_, allowed) = LAYERS
            .iter()
            .find(|(name, _)| *name == part)
            .unwrap_or_else(|| panic!("{part} is in no layer of this test: add it where lib.rs draws it"));
        let text = shipped_code(&file);
        for (name, line) in named(&text, "") {
            if name != stem(part) && !allowed.contains(&name) {
                upward.push(format!("{}: names crate::{name}: {line}", relative.display()));
            }
        }
        // `super::super` reaches past a module's parent, around these rules.
        assert!(!text.contains("super::super"), "{}: use a crate:: path, not super::super", relative.display());
    }
    assert!(upward.is_empty(), "imports that point up:\n{}", upward.join("\n"));
}

#[test]
fn the_server_folders_import_one_way() {
    let server = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/server");
    let mut backward = Vec::new();
    for (folder, allowed) in SERVER_FOLDERS {
        for file in sources(&server.join(folder)) {
            let text = shipped_code(&file);
            for (name, line) in named(&text, "server") {
                let is_folder = SERVER_FOLDERS.iter().any(|(other, _)| *other == name);
                if is_folder && name != *folder && !allowed.contains(&name) {
                    backward.push(format!("{}: names crate::server::{name}: {line}", file.display()));
                }
            }
        }
    }
    assert!(backward.is_empty(), "imports between server/'s folders that point back:\n{}", backward.join("\n"));
}

#[test]
fn test_code_is_left_out_and_shipped_code_is_read() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    assert_eq!(shipped_code(&src.join("replication/simulator.rs")), "", "declared under #[cfg(test)]");
    let link = shipped_code(&src.join("replication/link.rs"));
    assert!(link.contains("pub struct LinkRunner") && !link.contains("mod tests"), "its inline tests are cut");
    assert!(shipped_code(&src.join("replication/mod.rs")).contains("pub mod link;"));
}

#[test]
fn the_checks_see_what_they_check() {
    // The scanner finds a path mid-line and ignores one in a comment.
    let text = "use crate::store::{Store};\nlet x = crate::server::config::X; // crate::ffi\n";
    assert_eq!(named(text, "").iter().map(|(name, _)| *name).collect::<Vec<_>>(), ["store", "server"]);
    assert_eq!(named(text, "server").iter().map(|(name, _)| *name).collect::<Vec<_>>(), ["config"]);
}

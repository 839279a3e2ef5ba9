//! Conventions checked over every Rust source file of the workspace (`crates/*/src`,
//! `tests`, `examples`, `benches`):
//!
//! - every file opens with a module doc comment (`//!`) that says what it is for;
//! - one module-file style: `foo.rs` next to a `foo/` folder, never `foo/mod.rs`
//!   (except `tests/common/mod.rs`, Cargo's way to share code between test binaries
//!   without making it a test binary itself).
//! - the CLI (`crates/cli/src`) prints to stdout only through `outln!`/`out!`, which
//!   return the write's error: `println!` panics when the reader has gone
//!   (`gantry version --json | grep -q ...`), and a panic is exit 101, not a quiet 0.

use std::path::{Path, PathBuf};

/// Files not yet held to the rules, relative to the workspace root (none today; a
/// file that must wait says why here).
const ALLOWED: &[&str] = &[];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().nth(2).expect("crates/tidy is two levels down").to_path_buf()
}

/// Every `.rs` file under the crates' source, test, example and bench folders.
fn rust_files() -> Vec<PathBuf> {
    let root = workspace_root();
    let mut files = Vec::new();
    for krate in std::fs::read_dir(root.join("crates")).expect("crates/ is readable") {
        let krate = krate.expect("crates/ entry").path();
        for folder in ["src", "tests", "examples", "benches"] {
            walk(&krate.join(folder), &mut files);
        }
    }
    files.sort();
    assert!(files.len() > 50, "found only {} files: is the walk right?", files.len());
    files
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            walk(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn relative(path: &Path) -> String {
    path.strip_prefix(workspace_root()).unwrap_or(path).to_string_lossy().replace('\\', "/")
}

fn allowed(path: &Path) -> bool {
    ALLOWED.contains(&relative(path).as_str())
}

#[test]
fn every_source_file_opens_with_a_module_doc_comment() {
    let missing: Vec<String> = rust_files()
        .into_iter()
        .filter(|f| !allowed(f))
        .filter(|f| {
            let text = std::fs::read_to_string(f).expect("source is UTF-8");
            !text.trim_start().starts_with("//!")
        })
        .map(|f| relative(&f))
        .collect();
    assert!(
        missing.is_empty(),
        "these files do not open with a `//!` module doc saying what they are for:\n{}",
        missing.join("\n")
    );
}

#[test]
fn modules_with_children_are_foo_rs_not_foo_mod_rs() {
    let mod_rs: Vec<String> = rust_files()
        .into_iter()
        .filter(|f| f.file_name().is_some_and(|n| n == "mod.rs"))
        .filter(|f| !allowed(f))
        .map(|f| relative(&f))
        .filter(|f| !f.contains("/tests/common/"))
        .collect();
    assert!(mod_rs.is_empty(), "use `foo.rs` next to `foo/` instead of `foo/mod.rs`:\n{}", mod_rs.join("\n"));
}

#[test]
fn the_cli_never_prints_to_stdout_with_println() {
    let cli_src = workspace_root().join("crates/cli/src");
    let offenders: Vec<String> = rust_files()
        .into_iter()
        .filter(|f| f.starts_with(&cli_src) && !f.ends_with("output.rs"))
        .flat_map(|f| {
            let text = std::fs::read_to_string(&f).expect("source is UTF-8");
            let file = relative(&f);
            text.lines()
                .enumerate()
                .filter(|(_, line)| {
                    let code = line.split("//").next().unwrap_or_default();
                    // `eprintln!`/`eprint!` end in the same letters; only stdout is checked.
                    code.match_indices("print").any(|(i, _)| {
                        let before = code[..i].chars().last();
                        before != Some('e') && (code[i..].starts_with("println!(") || code[i..].starts_with("print!("))
                    })
                })
                .map(move |(n, _)| format!("{file}:{}", n + 1))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        offenders.is_empty(),
        "print to stdout with `outln!`/`out!` and `?` (println! panics on a closed pipe):\n{}",
        offenders.join("\n")
    );
}

#[test]
fn the_allow_list_names_only_files_that_exist() {
    for file in ALLOWED {
        assert!(workspace_root().join(file).exists(), "{file} is allow-listed but gone: remove it from ALLOWED");
    }
}

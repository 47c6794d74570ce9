//! Builds `bindings/c/test.c` against `include/stickless.h` and the cdylib cargo built
//! for these tests, and runs it under valgrind: every check of the C host passes and
//! no memory is definitely or indirectly lost. The header also compiles as C++.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The cdylib cargo built with these tests: in `target/<profile>/deps/` beside them
/// (where `cargo test` leaves it), or copied up to `target/<profile>/` by a build.
fn library() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let deps = exe.parent().expect("target/<profile>/deps");
    let candidates = [deps.join("libstickless.so"), deps.parent().expect("target/<profile>").join("libstickless.so")];
    candidates
        .iter()
        .find(|path| path.exists())
        .cloned()
        .unwrap_or_else(|| panic!("no libstickless.so in {candidates:?}"))
}

fn run(command: &mut Command) -> String {
    let output = command.output().unwrap_or_else(|e| panic!("{command:?}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{command:?} failed ({}):\n{text}", output.status);
    text
}

#[test]
fn c_host_passes_every_check_under_valgrind() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let library = library();
    // The library's SONAME is libstickless.so.1: the link records that name.
    let lib_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("c-host");
    std::fs::create_dir_all(&lib_dir).unwrap();
    for name in ["libstickless.so", "libstickless.so.1"] {
        let link = lib_dir.join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&library, &link).unwrap();
    }
    let program = lib_dir.join("test");
    run(Command::new("gcc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-D_DEFAULT_SOURCE", "-I"])
        .arg(root.join("include"))
        .arg(root.join("bindings/c/test.c"))
        .arg("-L")
        .arg(&lib_dir)
        .arg("-lstickless")
        .arg(format!("-Wl,-rpath,{}", lib_dir.display()))
        .arg("-o")
        .arg(&program));
    let output = run(Command::new("valgrind")
        .args(["-q", "--child-silent-after-fork=yes", "--leak-check=full"])
        .args(["--errors-for-leak-kinds=definite,indirect", "--error-exitcode=3"])
        .arg(&program));
    assert!(output.contains("ok\n"), "{output}");
}

#[test]
fn header_compiles_as_cpp() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    run(Command::new("g++")
        .args(["-std=c++17", "-fsyntax-only", "-Wall", "-Werror", "-x", "c++"])
        .arg(root.join("include/stickless.h")));
}

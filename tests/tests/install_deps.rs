//! `scripts/install-deps.sh` finds libclang exactly as RocksDB's bindgen (clang-sys) does, so a
//! fresh machine that ships only `libclang-cpp.so.14` (a different library) gets `libclang-dev`
//! installed before cargo starts (issue 15: the old `ldconfig -p | grep libclang` took that
//! file for libclang, and the first build failed after minutes of compiling).
//!
//! The script runs in `--dry-run` mode with its search pointed at a temporary tree
//! (`DOLMEN_DEPS_ROOT` prefixes clang-sys's fixed directories; `llvm-config`, `LIBCLANG_PATH`,
//! `LD_LIBRARY_PATH` and `LIBRARY_PATH` are taken away), so nothing is installed and the
//! machine's own libclang does not hide the case under test. The browser the console's test
//! needs (`chromium`, `chromedriver`) is checked with `command -v`: the libclang cases point
//! `DOLMEN_CHROMIUM`/`DOLMEN_CHROMEDRIVER` at a program that exists so that a machine without
//! a browser does not change their report, and the browser's own case confines `PATH` to a
//! temporary folder holding only the tools the script calls.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository's `scripts/install-deps.sh`.
fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/install-deps.sh")
}

/// Where `name` is on this process's `PATH`.
fn which(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("expected `{name}` on PATH ({})", path.to_string_lossy()))
}

/// The bash that runs the script.
fn bash() -> PathBuf {
    which("bash")
}

/// Writes a file that starts like a shared library: ELF magic, then `class` (2 = 64-bit).
fn fake_library(path: &Path, class: u8) {
    fs::create_dir_all(path.parent().expect("a parent")).expect("create the library folder");
    let mut bytes = vec![0x7f, b'E', b'L', b'F', class];
    bytes.resize(64, 0);
    fs::write(path, bytes).expect("write the fake library");
}

/// Runs the script's dry run with its search confined to `root` (and `libclang_path`, if any).
fn dry_run(root: &Path, libclang_path: Option<&Path>) -> Output {
    let mut cmd = Command::new(bash());
    cmd.arg(script())
        .arg("--dry-run")
        .env("DOLMEN_DEPS_ROOT", root)
        .env("LLVM_CONFIG_PATH", root.join("no-llvm-config"))
        .env_remove("LIBCLANG_PATH")
        .env_remove("LD_LIBRARY_PATH")
        .env_remove("LIBRARY_PATH")
        // The browser is not under test here: whatever this machine has, it counts as present.
        .env("DOLMEN_CHROMIUM", bash())
        .env("DOLMEN_CHROMEDRIVER", bash());
    if let Some(path) = libclang_path {
        cmd.env("LIBCLANG_PATH", path);
    }
    cmd.output().expect("run scripts/install-deps.sh")
}

/// Everything the script printed, both streams.
fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn assert_would_install_libclang(out: &Output) {
    let text = text(out);
    assert!(out.status.success(), "dry run failed: {text}");
    assert!(
        text.contains("would install libclang-dev"),
        "expected the dry run to install libclang-dev, it printed: {text}"
    );
    assert!(
        text.contains("apt-get install -y libclang-dev"),
        "expected the report to name the install command, it printed: {text}"
    );
}

fn assert_libclang_found(out: &Output, file: &str) {
    let text = text(out);
    assert!(out.status.success(), "dry run failed: {text}");
    assert!(
        !text.contains("libclang-dev"),
        "expected libclang to count as present, it printed: {text}"
    );
    assert!(
        text.contains(file),
        "expected the report to name {file}, it printed: {text}"
    );
}

#[test]
fn libclang_cpp_alone_is_not_libclang_and_libclang_dev_would_be_installed() {
    let root = tempfile::tempdir().expect("temp dir");
    // What the base image ships: the C++ interface library, in the multiarch and LLVM folders.
    fake_library(
        &root
            .path()
            .join("usr/lib/x86_64-linux-gnu/libclang-cpp.so.14"),
        2,
    );
    fake_library(
        &root.path().join("usr/lib/llvm-14/lib/libclang-cpp.so.14"),
        2,
    );
    assert_would_install_libclang(&dry_run(root.path(), None));
}

#[test]
fn a_versioned_libclang_in_the_multiarch_folder_counts_as_present() {
    let root = tempfile::tempdir().expect("temp dir");
    fake_library(
        &root
            .path()
            .join("usr/lib/x86_64-linux-gnu/libclang-cpp.so.14"),
        2,
    );
    // What libclang1-14 installs: clang-sys accepts `libclang-*.so.*` at run time.
    fake_library(
        &root
            .path()
            .join("usr/lib/x86_64-linux-gnu/libclang-14.so.1"),
        2,
    );
    assert_libclang_found(&dry_run(root.path(), None), "libclang-14.so.1");
}

#[test]
fn a_libclang_that_is_not_a_64_bit_elf_file_does_not_count() {
    let root = tempfile::tempdir().expect("temp dir");
    // A 32-bit library and a text file with the right name: clang-sys refuses both.
    fake_library(&root.path().join("usr/lib32/libclang.so.1"), 1);
    let text_file = root.path().join("usr/lib/llvm-14/lib/libclang.so");
    fs::create_dir_all(text_file.parent().expect("a parent")).expect("mkdir");
    fs::write(&text_file, "INPUT(libclang-14.so.1)\n").expect("write");
    assert_would_install_libclang(&dry_run(root.path(), None));
}

#[test]
fn libclang_path_is_honoured_as_a_folder_or_a_file() {
    let root = tempfile::tempdir().expect("temp dir");
    let elsewhere = tempfile::tempdir().expect("temp dir");
    let lib = elsewhere.path().join("libclang.so");
    fake_library(&lib, 2);
    assert_libclang_found(&dry_run(root.path(), Some(elsewhere.path())), "libclang.so");
    assert_libclang_found(&dry_run(root.path(), Some(&lib)), "libclang.so");
    // LIBCLANG_PATH replaces the search: a folder without libclang means it is missing.
    let empty = tempfile::tempdir().expect("temp dir");
    fake_library(&root.path().join("usr/lib/libclang.so"), 2);
    assert_would_install_libclang(&dry_run(root.path(), Some(empty.path())));
}

#[test]
fn check_mode_fails_naming_the_package_and_unknown_arguments_are_refused() {
    let root = tempfile::tempdir().expect("temp dir");
    let out = Command::new("bash")
        .arg(script())
        .arg("--check")
        .env("DOLMEN_DEPS_ROOT", root.path())
        .env("LLVM_CONFIG_PATH", root.path().join("no-llvm-config"))
        .env_remove("LIBCLANG_PATH")
        .env_remove("LD_LIBRARY_PATH")
        .env_remove("LIBRARY_PATH")
        .output()
        .expect("run scripts/install-deps.sh --check");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("missing libclang-dev"),
        "{}",
        text(&out)
    );

    let out = Command::new("bash")
        .arg(script())
        .arg("--frobnicate")
        .output()
        .expect("run scripts/install-deps.sh --frobnicate");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--frobnicate"), "{}", text(&out));
}

/// A folder to be the whole `PATH` of the script: the tools its dry run calls (`od`, `tr`,
/// `head`, `grep`, `dirname`) linked from this machine, and `true` standing in for the
/// toolchain (`c++`, `cc`, `cargo`, whose `fmt`/`clippy --version` then succeed), so that the
/// only thing missing is what the caller leaves out.
fn confined_path(extra: &[&str]) -> tempfile::TempDir {
    let bin = tempfile::tempdir().expect("temp dir");
    for tool in ["od", "tr", "head", "grep", "dirname"] {
        std::os::unix::fs::symlink(which(tool), bin.path().join(tool)).expect("link a tool");
    }
    for stand_in in ["c++", "cc", "cargo"].iter().chain(extra) {
        std::os::unix::fs::symlink(which("true"), bin.path().join(stand_in)).expect("link true");
    }
    bin
}

/// The dry run (`--tests` too when `tests`) with `PATH` = `bin` only, libclang present in a
/// temporary tree, and no browser override.
fn dry_run_on_path(bin: &Path, tests: bool) -> Output {
    let root = tempfile::tempdir().expect("temp dir");
    fake_library(&root.path().join("usr/lib/libclang.so"), 2);
    Command::new(bash())
        .arg(script())
        .arg("--dry-run")
        .args(tests.then_some("--tests"))
        .env("PATH", bin)
        .env("DOLMEN_DEPS_ROOT", root.path())
        .env("LLVM_CONFIG_PATH", root.path().join("no-llvm-config"))
        .env_remove("LIBCLANG_PATH")
        .env_remove("LD_LIBRARY_PATH")
        .env_remove("LIBRARY_PATH")
        .env_remove("CC")
        .env_remove("CXX")
        .env_remove("DOLMEN_CHROMIUM")
        .env_remove("DOLMEN_CHROMEDRIVER")
        .output()
        .expect("run scripts/install-deps.sh --dry-run")
}

#[test]
fn chromium_and_its_driver_missing_from_path_would_be_installed() {
    let bin = confined_path(&[]);
    let out = dry_run_on_path(bin.path(), true);
    let text = text(&out);
    assert!(out.status.success(), "dry run failed: {text}");
    // Exactly the two browser packages: everything else the script checks is present.
    assert!(
        text.contains("missing chromium chromium-driver;")
            && text.contains("apt-get install -y chromium chromium-driver")
            && text.contains("would install chromium chromium-driver\n"),
        "expected the dry run to install exactly chromium and chromium-driver, it printed: {text}"
    );

    // Without --tests (`make run`), no browser is needed.
    let out = dry_run_on_path(bin.path(), false);
    assert!(
        self::text(&out).contains("all prerequisites present"),
        "expected no browser without --tests: {}",
        self::text(&out)
    );

    // One of the two present: only the other one is installed.
    let bin = confined_path(&["chromium"]);
    let text_one = self::text(&dry_run_on_path(bin.path(), true));
    assert!(
        text_one.contains("would install chromium-driver\n"),
        "expected only chromium-driver to be missing, it printed: {text_one}"
    );

    // Both present (on PATH, or where DOLMEN_CHROMIUM / DOLMEN_CHROMEDRIVER say): nothing to do.
    let bin = confined_path(&["chromium", "chromedriver"]);
    let text_both = self::text(&dry_run_on_path(bin.path(), true));
    assert!(
        text_both.contains("all prerequisites present"),
        "expected every prerequisite to be present, it printed: {text_both}"
    );
    let bin = confined_path(&[]);
    let out = Command::new(bash())
        .arg(script())
        .args(["--check", "--tests"])
        .env("PATH", bin.path())
        .env("DOLMEN_CHROMIUM", which("true"))
        .env("DOLMEN_CHROMEDRIVER", bin.path().join("no-chromedriver"))
        .env("LLVM_CONFIG_PATH", bin.path().join("no-llvm-config"))
        .env("LIBCLANG_PATH", bin.path())
        .env_remove("CC")
        .env_remove("CXX")
        .output()
        .expect("run scripts/install-deps.sh --check");
    let text_env = self::text(&out);
    assert_eq!(out.status.code(), Some(1), "{text_env}");
    assert!(
        text_env.contains("missing libclang-dev chromium-driver;"),
        "expected DOLMEN_CHROMIUM to count and DOLMEN_CHROMEDRIVER to be missing: {text_env}"
    );
}

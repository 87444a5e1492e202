//! Where the `dolmen` binary under test lives: `DOLMEN_BIN`, else next to the test binary.

use std::path::PathBuf;

/// Path of the `dolmen` binary to start.
///
/// `DOLMEN_BIN` wins when set. Otherwise the binary is `<target>/<profile>/dolmen`, derived from
/// the running test executable, which cargo places in `<target>/<profile>/deps/`.
///
/// # Panics
/// When the binary does not exist, with the command that builds it.
pub fn dolmen_bin() -> PathBuf {
    let path = match std::env::var_os("DOLMEN_BIN") {
        Some(p) => PathBuf::from(p),
        None => {
            let exe = std::env::current_exe().expect("current_exe() of the test binary");
            let deps = exe.parent().expect("test binary has a parent directory");
            let profile = if deps.file_name().is_some_and(|n| n == "deps") {
                deps.parent()
                    .expect("deps/ has a parent (the profile directory)")
            } else {
                deps
            };
            profile.join(format!("dolmen{}", std::env::consts::EXE_SUFFIX))
        }
    };
    assert!(
        path.is_file(),
        "dolmen binary not found at {}: build it first: make build (or cargo build --workspace --all-targets) \
         (or point DOLMEN_BIN at it)",
        path.display()
    );
    path
}

/// What a finished `dolmen` command printed: stdout, then stderr, as text (for assertions).
pub fn output_text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

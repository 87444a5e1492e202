//! Records the commit the binary is built from (`DOLMEN_GIT_COMMIT`, shown by the console and
//! `/console/info`): `git rev-parse --short=12 HEAD`, or `unknown` outside a git checkout.
//! Re-run when HEAD or the branch it names moves (uncommitted changes are not marked: watching
//! the index would rebuild the server on every `git status`).

use std::path::Path;
use std::process::Command;

fn git(root: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(root)
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let commit = git(&root, &["rev-parse", "--short=12", "HEAD"]);
    println!(
        "cargo:rustc-env=DOLMEN_GIT_COMMIT={}",
        commit.as_deref().unwrap_or("unknown")
    );
    // Watch only files that exist: cargo re-runs a script whose watched path is missing on
    // every build.
    if let Some(git_dir) = git(&root, &["rev-parse", "--absolute-git-dir"]) {
        let git_dir = Path::new(&git_dir);
        let branch = git(&root, &["symbolic-ref", "-q", "HEAD"]);
        let watched = ["HEAD", "packed-refs"]
            .into_iter()
            .map(|f| git_dir.join(f))
            .chain(branch.map(|b| git_dir.join(b)));
        for path in watched.filter(|p| p.exists()) {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    } else {
        println!("cargo:rerun-if-changed=build.rs");
    }
}

//! The `dolmen-chaos` command line.

fn main() {
    eprintln!("dolmen-chaos: not built yet");
    std::process::exit(2);
}

//! Compiles the peer protocol (`proto/dolmen_raft.proto`) with the vendored protoc.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    std::env::set_var("PROTOC", protoc);
    println!("cargo:rerun-if-changed=proto/dolmen_raft.proto");
    tonic_prost_build::configure().compile_protos(&["proto/dolmen_raft.proto"], &["proto"])?;
    Ok(())
}

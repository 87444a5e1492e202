//! Generates the volo-thrift server and client code for `idl/kvstore.thrift` at build time
//! (pure Rust: no Thrift compiler binary needed).

fn main() {
    println!("cargo:rerun-if-changed=idl/kvstore.thrift");
    if let Err(e) = volo_build::Builder::thrift()
        .add_service("idl/kvstore.thrift")
        .filename("kvstore_gen.rs".into())
        .write()
    {
        eprintln!("failed to generate Thrift code from idl/kvstore.thrift: {e:#}");
        std::process::exit(1);
    }
}

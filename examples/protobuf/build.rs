fn main() -> std::io::Result<()> {
    println!("cargo:rerun-if-changed=proto/math.proto");
    prost_build::compile_protos(&["proto/math.proto"], &["proto"])
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The kubelet side of pod-resources, from the proto the runtime's
    // client is built from.
    println!("cargo:rerun-if-changed=../runtime/proto/podresources_v1.proto");
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(false)
        .compile_protos(
            &["../runtime/proto/podresources_v1.proto"],
            &["../runtime/proto"],
        )?;
    Ok(())
}

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
    // The kubelet's side of the CRI, to drive a real containerd.
    println!("cargo:rerun-if-changed=proto/cri_runtime_v1.proto");
    tonic_prost_build::configure()
        .build_server(false)
        .build_client(true)
        .compile_protos(&["proto/cri_runtime_v1.proto"], &["proto"])?;
    Ok(())
}

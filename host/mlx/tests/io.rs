mod common;
use common::*;
use mlx::{Array, Dtype};
use std::collections::BTreeMap;

#[test]
fn safetensors_roundtrip_with_metadata_and_bf16() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.safetensors");
    let (a, av) = rand_arr(&[3, 5], 1);
    let b = a.as_type(Dtype::Bfloat16).unwrap();
    let c = Array::from_slice(&[1i32, -2, 3], &[3]).unwrap();
    let q = mlx::quantized::quantize(&rand_arr(&[4, 64], 2).0, 64, 4).unwrap();
    let mut meta = BTreeMap::new();
    meta.insert("format".to_string(), "mlx".to_string());
    meta.insert("note".to_string(), "ünïcode ok".to_string());
    mlx::io::save_safetensors(
        &path,
        [("a", &a), ("model.layers.0.b", &b), ("c", &c), ("q.weight", &q.weight), ("q.scales", &q.scales)],
        &meta,
    )
    .unwrap();
    let st = mlx::io::load_safetensors(&path).unwrap();
    assert_eq!(st.metadata, meta);
    assert_eq!(st.tensors.len(), 5);
    assert_eq!(vals(&st.tensors["a"]), av);
    let lb = &st.tensors["model.layers.0.b"];
    assert_eq!(lb.dtype(), Dtype::Bfloat16);
    assert_eq!(lb.shape(), vec![3, 5]);
    assert_eq!(lb.to_bytes().unwrap(), b.to_bytes().unwrap(), "bf16 bits exact");
    assert_eq!(st.tensors["c"].to_vec::<i32>().unwrap(), vec![1, -2, 3]);
    assert_eq!(st.tensors["q.weight"].to_vec::<u32>().unwrap(), q.weight.to_vec::<u32>().unwrap());

    // the file is standard safetensors: raw bytes + header readable without MLX
    let bytes = std::fs::read(&path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&bytes[8..8 + n]).unwrap();
    assert!(header.contains("\"BF16\"") && header.contains("__metadata__"), "{header}");
}

#[test]
fn safetensors_errors_name_the_file() {
    let err = mlx::io::load_safetensors("/nonexistent/x.safetensors").unwrap_err();
    assert!(err.to_string().contains("/nonexistent/x.safetensors"), "{err}");
}

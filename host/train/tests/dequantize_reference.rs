//! Quantized models against MLX's own `mx.dequantize` (Python, the pinned reference
//! environment) of the same packed weights: the dense weights `Model::load` makes with `BRAIN_DEQUANTIZE=1`
//! equal it, and the QLoRA model (weights kept packed, the bridge's CPU kernel) computes the logits of a dense model
//! built from it. 4-bit groups of 32 and 8-bit groups of 64.

mod common;

use std::collections::BTreeMap;

use brain_train::config::ModelConfig;
use brain_train::convert::quantize_model;
use brain_train::models::Model;
use brain_train::tiny::TinySpec;
use common::{rel_err, run_reference, tiny};
use mlx::{Array, Dtype};

/// Every packed triple of a safetensors file dequantized by MLX's Python API; the other
/// tensors copied. Arguments: input file, output file, group size, bits.
const REFERENCE: &str = r#"
import sys
import mlx.core as mx
w = mx.load(sys.argv[1])
gs, bits = int(sys.argv[3]), int(sys.argv[4])
out = {}
for k, v in w.items():
    p = k[: -len(".scales")] if k.endswith(".scales") else None
    if p is not None:
        out[p + ".weight"] = mx.dequantize(w[p + ".weight"], v, w.get(p + ".biases"), group_size=gs, bits=bits).astype(mx.float32)
for k, v in w.items():
    base, leaf = k.rsplit(".", 1)
    if base + ".scales" in w and leaf in ("weight", "scales", "biases"):
        continue
    out[k] = v
mx.save_safetensors(sys.argv[2], out)
print(sum(1 for k in w if k.endswith(".scales")))
"#;

#[test]
fn dequantized_and_qlora_weights_equal_mlx_dequantize() {
    let spec = TinySpec { hidden: 64, layers: 2, heads: 4, kv_heads: 2, intermediate: 128, tokenizer_vocab: 320, seed: 4, ..Default::default() };
    let (td, dense_dir) = tiny(spec);
    let ids = Array::from_slice(&[3i32, 17, 42, 99, 5, 250, 7], &[1, 7]).unwrap();
    for (group, bits) in [(32, 4), (64, 8)] {
        let qdir = td.path().join(format!("q{bits}"));
        quantize_model(&dense_dir, &qdir, group, bits).unwrap();
        let reference_file = td.path().join(format!("reference-q{bits}.safetensors"));
        let out = run_reference(REFERENCE, &[qdir.join("model.safetensors").to_str().unwrap(), reference_file.to_str().unwrap(), &group.to_string(), &bits.to_string()]);
        let packed: usize = out.trim().parse().unwrap();
        assert_eq!(packed, 1 + 2 * 7, "embedding and every linear layer are packed");
        let reference: BTreeMap<String, Array> = mlx::io::load_safetensors(&reference_file).unwrap().tensors.into_iter().collect();

        // Dense at load (asked for on the CPU): every weight equals MLX's dequantize.
        std::env::set_var("BRAIN_DEQUANTIZE", "1");
        let mut dense = Model::load(&qdir, Some(Dtype::Float32)).unwrap();
        std::env::remove_var("BRAIN_DEQUANTIZE");
        assert!(!dense.is_quantized(), "BRAIN_DEQUANTIZE=1 dequantizes at load");
        dense.full_fine_tune(-1).unwrap();
        let mut compared = 0;
        for (name, w) in dense.trainable_params() {
            let Some(r) = reference.get(name) else { continue };
            if !name.ends_with("_proj.weight") {
                continue;
            }
            assert_eq!(w.shape(), r.shape(), "{name}");
            let (a, b) = (w.to_vec::<f32>().unwrap(), r.to_vec::<f32>().unwrap());
            let max = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
            assert!(max <= 1e-6, "{bits}-bit {name}: max |ours − mx.dequantize| = {max}");
            compared += 1;
        }
        assert_eq!(compared, 2 * 7, "{bits}-bit: every linear weight compared");

        // Kept packed (the CPU default for 4 and 8 bits: the bridge's kernel) computes what a
        // dense model over MLX's dequantized weights does.
        let q = Model::load(&qdir, Some(Dtype::Float32)).unwrap();
        assert!(q.is_quantized(), "4- and 8-bit weights stay packed on the CPU");
        let from_reference = Model::from_weights(&dense_dir, ModelConfig::load(&dense_dir).unwrap(), reference, Dtype::Float32).unwrap();
        let (lq, lr) = (q.logits(&ids).unwrap().to_vec::<f32>().unwrap(), from_reference.logits(&ids).unwrap().to_vec::<f32>().unwrap());
        let e = rel_err(&lq, &lr);
        assert!(e < 1e-4, "{bits}-bit QLoRA logits vs dense over mx.dequantize: rel err {e}");
        // And the quantization is not a no-op: the original dense model differs.
        let original = Model::load(&dense_dir, Some(Dtype::Float32)).unwrap().logits(&ids).unwrap().to_vec::<f32>().unwrap();
        assert!(rel_err(&original, &lr) > 10.0 * e.max(1e-7), "{bits}-bit: quantization changed nothing measurable");
    }
}

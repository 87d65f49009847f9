//! Forward logits of tiny Qwen2 models equal an independent plain-Rust f32 implementation.

mod common;

use brain_train::models::Model;
use brain_train::tiny::TinySpec;
use common::{reference::RefModel, rel_err, small_spec, tiny};
use mlx::{Array, Dtype};

fn check(spec: TinySpec) {
    let (_td, dir) = tiny(spec);
    let model = Model::load(&dir, Some(Dtype::Float32)).unwrap();
    let reference = RefModel::load(&dir);
    let ids: Vec<u32> = (0..13).map(|i| (i * 37 + 5) as u32 % reference.vocab as u32).collect();
    let ids_i: Vec<i32> = ids.iter().map(|&i| i as i32).collect();
    let logits = model.logits(&Array::from_slice(&ids_i, &[1, ids.len() as i32]).unwrap()).unwrap();
    assert_eq!(logits.shape(), vec![1, ids.len() as i32, reference.vocab as i32]);
    let ours = logits.to_vec::<f32>().unwrap();
    let theirs = reference.forward(&ids);
    let e = rel_err(&ours, &theirs);
    assert!(e < 1e-4, "relative error {e}");
    // And per row (every position, not just on average).
    for t in 0..ids.len() {
        let v = reference.vocab;
        let e = rel_err(&ours[t * v..(t + 1) * v], &theirs[t * v..(t + 1) * v]);
        assert!(e < 1e-4, "position {t}: relative error {e}");
    }
}

#[test]
fn tied_gqa_matches_reference() {
    check(small_spec());
}

#[test]
fn untied_mha_matches_reference() {
    check(TinySpec { tie_word_embeddings: false, kv_heads: 4, rope_theta: 10000.0, seed: 3, ..small_spec() });
}

#[test]
fn bf16_weights_matches_reference() {
    check(TinySpec { dtype: "bfloat16".into(), seed: 11, ..small_spec() });
}

#[test]
fn batch_rows_are_independent() {
    // Two sequences in one batch give the same logits as each alone (causal: padding after a
    // sequence does not change its positions).
    let (_td, dir) = tiny(small_spec());
    let model = Model::load(&dir, Some(Dtype::Float32)).unwrap();
    let a: Vec<i32> = vec![5, 9, 13, 17, 21, 25];
    let b: Vec<i32> = vec![7, 8, 9, 0, 0, 0];
    let both: Vec<i32> = a.iter().chain(&b).copied().collect();
    let lb = model.logits(&Array::from_slice(&both, &[2, 6]).unwrap()).unwrap().to_vec::<f32>().unwrap();
    let la = model.logits(&Array::from_slice(&a, &[1, 6]).unwrap()).unwrap().to_vec::<f32>().unwrap();
    let lb1 = model.logits(&Array::from_slice(&b[..3], &[1, 3]).unwrap()).unwrap().to_vec::<f32>().unwrap();
    let v = la.len() / 6;
    assert!(rel_err(&lb[..6 * v], &la) < 1e-5);
    assert!(rel_err(&lb[6 * v..9 * v], &lb1) < 1e-5);
}

#[test]
fn sharded_checkpoint_with_index_loads_the_same() {
    let (td, dir) = tiny(small_spec());
    // Re-write the weights as two shards plus model.safetensors.index.json.
    let sharded = td.path().join("sharded");
    std::fs::create_dir_all(&sharded).unwrap();
    for f in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(dir.join(f), sharded.join(f)).unwrap();
    }
    let st = mlx::io::load_safetensors(dir.join("model.safetensors")).unwrap();
    let names: Vec<&String> = st.tensors.keys().collect();
    let (a, b) = names.split_at(names.len() / 2);
    let mut map = serde_json::Map::new();
    for (file, part) in [("model-00001-of-00002.safetensors", a), ("model-00002-of-00002.safetensors", b)] {
        mlx::io::save_safetensors(sharded.join(file), part.iter().map(|n| (n.as_str(), &st.tensors[*n])), &Default::default()).unwrap();
        for n in part.iter() {
            map.insert(n.to_string(), serde_json::json!(file));
        }
    }
    std::fs::write(sharded.join("model.safetensors.index.json"), serde_json::json!({"metadata": {}, "weight_map": map}).to_string()).unwrap();
    let ids = Array::from_slice(&[1i32, 2, 3, 4, 5], &[1, 5]).unwrap();
    let l1 = Model::load(&dir, Some(Dtype::Float32)).unwrap().logits(&ids).unwrap().to_vec::<f32>().unwrap();
    let l2 = Model::load(&sharded, Some(Dtype::Float32)).unwrap().logits(&ids).unwrap().to_vec::<f32>().unwrap();
    assert_eq!(l1, l2);
}

#[test]
fn missing_weight_is_a_clear_error() {
    let (td, dir) = tiny(small_spec());
    let st = mlx::io::load_safetensors(dir.join("model.safetensors")).unwrap();
    let broken = td.path().join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::copy(dir.join("config.json"), broken.join("config.json")).unwrap();
    let kept = st.tensors.iter().filter(|(k, _)| !k.contains("layers.1.mlp.up_proj"));
    mlx::io::save_safetensors(broken.join("model.safetensors"), kept.map(|(k, v)| (k.as_str(), v)), &Default::default()).unwrap();
    let e = Model::load(&broken, None).err().expect("load fails").to_string();
    assert!(e.contains("model.layers.1.mlp.up_proj.weight is missing") && e.contains("broken"), "{e}");
}

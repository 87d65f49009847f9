//! Fusing an adapter into the weights — in memory (`generate::fuse_adapter`, several adapters at
//! generation) and into files (`fuse::fuse`) — gives the logits of the base model with the
//! adapter applied unfused, for LoRA and for a full fine-tune.

mod common;

use std::path::Path;

use brain_train::fuse::{fuse, FuseArgs};
use brain_train::generate::fuse_adapter;
use brain_train::models::Model;
use brain_train::tiny::write_synthetic_chat;
use brain_train::{adapters, train, FineTuneType, LoraArgs, TrainArgs};
use common::{rel_err, small_spec, tiny};
use mlx::Array;

/// A few updates at a high learning rate, so the adapter moves the logits well away from the base.
fn trained_adapter(model: &Path, td: &Path, run: &str, fine_tune_type: FineTuneType) -> std::path::PathBuf {
    let data = td.join("data");
    write_synthetic_chat(&data, 8, 2, 2, 3).unwrap();
    let args = TrainArgs {
        model: model.to_path_buf(),
        data,
        adapter_path: td.join(run),
        iters: 4,
        batch_size: 2,
        learning_rate: 2e-2,
        num_layers: -1,
        fine_tune_type,
        lora: LoraArgs { rank: 4, scale: 10.0, dropout: 0.0, ..Default::default() },
        steps_per_eval: 1000,
        steps_per_save: 1000,
        ..Default::default()
    };
    train(&args, &mut |_| {}).unwrap();
    args.adapter_path
}

fn logits(m: &Model) -> Vec<f32> {
    let ids = Array::from_slice(&[5i32, 17, 42, 9, 100, 3, 77, 250], &[1, 8]).unwrap();
    m.logits(&ids).unwrap().to_vec::<f32>().unwrap()
}

/// Base, unfused (base + adapter), fused in memory and fused into files: the three with the
/// adapter agree within 1e-4, and differ from the base.
fn check(fine_tune_type: FineTuneType) {
    let (td, model) = tiny(small_spec());
    let adapter = trained_adapter(&model, td.path(), "run", fine_tune_type);

    let base = logits(&Model::load(&model, None).unwrap());
    let mut m = Model::load(&model, None).unwrap();
    adapters::load_adapters(&mut m, &adapter).unwrap();
    let unfused = logits(&m);

    let mut m = Model::load(&model, None).unwrap();
    fuse_adapter(&mut m, &adapter).unwrap();
    let in_memory = logits(&m);

    let out = td.path().join("fused");
    let report = fuse(&FuseArgs { model: model.clone(), adapter_path: adapter.clone(), save_path: out.clone(), ..Default::default() }).unwrap();
    assert!(report.fused > 0, "{report:?}");
    let in_files = logits(&Model::load(&out, None).unwrap());

    let moved = rel_err(&unfused, &base);
    assert!(moved > 1e-2, "{fine_tune_type:?}: the adapter barely changes the logits ({moved}); the check would prove nothing");
    for (what, fused) in [("in memory", &in_memory), ("into files", &in_files)] {
        let e = rel_err(fused, &unfused);
        assert!(e <= 1e-4, "{fine_tune_type:?} fused {what}: logits differ from base + adapter by {e} (relative)");
    }
}

#[test]
fn lora_fused_logits_equal_base_plus_adapter() {
    check(FineTuneType::Lora);
}

#[test]
fn full_fused_logits_equal_the_fine_tuned_model() {
    check(FineTuneType::Full);
}

#[test]
fn an_adapter_of_another_shape_is_refused_naming_the_layer() {
    let (td, model) = tiny(small_spec());
    let adapter = trained_adapter(&model, td.path(), "run", FineTuneType::Lora);
    // A base with a wider hidden size: every adapted layer's update no longer fits.
    let other = td.path().join("other");
    brain_train::tiny::init_tiny(&other, &brain_train::tiny::TinySpec { hidden: 64, ..small_spec() }, None).unwrap();
    let mut m = Model::load(&other, None).unwrap();
    let e = fuse_adapter(&mut m, &adapter).unwrap_err().to_string();
    assert!(e.contains("adapters.safetensors") && e.contains("model.layers.") && e.contains("another model"), "{e}");
    let e = fuse(&FuseArgs { model: other, adapter_path: adapter, save_path: td.path().join("fused"), ..Default::default() }).unwrap_err().to_string();
    assert!(e.contains("adapters.safetensors") && e.contains("another model"), "{e}");
}

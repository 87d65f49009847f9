//! The registry around real training: a tiny SFT run records the trainer's progress events,
//! finishes with its report; its adapter is evaluated, registered and promoted; `brain runs show`
//! draws its curves; the active version ships to Ollama through the fused layout.

mod common;
mod ship_support;

use brain::registry::models::{self, PromotionPolicy};
use brain::registry::runs::{Run, RunSpec};
use brain::store::runs::RunStatus;
use brain::store::Store;
use common::Env;

#[test]
fn a_trained_adapter_is_recorded_registered_promoted_and_shipped() {
    let env = Env::new();
    env.write_config("[pipeline]\nollama_model = \"sam-tiny\"\n");
    let base = env.path().join("base");
    let data = env.path().join("data");
    ship_support::tiny_base(&base, true);
    brain_train::tiny::write_synthetic_chat(&data, 24, 6, 6, 1).unwrap();

    let store = Store::open(&env.db_path()).unwrap();
    let mut evals = Vec::new();
    for (i, iters) in [4usize, 12].into_iter().enumerate() {
        let adapter = env.path().join(format!("adapters-{i}"));
        let args = brain_train::TrainArgs {
            model: base.clone(),
            data: data.clone(),
            adapter_path: adapter.clone(),
            iters,
            batch_size: 4,
            learning_rate: 5e-3,
            num_layers: -1,
            max_seq_length: 128,
            steps_per_report: 2,
            steps_per_eval: 4,
            val_batches: 2,
            steps_per_save: 100,
            seed: 3,
            ..brain_train::TrainArgs::default()
        };
        let run = Run::start(
            &store,
            RunSpec {
                kind: "sft".into(),
                config: serde_json::to_value(&args).unwrap(),
                base_model: Some(base.clone()),
                adapter: Some(adapter.clone()),
                device: brain::registry::runs::mlx_device_name(),
                ..RunSpec::default()
            },
        )
        .unwrap();
        let report = brain_train::train(&args, &mut |p| run.log_progress(p).unwrap()).unwrap();
        let test = brain_train::evaluate_test(&args.test_args()).unwrap();
        let id = run.id().to_string();
        let rec = run.done(serde_json::json!({"train_loss": report.run.final_train_loss, "val_loss": report.run.best_val_loss, "test_loss": test.test_loss})).unwrap();
        assert_eq!(rec.status, RunStatus::Done);
        assert_eq!(rec.device.as_deref(), Some("cpu"));
        let m = store.run_metrics(&id).unwrap();
        assert!(m["train_loss"].len() >= iters / 2, "{m:?}");
        assert!(m.contains_key("val_loss") && m.contains_key("learning_rate") && m.contains_key("tokens_per_second"), "{:?}", m.keys());
        let eval = serde_json::to_value(test).unwrap();
        let v = models::register(&store, Some(&id), &adapter, Some(&base), &eval).unwrap();
        evals.push((v.version, test.test_loss));
    }
    // v1 becomes active (nothing was); v2 trained longer and replaces it only if better.
    let policy = PromotionPolicy::new("test_loss", "auto", 0.0).unwrap();
    assert!(models::auto_promote(&store, "v1", &policy, None).unwrap().promoted);
    let o = models::auto_promote(&store, "v2", &policy, None).unwrap();
    assert_eq!(o.promoted, evals[1].1 < evals[0].1, "{o:?} {evals:?}");
    let active = store.active_model().unwrap().unwrap();

    let r = env.run(["runs", "show", "latest"]);
    r.assert_ok();
    assert!(r.stdout.contains("train_loss") && r.stdout.contains("val_loss"), "{}", r.stdout);
    let png = r.stdout.lines().find_map(|l| l.strip_prefix("loss curves ")).unwrap().to_string();
    assert!(std::path::Path::new(&png).is_file());
    let r = env.run(["models"]);
    r.assert_ok();
    assert!(r.stdout.contains("TEST_LOSS") && r.stdout.contains(&format!("{} *", active.version)), "{}", r.stdout);

    let r = common::Run::from(env.command(["export", "ollama", "--json"]).env("PATH", "/usr/bin:/bin").output().unwrap());
    r.assert_ok();
    let v = r.json();
    assert_eq!(v["template"]["matches_training"], true);
    let fused = env.path().join("ollama/sam-tiny/fused");
    let diff = ship_support::max_abs_diff(&ship_support::logits(&fused, None), &ship_support::logits(&base, Some(std::path::Path::new(active.adapter.as_deref().unwrap()))));
    assert!(diff < 1e-4, "{diff}");
}

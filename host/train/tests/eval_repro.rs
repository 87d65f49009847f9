//! Evaluation is reproducible (the same report twice) and computes its figures as documented:
//! perplexity = exp(test loss) of the SFT trainer's test evaluation, routing accuracy over
//! routing lines only, stop and repetition rates from the generations, scores from the scorer.

mod common;

use brain_train::eval::{evaluate, EvalArgs, EvalSample};
use brain_train::tiny::TinySpec;
use brain_train::{evaluate_test, TestArgs};
use common::{small_spec, tiny, write_jsonl};
use serde_json::json;

#[test]
fn same_numbers_twice() {
    let (td, model) = tiny(TinySpec { init_std: 0.2, ..small_spec() });
    let data = td.path().join("data");
    write_jsonl(
        &data,
        "test",
        &[
            json!({"messages": [{"role": "system", "content": "Route the task."}, {"role": "user", "content": "Fix a typo."}, {"role": "assistant", "content": "local\nReason: small."}], "kind": "routing"}),
            json!({"messages": [{"role": "user", "content": "Redesign storage."}, {"role": "assistant", "content": "claude\nReason: big."}], "task": "routing", "label": "claude"}),
            json!({"messages": [{"role": "user", "content": "Explain the plan."}, {"role": "assistant", "content": "Train, then test."}], "kind": "chat"}),
            json!({"messages": [{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "hi."}]}),
        ],
    );
    let args = EvalArgs { model: model.clone(), data: data.clone(), max_tokens: 24, ..Default::default() };
    let mut calls = 0;
    let mut scorer = |s: &[EvalSample]| -> anyhow::Result<Vec<f32>> {
        calls += 1;
        Ok(s.iter().map(|x| (x.generated.len() % 7) as f32 / 7.0).collect())
    };
    let a = evaluate(&args, Some(&mut scorer)).unwrap();
    let b = evaluate(&args, Some(&mut scorer)).unwrap();
    assert_eq!(calls, 2);
    assert_eq!(a, b);
    assert_eq!(serde_json::to_string(&a).unwrap(), serde_json::to_string(&b).unwrap());

    assert_eq!(a.examples, 4);
    assert_eq!(a.generations, 4);
    assert_eq!(a.routing_examples, 2);
    assert!(a.routing_accuracy.is_some());
    let mean: f32 = a.samples.iter().map(|s| s.score.unwrap()).sum::<f32>() / 4.0;
    assert!((a.mean_score.unwrap() - mean).abs() < 1e-6);
    let stops = a.samples.iter().filter(|s| s.finish_reason == brain_train::generate::FinishReason::Stop).count();
    assert_eq!(a.stop_rate, stops as f32 / 4.0);
    assert_eq!(a.samples[1].expected, "claude\nReason: big.");
    assert_eq!(a.samples[1].prompt.len(), 1);
    // Perplexity is the SFT trainer's test loss.
    let t = evaluate_test(&TestArgs {
        model,
        data,
        adapter_path: None,
        batch_size: 4,
        max_seq_length: 2048,
        test_batches: 0,
        dtype: None,
        loss: "auto".into(),
    })
    .unwrap();
    assert_eq!((a.test_loss, a.tokens), (t.test_loss, t.tokens));
    assert!((a.perplexity - t.test_ppl).abs() <= 1e-3 * t.test_ppl);
}

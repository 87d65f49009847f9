//! Model versions: candidate → active → retired; automatic promotion only past the margin (the
//! reason recorded otherwise); `brain models` with eval numbers; promote; rollback in one
//! command, twice.

mod common;

use brain::registry::models::{self, PromotionPolicy};
use brain::registry::RegistryError;
use brain::store::models::ModelStatus;
use brain::store::Store;
use common::Env;
use serde_json::json;

fn adapter(env: &Env, name: &str) -> std::path::PathBuf {
    let dir = env.path().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn auto_promotion_margin_and_rollback() {
    let env = Env::new();
    let store = Store::open(&env.db_path()).unwrap();
    let policy = PromotionPolicy::new("test_loss", "auto", 0.05).unwrap();
    let status = |v: &str| store.model(v).unwrap().unwrap().status;

    let v1 = models::register(&store, None, &adapter(&env, "a1"), Some(&env.path().join("base")), &json!({"test_loss": 2.0, "test_ppl": 7.39})).unwrap();
    assert_eq!((v1.version.as_str(), v1.status), ("v1", ModelStatus::Candidate));
    let o = models::auto_promote(&store, "v1", &policy, None).unwrap();
    assert!(o.promoted, "{o:?}");
    assert!(o.decision.reason.contains("no active version"));
    assert_eq!(status("v1"), ModelStatus::Active);

    // Better, but by less than the margin: stays a candidate, with the reason.
    models::register(&store, None, &adapter(&env, "a2"), None, &json!({"test_loss": 1.97})).unwrap();
    let o = models::auto_promote(&store, "v2", &policy, None).unwrap();
    assert!(!o.promoted);
    assert_eq!(status("v2"), ModelStatus::Candidate);
    let v2 = store.model("v2").unwrap().unwrap();
    assert!(v2.reason.as_deref().unwrap().contains("below the margin"), "{:?}", v2.reason);
    assert!(v2.reason.as_deref().unwrap().contains("active v1"), "{:?}", v2.reason);

    // The active version re-evaluated on the candidate's test set decides when given.
    let o = models::auto_promote(&store, "v2", &policy, Some(&json!({"test_loss": 2.5}))).unwrap();
    assert!(o.promoted && o.retired.as_deref() == Some("v1"), "{o:?}");
    assert_eq!(status("v1"), ModelStatus::Retired);
    assert_eq!(store.model("v2").unwrap().unwrap().previous.as_deref(), Some("v1"));

    // Clearly better: promoted over v2.
    models::register(&store, Some("sft-x"), &adapter(&env, "a3"), None, &json!({"metrics": {"test_loss": 1.5}})).unwrap_err();
    models::register(&store, None, &adapter(&env, "a3"), None, &json!({"metrics": {"test_loss": 1.5}})).unwrap();
    let o = models::auto_promote(&store, "v3", &policy, None).unwrap();
    assert!(o.promoted && o.retired.as_deref() == Some("v2"), "{o:?}");

    // Rollback: v3 retired, v2 back; again: v1 back; again: nothing before v1.
    let c = models::rollback(&store).unwrap();
    assert_eq!((c.active.as_str(), c.retired.as_deref()), ("v2", Some("v3")));
    assert_eq!(status("v3"), ModelStatus::Retired);
    let c = models::rollback(&store).unwrap();
    assert_eq!((c.active.as_str(), c.retired.as_deref()), ("v1", Some("v2")));
    assert!(matches!(models::rollback(&store), Err(RegistryError::NoPrevious(v)) if v == "v1"));
    assert_eq!(store.models().unwrap().iter().filter(|m| m.status == ModelStatus::Active).count(), 1);

    let events: Vec<String> = store.model_events("v2").unwrap().into_iter().map(|e| e.event).collect();
    assert_eq!(events, ["registered", "kept", "promoted", "retired", "restored", "retired"]);

    // A version whose adapter is gone cannot come back.
    std::fs::remove_dir_all(env.path().join("a3")).unwrap();
    assert!(matches!(models::promote(&store, "v3", None), Err(RegistryError::MissingAdapter { .. })));
    assert!(matches!(models::promote(&store, "v9", None), Err(RegistryError::NoModel(_))));
}

#[test]
fn models_command_lists_promotes_and_rolls_back() {
    let env = Env::new();
    env.write_config("[eval]\npromote_metric = \"routing_accuracy\"\nmin_improvement = 0.02\n");
    let store = Store::open(&env.db_path()).unwrap();

    let r = env.run(["models"]);
    r.assert_ok();
    assert!(r.stdout.contains("no model versions yet"));

    let config = brain::config::Config::load(&env.config_path()).unwrap();
    let policy = PromotionPolicy::from_config(&config.eval).unwrap();
    assert_eq!(policy.direction, models::Direction::Higher);
    models::register(&store, None, &adapter(&env, "a1"), None, &json!({"test_loss": 1.2, "routing_accuracy": 0.8})).unwrap();
    models::auto_promote(&store, "v1", &policy, None).unwrap();
    models::register(&store, None, &adapter(&env, "a2"), None, &json!({"test_loss": 1.1, "routing_accuracy": 0.81})).unwrap();
    assert!(!models::auto_promote(&store, "v2", &policy, None).unwrap().promoted);

    let r = env.run(["models"]);
    r.assert_ok();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert!(lines[0].contains("VERSION") && lines[0].contains("TEST_LOSS") && lines[0].contains("ROUTING_ACCURACY"), "{}", r.stdout);
    assert!(lines[1].starts_with("v2") && lines[1].contains("candidate") && lines[1].contains("1.1000") && lines[1].contains("0.8100"), "{}", r.stdout);
    assert!(lines[1].contains("below the margin"), "{}", r.stdout);
    assert!(lines[2].starts_with("v1 *") && lines[2].contains("active"), "{}", r.stdout);

    let r = env.run(["models", "promote", "v2", "--reason", "better answers by eye"]);
    r.assert_ok();
    assert!(r.stdout.contains("v2 is active, v1 retired"), "{}", r.stdout);
    let v = env.run(["models", "--json"]).json();
    assert_eq!(v[0]["version"], "v2");
    assert_eq!(v[0]["status"], "active");
    assert_eq!(v[0]["previous"], "v1");
    assert_eq!(v[0]["eval"]["routing_accuracy"], 0.81);
    assert_eq!(v[1]["status"], "retired");

    let r = env.run(["models", "rollback"]);
    r.assert_ok();
    assert!(r.stdout.contains("v1 is active, v2 retired"), "{}", r.stdout);
    assert_eq!(store.active_model().unwrap().unwrap().version, "v1");

    let r = env.run(["models", "show", "v2", "--json"]);
    r.assert_ok();
    let v = r.json();
    assert_eq!(v["model"]["status"], "retired");
    assert_eq!(v["events"].as_array().unwrap().len(), 4);
    let r = env.run(["models", "show", "v2"]);
    r.assert_ok();
    assert!(r.stdout.contains("better answers by eye"), "{}", r.stdout);

    let r = env.run(["models", "rollback"]);
    r.assert_failed();
    assert!(r.stderr.contains("nothing to roll back to"), "{}", r.stderr);
    let r = env.run(["models", "promote", "v7"]);
    r.assert_failed();
    assert!(r.stderr.contains("no model version v7"), "{}", r.stderr);
}

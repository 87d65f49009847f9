//! Model versions: candidate → active → retired.
//!
//! - [`register`]: a trained adapter becomes a candidate (`v1`, `v2`, …) with its evaluation.
//! - [`promote`]: by hand, any version becomes active; the active one is retired and remembered
//!   as the new one's `previous`.
//! - [`rollback`]: the active version is retired and its `previous` is active again, in one
//!   transaction. Rolling back again goes one further step back.
//! - [`auto_promote`]: a candidate is promoted only when it beats the active version on the
//!   configured metric by the configured margin ([`decide`]); otherwise it stays a candidate and
//!   the reason is recorded.

use std::path::Path;

use serde::Serialize;

use super::{RegistryError, Result};
use crate::store::models::{ModelRecord, ModelStatus};
use crate::store::Store;

/// Which way a metric improves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Lower,
    Higher,
}

/// The direction of the metrics the evaluator reports, by name: losses, perplexities and
/// repetition improve downwards; accuracies, rates of stopping and scores upwards.
pub fn direction_of(metric: &str) -> Option<Direction> {
    let m = metric.to_ascii_lowercase();
    let last = m.rsplit(['/', '.']).next().unwrap_or(&m);
    if last.contains("loss") || last.contains("ppl") || last.contains("perplexity") || last.contains("repetition") || last.contains("error") {
        Some(Direction::Lower)
    } else if last.contains("accuracy") || last.contains("acc") || last.contains("stop_rate") || last.contains("score") || last.contains("margin") || last.contains("win") {
        Some(Direction::Higher)
    } else {
        None
    }
}

/// When a candidate replaces the active version: `metric` must improve by at least `margin`
/// (absolute, in the metric's units) and by more than nothing.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PromotionPolicy {
    pub metric: String,
    pub direction: Direction,
    pub margin: f64,
}

impl PromotionPolicy {
    /// `metric` with `direction` `"auto"` (from the name), `"lower"` or `"higher"`.
    pub fn new(metric: &str, direction: &str, margin: f64) -> Result<PromotionPolicy> {
        let err = |message: String| RegistryError::Policy { metric: metric.to_string(), message };
        let direction = match direction {
            "lower" => Direction::Lower,
            "higher" => Direction::Higher,
            "auto" | "" => direction_of(metric)
                .ok_or_else(|| err("cannot tell whether it improves up or down; set [eval] promote_direction = \"lower\" or \"higher\"".into()))?,
            other => return Err(err(format!("promote_direction {other:?} is not auto, lower or higher"))),
        };
        if !margin.is_finite() || margin < 0.0 {
            return Err(err(format!("the margin (min_improvement) {margin} must be a number >= 0")));
        }
        Ok(PromotionPolicy { metric: metric.to_string(), direction, margin })
    }

    /// From `[eval] promote_metric`, `promote_direction` and `min_improvement`.
    pub fn from_config(eval: &crate::config::EvalSection) -> Result<PromotionPolicy> {
        PromotionPolicy::new(&eval.promote_metric, &eval.promote_direction, eval.min_improvement)
    }
}

/// A value of an evaluation: `eval[metric]`, or a dotted / slashed path into nested objects
/// (`test.loss`), or under a `metrics` object.
pub fn metric_value(eval: &serde_json::Value, metric: &str) -> Option<f64> {
    let direct = eval.get(metric).and_then(|v| v.as_f64());
    direct
        .or_else(|| {
            let mut v = eval;
            for part in metric.split(['.', '/']) {
                v = v.get(part)?;
            }
            v.as_f64()
        })
        .or_else(|| eval.get("metrics").and_then(|m| metric_value(m, metric)))
        .filter(|x| x.is_finite())
}

/// What [`decide`] concluded.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Decision {
    pub promote: bool,
    pub reason: String,
    pub metric: String,
    pub candidate: Option<f64>,
    pub active: Option<f64>,
    /// How much better the candidate is (positive = better), when both are known.
    pub improvement: Option<f64>,
}

/// Whether a candidate with evaluation `candidate` should replace the active version evaluated
/// as `active` (None: there is no active version). Both evaluations must be on the same test set
/// for the comparison to mean anything: the pipeline evaluates both on the current one.
pub fn decide(policy: &PromotionPolicy, candidate: &serde_json::Value, active: Option<&serde_json::Value>) -> Decision {
    let metric = policy.metric.clone();
    let cand = metric_value(candidate, &metric);
    let mut d = Decision { promote: false, reason: String::new(), metric: metric.clone(), candidate: cand, active: None, improvement: None };
    let Some(active) = active else {
        d.promote = true;
        d.reason = "no active version yet".into();
        return d;
    };
    let Some(c) = cand else {
        d.reason = format!("the candidate's evaluation has no {metric}");
        return d;
    };
    let Some(a) = metric_value(active, &metric) else {
        d.reason = format!("the active version's evaluation has no {metric}; promote by hand if it should replace it");
        return d;
    };
    d.active = Some(a);
    let improvement = match policy.direction {
        Direction::Lower => a - c,
        Direction::Higher => c - a,
    };
    d.improvement = Some(improvement);
    let word = match policy.direction {
        Direction::Lower => "lower",
        Direction::Higher => "higher",
    };
    if improvement > 0.0 && improvement >= policy.margin {
        d.promote = true;
        d.reason = format!("{metric} {c:.4} vs {a:.4} active: {improvement:.4} better ({word} is better), margin {}", policy.margin);
    } else if improvement > 0.0 {
        d.reason = format!("{metric} {c:.4} vs {a:.4} active: {improvement:.4} better, below the margin {}", policy.margin);
    } else {
        d.reason = format!("{metric} {c:.4} vs {a:.4} active: not better ({word} is better)");
    }
    d
}

fn path_str(p: &Path) -> String {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()).display().to_string()
}

/// Registers the adapter `adapter` (trained by `run_id` on `base_model`) as a candidate.
pub fn register(store: &Store, run_id: Option<&str>, adapter: &Path, base_model: Option<&Path>, eval: &serde_json::Value) -> Result<ModelRecord> {
    let base = base_model.map(path_str);
    let version = store.insert_model(run_id, Some(&path_str(adapter)), base.as_deref(), eval)?;
    store.model(&version)?.ok_or(RegistryError::NoModel(version))
}

/// What a promotion or rollback did.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Change {
    /// The version active now.
    pub active: String,
    /// The version retired by the change (None: there was no active version, or it was this one).
    pub retired: Option<String>,
    pub reason: String,
}

/// Makes `version` active by hand (any status); the active one is retired.
pub fn promote(store: &Store, version: &str, reason: Option<&str>) -> Result<Change> {
    let model = store.model(version)?.ok_or_else(|| RegistryError::NoModel(version.to_string()))?;
    check_adapter(&model)?;
    let reason = reason.map(String::from).unwrap_or_else(|| "promoted by hand".into());
    let a = store.activate_model(version, "promoted", &reason, true)?.ok_or_else(|| RegistryError::NoModel(version.to_string()))?;
    Ok(Change { active: a.version, retired: a.replaced, reason })
}

fn check_adapter(model: &ModelRecord) -> Result<()> {
    if let Some(path) = &model.adapter {
        if !Path::new(path).exists() {
            return Err(RegistryError::MissingAdapter { version: model.version.clone(), path: path.clone() });
        }
    }
    Ok(())
}

/// Retires the active version and makes the version it replaced active again.
pub fn rollback(store: &Store) -> Result<Change> {
    let active = store.active_model()?.ok_or(RegistryError::NoActive)?;
    let previous = active.previous.clone().ok_or_else(|| RegistryError::NoPrevious(active.version.clone()))?;
    let prev = store.model(&previous)?.ok_or_else(|| RegistryError::NoModel(previous.clone()))?;
    check_adapter(&prev)?;
    let reason = format!("rolled back from {}", active.version);
    let a = store.activate_model(&previous, "restored", &reason, false)?.ok_or(RegistryError::NoModel(previous))?;
    Ok(Change { active: a.version, retired: a.replaced, reason })
}

/// What [`auto_promote`] did with a candidate.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PromotionOutcome {
    pub version: String,
    pub promoted: bool,
    pub decision: Decision,
    /// The version it replaced, when promoted over one.
    pub retired: Option<String>,
}

/// Promotes candidate `version` when [`decide`] says so, comparing its stored evaluation with the
/// active version's — or with `active_eval` when given (the active version re-evaluated on the
/// candidate's test set, which the pipeline should do). Otherwise records the reason it stays a
/// candidate.
pub fn auto_promote(store: &Store, version: &str, policy: &PromotionPolicy, active_eval: Option<&serde_json::Value>) -> Result<PromotionOutcome> {
    let cand = store.model(version)?.ok_or_else(|| RegistryError::NoModel(version.to_string()))?;
    let active = store.active_model()?.filter(|a| a.version != cand.version);
    let active_value = active.as_ref().map(|a| active_eval.cloned().unwrap_or_else(|| a.eval.clone()));
    let mut decision = decide(policy, &cand.eval, active_value.as_ref());
    if let Some(a) = &active {
        decision.reason = format!("{} (active {})", decision.reason, a.version);
    }
    if cand.status == ModelStatus::Active {
        decision.promote = false;
        decision.reason = "already active".into();
        return Ok(PromotionOutcome { version: version.to_string(), promoted: false, decision, retired: None });
    }
    if decision.promote {
        let a = store
            .activate_model(version, "promoted", &format!("auto: {}", decision.reason), true)?
            .ok_or_else(|| RegistryError::NoModel(version.to_string()))?;
        Ok(PromotionOutcome { version: version.to_string(), promoted: true, decision, retired: a.replaced })
    } else {
        store.keep_model(version, &format!("not promoted: {}", decision.reason))?;
        Ok(PromotionOutcome { version: version.to_string(), promoted: false, decision, retired: None })
    }
}

/// The active version, if any.
pub fn active(store: &Store) -> Result<Option<ModelRecord>> {
    Ok(store.active_model()?)
}

/// All versions, newest first.
pub fn list(store: &Store) -> Result<Vec<ModelRecord>> {
    Ok(store.models()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(metric: &str, margin: f64) -> PromotionPolicy {
        PromotionPolicy::new(metric, "auto", margin).unwrap()
    }

    #[test]
    fn directions_by_name() {
        assert_eq!(direction_of("test_loss"), Some(Direction::Lower));
        assert_eq!(direction_of("test_ppl"), Some(Direction::Lower));
        assert_eq!(direction_of("routing_accuracy"), Some(Direction::Higher));
        assert_eq!(direction_of("rewards/margins"), Some(Direction::Higher));
        assert_eq!(direction_of("bleu_thing"), None);
        assert!(PromotionPolicy::new("bleu_thing", "auto", 0.0).is_err());
        assert!(PromotionPolicy::new("bleu_thing", "higher", 0.0).is_ok());
        assert!(PromotionPolicy::new("test_loss", "sideways", 0.0).is_err());
        assert!(PromotionPolicy::new("test_loss", "auto", -1.0).is_err());
    }

    #[test]
    fn lower_is_better_with_margin() {
        let p = policy("test_loss", 0.05);
        assert!(decide(&p, &json!({"test_loss": 1.0}), Some(&json!({"test_loss": 1.1}))).promote);
        let d = decide(&p, &json!({"test_loss": 1.08}), Some(&json!({"test_loss": 1.1})));
        assert!(!d.promote && d.reason.contains("below the margin"), "{}", d.reason);
        let d = decide(&p, &json!({"test_loss": 1.2}), Some(&json!({"test_loss": 1.1})));
        assert!(!d.promote && d.reason.contains("not better"), "{}", d.reason);
        // Equal is not better, even with no margin.
        assert!(!decide(&policy("test_loss", 0.0), &json!({"test_loss": 1.1}), Some(&json!({"test_loss": 1.1}))).promote);
    }

    #[test]
    fn higher_is_better_and_nested_values() {
        let p = policy("routing_accuracy", 0.02);
        assert!(decide(&p, &json!({"metrics": {"routing_accuracy": 0.9}}), Some(&json!({"routing_accuracy": 0.8}))).promote);
        assert!(!decide(&p, &json!({"routing_accuracy": 0.81}), Some(&json!({"routing_accuracy": 0.8}))).promote);
        let p = policy("test.loss", 0.0);
        assert!(decide(&p, &json!({"test": {"loss": 1.0}}), Some(&json!({"test": {"loss": 2.0}}))).promote);
    }

    #[test]
    fn missing_numbers_keep_the_candidate_and_no_active_promotes() {
        let p = policy("test_loss", 0.0);
        assert!(decide(&p, &json!({}), None).promote);
        let d = decide(&p, &json!({}), Some(&json!({"test_loss": 1.0})));
        assert!(!d.promote && d.reason.contains("candidate"), "{}", d.reason);
        let d = decide(&p, &json!({"test_loss": 1.0}), Some(&json!({})));
        assert!(!d.promote && d.reason.contains("active"), "{}", d.reason);
        let d = decide(&p, &json!({"test_loss": f64::NAN.to_string()}), Some(&json!({"test_loss": 1.0})));
        assert!(!d.promote);
    }
}

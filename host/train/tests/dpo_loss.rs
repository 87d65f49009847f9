//! DPO losses, rewards, margins and accuracies on fixed log-probs equal the plain formulas
//! (computed here in f64, independently of the crate) to 1e-6, for every loss type.

use brain_train::dpo::{pair_metrics, DpoLoss, LossType};

/// Policy chosen/rejected, reference chosen/rejected: ordinary, tied, large margins both ways.
fn logps() -> [Vec<f32>; 4] {
    [
        vec![-12.5, -30.25, -7.0, -45.5, -3.0, -80.0],
        vec![-14.0, -29.0, -7.0, -20.0, -9.5, -10.0],
        vec![-13.0, -31.0, -7.5, -44.0, -3.25, -60.0],
        vec![-13.5, -29.5, -7.5, -21.0, -9.0, -30.0],
    ]
}

fn log_sigmoid(x: f64) -> f64 {
    // log(1 / (1 + e^-x)), written the obvious way in the stable branch for each sign.
    if x >= 0.0 {
        -(1.0 + (-x).exp()).ln()
    } else {
        x - (1.0 + x.exp()).ln()
    }
}

struct Expected {
    loss: f64,
    chosen: f64,
    rejected: f64,
    margins: f64,
    accuracies: f64,
}

fn expected(lt: LossType, beta: f64, eps: f64) -> Expected {
    let [pc, pr, rc, rr] = logps();
    let n = pc.len() as f64;
    let (mut loss, mut chosen, mut rejected, mut acc) = (0.0, 0.0, 0.0, 0.0);
    for i in 0..pc.len() {
        let cr = pc[i] as f64 - rc[i] as f64;
        let rj = pr[i] as f64 - rr[i] as f64;
        let h = cr - rj;
        let l = match lt {
            LossType::Sigmoid => -(1.0 - eps) * log_sigmoid(beta * h) - eps * log_sigmoid(-beta * h),
            LossType::Robust => (-(1.0 - eps) * log_sigmoid(beta * h) + eps * log_sigmoid(-beta * h)) / (1.0 - 2.0 * eps),
            LossType::Hinge => (1.0 - beta * h).max(0.0),
            LossType::Ipo => (h - 1.0 / (2.0 * beta)).powi(2),
        };
        loss += l;
        chosen += beta * cr;
        rejected += beta * rj;
        if beta * cr > beta * rj {
            acc += 1.0;
        }
    }
    Expected { loss: loss / n, chosen: chosen / n, rejected: rejected / n, margins: (chosen - rejected) / n, accuracies: acc / n }
}

fn close(what: &str, got: f32, want: f64) {
    let tol = 1e-6 * want.abs().max(1.0);
    assert!((got as f64 - want).abs() <= tol, "{what}: got {got}, want {want}");
}

#[test]
fn every_loss_type_matches_the_formulas() {
    let [pc, pr, rc, rr] = logps();
    for (lt, beta, eps) in [
        (LossType::Sigmoid, 0.1, 0.0),
        (LossType::Sigmoid, 0.5, 0.1),
        (LossType::Robust, 0.1, 0.2),
        (LossType::Hinge, 0.1, 0.0),
        (LossType::Hinge, 2.0, 0.0),
        (LossType::Ipo, 0.1, 0.0),
        (LossType::Ipo, 1.0, 0.0),
    ] {
        let cfg = DpoLoss { loss_type: lt, beta: beta as f32, label_smoothing: eps as f32 };
        let m = pair_metrics(&pc, &pr, &rc, &rr, &cfg).unwrap();
        let e = expected(lt, beta, eps);
        let tag = format!("{lt:?} beta={beta} eps={eps}");
        close(&format!("{tag} loss"), m.eval_loss, e.loss);
        close(&format!("{tag} rewards/chosen"), m.eval_rewards_chosen, e.chosen);
        close(&format!("{tag} rewards/rejected"), m.eval_rewards_rejected, e.rejected);
        close(&format!("{tag} rewards/margins"), m.eval_rewards_margins, e.margins);
        close(&format!("{tag} rewards/accuracies"), m.eval_rewards_accuracies, e.accuracies);
        assert_eq!(m.eval_pairs, 6);
    }
}

#[test]
fn accuracy_is_per_pair() {
    // Two pairs: one won by a wide margin, one lost narrowly. The batch-mean rewards favour
    // "chosen" (mean margin > 0), but per pair only half are right.
    let cfg = DpoLoss::default();
    let m = pair_metrics(&[-1.0, -10.0], &[-20.0, -9.0], &[-10.0, -10.0], &[-10.0, -10.0], &cfg).unwrap();
    assert!(m.eval_rewards_margins > 0.0);
    assert_eq!(m.eval_rewards_accuracies, 0.5);
    // A tie is not a win.
    let m = pair_metrics(&[-3.0], &[-3.0], &[-3.0], &[-3.0], &cfg).unwrap();
    assert_eq!(m.eval_rewards_accuracies, 0.0);
    close("ln 2 at the reference", m.eval_loss, std::f64::consts::LN_2);
}

#[test]
fn metric_names_are_trl_names() {
    let m = brain_train::dpo::DpoMetrics::default();
    let v = serde_json::to_value(m).unwrap();
    for k in [
        "loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen",
        "logps/rejected", "grad_norm", "learning_rate", "tokens_per_second", "peak_memory",
    ] {
        assert!(v.get(k).is_some(), "missing {k} in {v}");
    }
}

#[test]
fn bad_settings_are_rejected() {
    assert!(DpoLoss { beta: 0.0, ..Default::default() }.validate().is_err());
    assert!(DpoLoss { label_smoothing: 0.5, ..Default::default() }.validate().is_err());
    assert!(DpoLoss::default().validate().is_ok());
}

//! The DPO family of preference losses on sequence log-probabilities (TRL's definitions).
//!
//! With `h = (log π(c) − log π_ref(c)) − (log π(r) − log π_ref(r))` per pair:
//! - `sigmoid` (DPO): `−(1−ε)·log σ(βh) − ε·log σ(−βh)` (ε = label smoothing, cDPO; 0 by default);
//! - `robust`: `(−(1−ε)·log σ(βh) + ε·log σ(−βh)) / (1 − 2ε)` (unbiased under label noise ε);
//! - `hinge` (SLiC): `max(0, 1 − βh)`;
//! - `ipo`: `(h − 1/(2β))²`, on length-averaged log-probs (the caller averages, as TRL does).
//!
//! Implicit rewards (no gradient): `β·(log π(c) − log π_ref(c))` and the same for `r`.

use serde::{Deserialize, Serialize};

use mlx::Array;

/// Which preference loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LossType {
    #[default]
    Sigmoid,
    Ipo,
    Hinge,
    Robust,
}

impl LossType {
    pub fn as_str(self) -> &'static str {
        match self {
            LossType::Sigmoid => "sigmoid",
            LossType::Ipo => "ipo",
            LossType::Hinge => "hinge",
            LossType::Robust => "robust",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [LossType::Sigmoid, LossType::Ipo, LossType::Hinge, LossType::Robust].into_iter().find(|l| l.as_str() == s)
    }

    /// Whether the loss works on length-averaged log-probs.
    pub fn length_normalized(self) -> bool {
        self == LossType::Ipo
    }
}

/// Loss settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DpoLoss {
    pub loss_type: LossType,
    pub beta: f32,
    /// ε of `sigmoid` (cDPO) and `robust`; ignored by `hinge` and `ipo`.
    pub label_smoothing: f32,
}

impl Default for DpoLoss {
    fn default() -> Self {
        DpoLoss { loss_type: LossType::Sigmoid, beta: 0.1, label_smoothing: 0.0 }
    }
}

impl DpoLoss {
    /// Reject settings the formulas cannot use.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.beta.is_finite() && self.beta > 0.0) {
            return Err(format!("beta must be > 0 (got {})", self.beta));
        }
        let e = self.label_smoothing;
        if !(0.0..0.5).contains(&e) {
            return Err(format!("label_smoothing must be in [0, 0.5) (got {e})"));
        }
        Ok(())
    }
}

/// Per-pair losses and implicit rewards (all shape (B,), f32).
pub struct DpoTerms {
    pub losses: Array,
    pub chosen_rewards: Array,
    pub rejected_rewards: Array,
}

/// `log σ(x)`, stable for large |x|: `min(x, 0) − log1p(e^{−|x|})`.
pub fn log_sigmoid(x: &Array) -> mlx::Result<Array> {
    x.minimum(0.0f32)?.sub(&x.abs()?.neg()?.exp()?.log1p()?)
}

/// The loss of each pair from policy and reference log-probs of the chosen and rejected
/// responses (each (B,)).
pub fn dpo_loss(policy_chosen: &Array, policy_rejected: &Array, ref_chosen: &Array, ref_rejected: &Array, cfg: &DpoLoss) -> mlx::Result<DpoTerms> {
    let chosen_ratio = policy_chosen.sub(ref_chosen)?;
    let rejected_ratio = policy_rejected.sub(ref_rejected)?;
    let h = chosen_ratio.sub(&rejected_ratio)?;
    let (beta, eps) = (cfg.beta, cfg.label_smoothing);
    let bh = h.mul(beta)?;
    let losses = match cfg.loss_type {
        LossType::Sigmoid => log_sigmoid(&bh)?.mul(-(1.0 - eps))?.sub(&log_sigmoid(&bh.neg()?)?.mul(eps)?)?,
        LossType::Robust => log_sigmoid(&bh)?
            .mul(-(1.0 - eps))?
            .add(&log_sigmoid(&bh.neg()?)?.mul(eps)?)?
            .div(1.0 - 2.0 * eps)?,
        LossType::Hinge => bh.neg()?.add(1.0f32)?.maximum(0.0f32)?,
        LossType::Ipo => h.sub(1.0 / (2.0 * beta))?.square()?,
    };
    Ok(DpoTerms {
        losses,
        chosen_rewards: chosen_ratio.mul(beta)?.stop_gradient()?,
        rejected_rewards: rejected_ratio.mul(beta)?.stop_gradient()?,
    })
}

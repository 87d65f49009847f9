//! Mean loss of the model on a held-out split: validation during training and `brain train
//! --test` ([`evaluate_test`], mlx-lm's `--test`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use mlx::loss::CePath;

use crate::adapters::{self, ADAPTER_FILE};
use crate::data::{self, Batcher, Dataset};
use crate::error::{Error, Result};
use crate::loss::{nll_sum, DeviceBatch};
use crate::models::{Mode, Model};

use super::args::{ce_path, parse_dtype, TrainArgs};

/// Test-set evaluation result (`brain train --test --json`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct TestReport {
    pub test_loss: f32,
    pub test_ppl: f32,
    pub tokens: usize,
}

/// Mean NLL over the trained tokens of `batches` of `ds` (all when `max_batches` is 0, else a
/// fixed, seeded selection of that many).
pub fn evaluate(model: &Model, ds: &Dataset, batch_size: usize, max_batches: usize, pad: u32, path: CePath) -> Result<(f32, usize)> {
    let batcher = Batcher::new(ds, batch_size, 0);
    let mut batches: Vec<data::Batch> = batcher.all_batches(ds, pad).collect();
    if max_batches > 0 && batches.len() > max_batches {
        crate::rng::Rng::new(0x5EED).shuffle(&mut batches);
        batches.truncate(max_batches);
    }
    let mut total = 0f64;
    let mut tokens = 0usize;
    for b in &batches {
        let db = DeviceBatch::new(b)?;
        let s = nll_sum(model, &model.params.values, &db, Mode::default(), path)?;
        total += s.item::<f32>()? as f64;
        tokens += b.tokens;
    }
    if tokens == 0 {
        return Err(Error::Args(format!("{}: no trained tokens to evaluate", ds.path.display())));
    }
    Ok(((total / tokens as f64) as f32, tokens))
}

/// Arguments of [`evaluate_test`].
#[derive(Debug, Clone)]
pub struct TestArgs {
    pub model: PathBuf,
    pub data: PathBuf,
    /// Adapter directory (ours or mlx-lm's); None: the bare model.
    pub adapter_path: Option<PathBuf>,
    pub batch_size: usize,
    pub max_seq_length: usize,
    /// 0: all test batches.
    pub test_batches: usize,
    pub dtype: Option<String>,
    pub loss: String,
}

impl TrainArgs {
    /// Test arguments of this configuration (using its adapter when it exists).
    pub fn test_args(&self) -> TestArgs {
        let has = self.adapter_path.join(ADAPTER_FILE).exists();
        TestArgs {
            model: self.model.clone(),
            data: self.data.clone(),
            adapter_path: has.then(|| self.adapter_path.clone()),
            batch_size: self.batch_size,
            max_seq_length: self.max_seq_length,
            test_batches: self.test_batches,
            dtype: self.dtype.clone(),
            loss: self.loss.clone(),
        }
    }
}

/// Test loss and perplexity on `DATA/test.jsonl` (no training), like mlx-lm's `--test`.
pub fn evaluate_test(args: &TestArgs) -> Result<TestReport> {
    let tok = crate::source::load_tokenizer(&args.model)?;
    let path = args.data.join("test.jsonl");
    let test = data::load_split(&path, &tok, args.max_seq_length)?
        .filter(|d| !d.is_empty())
        .ok_or_else(|| Error::Args(format!("{}: missing or empty (needed for --test)", path.display())))?;
    let mut model = Model::load(&args.model, parse_dtype(&args.dtype)?)?;
    if let Some(a) = &args.adapter_path {
        adapters::load_adapters(&mut model, a)?;
    }
    let (loss, tokens) = evaluate(&model, &test, args.batch_size.max(1), args.test_batches, tok.pad_id, ce_path(&args.loss)?)?;
    Ok(TestReport { test_loss: loss, test_ppl: loss.exp(), tokens })
}

//! An independent plain-Rust f32 Qwen2 forward pass over host weights (read with the safetensors
//! crate), written from the architecture's definition — no MLX, no code shared with the crate.

use std::collections::HashMap;
use std::path::Path;

pub struct RefModel {
    pub w: HashMap<String, (Vec<usize>, Vec<f32>)>,
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub vocab: usize,
    pub eps: f32,
    pub theta: f32,
    pub tied: bool,
}

fn bf16(b: &[u8]) -> f32 {
    f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16)
}

impl RefModel {
    pub fn load(dir: &Path) -> RefModel {
        let cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
        let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let mut w = HashMap::new();
        for (name, t) in st.tensors() {
            let v: Vec<f32> = match t.dtype() {
                safetensors::Dtype::F32 => t.data().chunks(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
                safetensors::Dtype::BF16 => t.data().chunks(2).map(bf16).collect(),
                d => panic!("dtype {d:?}"),
            };
            w.insert(name.to_string(), (t.shape().to_vec(), v));
        }
        let u = |k: &str| cfg[k].as_u64().unwrap() as usize;
        let heads = u("num_attention_heads");
        RefModel {
            w,
            hidden: u("hidden_size"),
            layers: u("num_hidden_layers"),
            heads,
            kv_heads: u("num_key_value_heads"),
            head_dim: u("hidden_size") / heads,
            vocab: u("vocab_size"),
            eps: cfg["rms_norm_eps"].as_f64().unwrap() as f32,
            theta: cfg["rope_theta"].as_f64().unwrap() as f32,
            tied: cfg["tie_word_embeddings"].as_bool().unwrap(),
        }
    }

    fn get(&self, k: &str) -> &[f32] {
        &self.w.get(k).unwrap_or_else(|| panic!("missing {k}")).1
    }

    /// y (T, out) = x (T, in) · W(out, in)ᵀ + b
    fn linear(&self, x: &[f32], t: usize, name: &str, bias: bool) -> Vec<f32> {
        let (shape, w) = &self.w[&format!("{name}.weight")];
        let (out, inp) = (shape[0], shape[1]);
        let mut y = vec![0f32; t * out];
        for r in 0..t {
            for o in 0..out {
                let mut s = 0f64;
                for i in 0..inp {
                    s += x[r * inp + i] as f64 * w[o * inp + i] as f64;
                }
                y[r * out + o] = s as f32;
            }
        }
        if bias {
            let b = self.get(&format!("{name}.bias"));
            for r in 0..t {
                for o in 0..out {
                    y[r * out + o] += b[o];
                }
            }
        }
        y
    }

    fn rms_norm(&self, x: &[f32], t: usize, name: &str) -> Vec<f32> {
        let w = self.get(name);
        let h = self.hidden;
        let mut y = vec![0f32; t * h];
        for r in 0..t {
            let row = &x[r * h..(r + 1) * h];
            let ms: f64 = row.iter().map(|v| (*v as f64) * (*v as f64)).sum::<f64>() / h as f64;
            let inv = 1.0 / (ms + self.eps as f64).sqrt();
            for i in 0..h {
                y[r * h + i] = (row[i] as f64 * inv) as f32 * w[i];
            }
        }
        y
    }

    /// Rotate-half RoPE on one head vector at position `pos`.
    fn rope(&self, v: &mut [f32], pos: usize) {
        let d = self.head_dim;
        let half = d / 2;
        for i in 0..half {
            let freq = (self.theta as f64).powf(-(2.0 * i as f64) / d as f64);
            let (s, c) = (pos as f64 * freq).sin_cos();
            let (a, b) = (v[i] as f64, v[i + half] as f64);
            v[i] = (a * c - b * s) as f32;
            v[i + half] = (b * c + a * s) as f32;
        }
    }

    /// Logits (T, vocab) for one sequence.
    pub fn forward(&self, ids: &[u32]) -> Vec<f32> {
        let (t, h, d) = (ids.len(), self.hidden, self.head_dim);
        let emb = self.get("model.embed_tokens.weight");
        let mut x: Vec<f32> = ids.iter().flat_map(|&i| emb[i as usize * h..(i as usize + 1) * h].to_vec()).collect();
        let group = self.heads / self.kv_heads;
        for l in 0..self.layers {
            let p = format!("model.layers.{l}");
            let n = self.rms_norm(&x, t, &format!("{p}.input_layernorm.weight"));
            let mut q = self.linear(&n, t, &format!("{p}.self_attn.q_proj"), true);
            let mut k = self.linear(&n, t, &format!("{p}.self_attn.k_proj"), true);
            let v = self.linear(&n, t, &format!("{p}.self_attn.v_proj"), true);
            let (qw, kw) = (self.heads * d, self.kv_heads * d);
            for r in 0..t {
                for hh in 0..self.heads {
                    self.rope(&mut q[r * qw + hh * d..r * qw + (hh + 1) * d], r);
                }
                for hh in 0..self.kv_heads {
                    self.rope(&mut k[r * kw + hh * d..r * kw + (hh + 1) * d], r);
                }
            }
            let mut att = vec![0f32; t * qw];
            let scale = 1.0 / (d as f64).sqrt();
            for hh in 0..self.heads {
                let kh = hh / group;
                for i in 0..t {
                    let scores: Vec<f64> = (0..=i)
                        .map(|j| (0..d).map(|e| q[i * qw + hh * d + e] as f64 * k[j * kw + kh * d + e] as f64).sum::<f64>() * scale)
                        .collect();
                    let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let z: f64 = scores.iter().map(|s| (s - m).exp()).sum();
                    for e in 0..d {
                        let mut acc = 0f64;
                        for (j, s) in scores.iter().enumerate() {
                            acc += (s - m).exp() / z * v[j * kw + kh * d + e] as f64;
                        }
                        att[i * qw + hh * d + e] = acc as f32;
                    }
                }
            }
            let o = self.linear(&att, t, &format!("{p}.self_attn.o_proj"), false);
            for i in 0..x.len() {
                x[i] += o[i];
            }
            let n = self.rms_norm(&x, t, &format!("{p}.post_attention_layernorm.weight"));
            let g = self.linear(&n, t, &format!("{p}.mlp.gate_proj"), false);
            let u = self.linear(&n, t, &format!("{p}.mlp.up_proj"), false);
            let a: Vec<f32> = g.iter().zip(&u).map(|(g, u)| g / (1.0 + (-g).exp()) * u).collect();
            let dn = self.linear(&a, t, &format!("{p}.mlp.down_proj"), false);
            for i in 0..x.len() {
                x[i] += dn[i];
            }
        }
        let n = self.rms_norm(&x, t, "model.norm.weight");
        let head = if self.tied { "model.embed_tokens" } else { "lm_head" };
        self.linear(&n, t, head, false)
    }
}

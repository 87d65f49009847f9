//! ggml's block formats: encoding Q8_0 and Q4_0 (what the writer produces), decoding the common
//! types to f32, and re-packing the 4- and 8-bit affine ones into MLX's quantized layout so they
//! stay quantized in memory.
//!
//! Formats (little-endian; `d`, `m`, `dmin` are f16):
//! - Q8_0, 32 elements: `d`, 32 × i8 `q`; value `d·q`.
//! - Q4_0, 32 elements: `d`, 16 bytes; byte j holds element j (low nibble) and j+16 (high);
//!   value `d·(q−8)`.
//! - Q4_1: `d`, `m`, 16 bytes as Q4_0; value `d·q + m`.
//! - Q5_0 / Q5_1: as Q4_0 / Q4_1 with a u32 `qh` after the scale(s) giving bit 4 of element j in
//!   its bit j; values `d·(q−16)` / `d·q + m`.
//! - Q4_K, 256 elements in 8 sub-blocks of 32: `d`, `dmin`, 12 bytes of 6-bit sub-block scales
//!   and mins, 128 bytes; bytes 32c..32c+32 hold sub-block 2c (low nibbles) and 2c+1 (high);
//!   value `d·sc·q − dmin·m`.
//! - Q5_K: as Q4_K plus 32 bytes `qh` before the nibbles: bit j of `qh[i]` is bit 4 of element i
//!   of sub-block j.
//! - Q6_K, 256 elements: 128 bytes of low nibbles, 64 bytes of 2-bit highs, 16 × i8 scales (one per
//!   16 elements), `d`; value `d·scale·(q−32)`.
//!
//! MLX's affine layout (what [`to_affine`] produces, group size 32): a row's values packed into
//! u32 words, element e of a word at bits `bits·e` (lowest first), one f16 scale and bias per
//! group; value `scale·q + bias`.

use mlx::f16;

use super::GgmlType;

/// Elements per block of the 32-element formats, and MLX's group size for them.
pub const QK: usize = 32;
/// Elements per K-quant super-block.
pub const QK_K: usize = 256;

fn half(b: &[u8], at: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[at], b[at + 1]])).to_f32()
}

/// Q8_0 blocks of `x` (its length a multiple of 32), as ggml's reference quantizer computes them:
/// `d = max|x|/127`, `q = round(x/d)` (halves away from zero), `d` stored as f16.
pub fn quantize_q8_0(x: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(x.len() / QK * 34);
    for block in x.chunks_exact(QK) {
        let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d == 0.0 { 0.0 } else { 1.0 / d };
        out.extend_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
        out.extend(block.iter().map(|v| (v * id).round() as i8 as u8));
    }
    out
}

/// Q4_0 blocks of `x` (its length a multiple of 32), as ggml's reference quantizer computes them:
/// `d = v/−8` for the value `v` of largest magnitude (so it maps to q = 0), `q = trunc(x/d + 8.5)`
/// clipped to 15.
pub fn quantize_q4_0(x: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(x.len() / QK * 18);
    for block in x.chunks_exact(QK) {
        let max = block.iter().fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
        let d = max / -8.0;
        let id = if d == 0.0 { 0.0 } else { 1.0 / d };
        let q: Vec<u8> = block.iter().map(|v| ((v * id + 8.5).trunc() as u8).min(15)).collect();
        out.extend_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
        out.extend((0..QK / 2).map(|j| q[j] | (q[j + QK / 2] << 4)));
    }
    out
}

/// The six-bit scales and mins of a Q4_K/Q5_K super-block (12 bytes).
fn k_scales(s: &[u8]) -> ([u8; 8], [u8; 8]) {
    let (mut sc, mut mn) = ([0u8; 8], [0u8; 8]);
    for i in 0..4 {
        sc[i] = s[i] & 63;
        mn[i] = s[i + 4] & 63;
        sc[i + 4] = (s[i + 8] & 0x0F) | ((s[i] >> 2) & 0x30);
        mn[i + 4] = (s[i + 8] >> 4) | ((s[i + 4] >> 2) & 0x30);
    }
    (sc, mn)
}

/// Whether [`dequantize`] decodes `t`.
pub fn can_dequantize(t: GgmlType) -> bool {
    use GgmlType::*;
    matches!(t, Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 | Q2K | Q3K | Q4K | Q5K | Q6K)
}

/// Decode whole blocks of `data` (of type `t`) to f32, appending to `out`. `None` if `t` is not
/// one of [`can_dequantize`]'s types. `data.len()` must be a multiple of the block size.
pub fn dequantize(t: GgmlType, data: &[u8], out: &mut Vec<f32>) -> Option<()> {
    use GgmlType::*;
    let (_, bytes) = t.block()?;
    let blocks = data.chunks_exact(bytes as usize);
    match t {
        Q8_0 => {
            for b in blocks {
                let d = half(b, 0);
                out.extend(b[2..].iter().map(|&q| d * q as i8 as f32));
            }
        }
        Q4_0 | Q4_1 => {
            for b in blocks {
                let d = half(b, 0);
                // Q4_0 as d·(q−8) exactly (not d·q − 8d, which can round differently).
                let (m, off, qs) = if t == Q4_1 { (half(b, 2), 0, &b[4..]) } else { (0.0, 8, &b[2..]) };
                out.extend(qs.iter().map(|&q| d * ((q & 15) as i32 - off) as f32 + m));
                out.extend(qs.iter().map(|&q| d * ((q >> 4) as i32 - off) as f32 + m));
            }
        }
        Q5_0 | Q5_1 => {
            for b in blocks {
                let d = half(b, 0);
                let (m, off, rest) = if t == Q5_1 { (half(b, 2), 0, &b[4..]) } else { (0.0, 16, &b[2..]) };
                let qh = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
                let qs = &rest[4..];
                for j in 0..QK {
                    let (nib, hi) = if j < 16 {
                        (qs[j] & 15, (qh >> j) & 1)
                    } else {
                        (qs[j - 16] >> 4, (qh >> j) & 1)
                    };
                    out.push(d * ((nib as u32 | hi << 4) as i32 - off) as f32 + m);
                }
            }
        }
        Q2K => {
            // 16 groups of 16: a 4-bit scale and a 4-bit min each (`scales`), 2-bit values packed
            // four to a byte across 32-byte runs (`qs`), then the super-block's d and dmin.
            for b in blocks {
                let (scales, qs, d, dmin) = (&b[..16], &b[16..80], half(b, 80), half(b, 82));
                for g in 0..16 {
                    let (half_, pair, upper) = (g / 8, (g % 8) / 2, g % 2);
                    let (scale, min) = (d * (scales[g] & 15) as f32, dmin * (scales[g] >> 4) as f32);
                    let run = &qs[32 * half_ + 16 * upper..32 * half_ + 16 * upper + 16];
                    out.extend(run.iter().map(|&q| scale * ((q >> (2 * pair)) & 3) as f32 - min));
                }
            }
        }
        Q3K => {
            // 16 groups of 16 with 6-bit signed scales (offset 32) packed in 12 bytes; each value
            // is 2 low bits (`qs`, as Q2_K) and a high bit (`hmask`) that, when clear, subtracts 4.
            for b in blocks {
                let (hmask, qs, packed, d) = (&b[..32], &b[32..96], &b[96..108], half(b, 108));
                let scales: [i32; 16] = std::array::from_fn(|g| {
                    let low = if g < 8 { packed[g] & 15 } else { packed[g - 8] >> 4 };
                    let high = (packed[8 + g % 4] >> (2 * (g / 4))) & 3;
                    (low | high << 4) as i32 - 32
                });
                for (g, &sc) in scales.iter().enumerate() {
                    let (half_, pair, upper) = (g / 8, (g % 8) / 2, g % 2);
                    let bit = 1u8 << (4 * half_ + pair);
                    let at = 16 * upper;
                    for l in at..at + 16 {
                        let low = ((qs[32 * half_ + l] >> (2 * pair)) & 3) as i32;
                        let v = low - if hmask[l] & bit != 0 { 0 } else { 4 };
                        out.push(d * sc as f32 * v as f32);
                    }
                }
            }
        }
        Q4K | Q5K => {
            for b in blocks {
                let (d, dmin) = (half(b, 0), half(b, 2));
                let (sc, mn) = k_scales(&b[4..16]);
                let (qh, qs) = if t == Q5K { (Some(&b[16..48]), &b[48..]) } else { (None, &b[16..]) };
                for j in 0..8 {
                    let (scale, min) = (d * sc[j] as f32, dmin * mn[j] as f32);
                    let bytes = &qs[32 * (j / 2)..32 * (j / 2) + 32];
                    for (i, &q) in bytes.iter().enumerate() {
                        let mut v = if j % 2 == 0 { q & 15 } else { q >> 4 };
                        if let Some(qh) = qh {
                            v |= ((qh[i] >> j) & 1) << 4;
                        }
                        out.push(scale * v as f32 - min);
                    }
                }
            }
        }
        Q6K => {
            for b in blocks {
                let (ql, qh, scales, d) = (&b[..128], &b[128..192], &b[192..208], half(b, 208));
                for e in 0..QK_K {
                    let (h, r) = (e / 128, e % 128);
                    let lo = if r < 64 { ql[h * 64 + r] & 15 } else { ql[h * 64 + r - 64] >> 4 };
                    let hi = (qh[h * 32 + r % 32] >> (2 * (r / 32))) & 3;
                    let q = (lo | hi << 4) as i32 - 32;
                    out.push(d * scales[e / 16] as i8 as f32 * q as f32);
                }
            }
        }
        _ => return None,
    }
    Some(())
}

/// A tensor in MLX's affine quantized layout (group size [`QK`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Affine {
    pub bits: i32,
    /// Packed values, `elements · bits / 32` words.
    pub words: Vec<u32>,
    /// One per group of 32 elements.
    pub scales: Vec<f16>,
    pub biases: Vec<f16>,
}

/// Whether [`to_affine`] re-packs `t` (4- and 8-bit formats with one scale and offset per 32
/// elements: exactly MLX's affine quantization with group size 32).
pub fn affine_bits(t: GgmlType) -> Option<i32> {
    use GgmlType::*;
    match t {
        Q4_0 | Q4_1 | Q4K => Some(4),
        Q8_0 => Some(8),
        _ => None,
    }
}

/// Re-pack whole blocks of `data` (type `t`, one of [`affine_bits`]'s) into MLX's affine layout.
/// Q4_0/Q4_1/Q8_0 are exact; Q4_K's per-sub-block scale `d·sc` and bias `−dmin·m` are rounded to
/// f16 (a relative error up to 2⁻¹¹ of the scale, like any f16 dequantization of them).
pub fn to_affine(t: GgmlType, data: &[u8]) -> Option<Affine> {
    use GgmlType::*;
    let bits = affine_bits(t)?;
    let (per_block, bytes) = t.block()?;
    let groups = data.len() / bytes as usize * per_block as usize / QK;
    let mut a = Affine {
        bits,
        words: Vec::with_capacity(groups * bits as usize),
        scales: Vec::with_capacity(groups),
        biases: Vec::with_capacity(groups),
    };
    for b in data.chunks_exact(bytes as usize) {
        match t {
            Q4_0 | Q4_1 => {
                let d = half(b, 0);
                let (m, qs) = if t == Q4_1 {
                    (half(b, 2), &b[4..20])
                } else {
                    (-8.0 * d, &b[2..18])
                };
                a.scales.push(f16::from_f32(d));
                a.biases.push(f16::from_f32(m));
                push_nibbles(&mut a.words, qs, false);
                push_nibbles(&mut a.words, qs, true);
            }
            Q8_0 => {
                let d = half(b, 0);
                a.scales.push(f16::from_f32(d));
                a.biases.push(f16::from_f32(-128.0 * d));
                // q + 128 as an unsigned byte: flip the sign bit.
                for w in b[2..34].chunks_exact(4) {
                    a.words
                        .push(u32::from_le_bytes([w[0] ^ 0x80, w[1] ^ 0x80, w[2] ^ 0x80, w[3] ^ 0x80]));
                }
            }
            Q4K => {
                let (d, dmin) = (half(b, 0), half(b, 2));
                let (sc, mn) = k_scales(&b[4..16]);
                let qs = &b[16..144];
                for j in 0..8 {
                    a.scales.push(f16::from_f32(d * sc[j] as f32));
                    a.biases.push(f16::from_f32(-(dmin * mn[j] as f32)));
                    push_nibbles(&mut a.words, &qs[32 * (j / 2)..32 * (j / 2) + 32], j % 2 == 1);
                }
            }
            _ => return None,
        }
    }
    Some(a)
}

/// The low (or high) nibbles of `bytes` (a multiple of 8 of them), in order, as MLX 4-bit words:
/// eight nibbles per word, the first in the lowest bits. Bit tricks rather than a loop per nibble:
/// this runs over every weight of a model, and tests run unoptimized builds.
fn push_nibbles(words: &mut Vec<u32>, bytes: &[u8], high: bool) {
    for c in bytes.chunks_exact(8) {
        let mut x = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        if high {
            x >>= 4;
        }
        // One nibble per byte → two per byte → four per 16 bits → eight in the low 32 bits.
        x &= 0x0F0F_0F0F_0F0F_0F0F;
        x = (x | x >> 4) & 0x00FF_00FF_00FF_00FF;
        x = (x | x >> 8) & 0x0000_FFFF_0000_FFFF;
        x = (x | x >> 16) & 0xFFFF_FFFF;
        words.push(x as u32);
    }
}

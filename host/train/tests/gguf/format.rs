//! The GGUF format itself: block codecs against gguf-py, the writer against gguf-py's reader, our
//! reader against the writer, and our tensor decoding against MLX's own GGUF reader.

use std::path::Path;

use brain_train::gguf::quant::{self, dequantize, quantize_q4_0, quantize_q8_0, to_affine};
use brain_train::gguf::tensors;
use brain_train::gguf::{GgmlType, GgufFile, GgufWriter, Value, ValueType};
use brain_train::rng::Rng;

use crate::common::run_reference;

fn write_f32(path: &Path, x: &[f32]) {
    std::fs::write(path, x.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
}

fn f32s_from_hex(h: &str) -> Vec<f32> {
    hex::decode(h.trim())
        .unwrap()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Values that exercise the quantizers' edges: random blocks, then a zero block, a constant block,
/// exact halves (ties), the largest magnitude negative, tiny values.
fn quantizer_input() -> Vec<f32> {
    let mut rng = Rng::new(11);
    let mut x: Vec<f32> = (0..32 * 40).map(|_| (rng.normal() * 0.1) as f32).collect();
    x.extend([0.0f32; 32]);
    x.extend([0.25f32; 32]);
    // Q8_0: amax 127 gives d = 1, so these land exactly on .5 (rounded away from zero).
    x.extend((0..32).map(|i| if i == 0 { 127.0 } else { (i as f32 - 16.0) + 0.5 }));
    // Q4_0: the largest magnitude is negative (-8 → d = 1): x + 8.5 hits whole numbers.
    x.extend((0..32).map(|i| if i == 5 { -8.0 } else { (i % 16) as f32 - 7.5 }));
    x.extend((0..32).map(|i| 1e-6 * (i as f32 - 10.0)));
    x
}

#[test]
fn q8_0_and_q4_0_blocks_equal_gguf_py() {
    let td = tempfile::tempdir().unwrap();
    let x = quantizer_input();
    let xp = td.path().join("x.bin");
    write_f32(&xp, &x);
    let code = "import sys, numpy as np\nfrom gguf.quants import quantize, dequantize\nfrom gguf import GGMLQuantizationType as T\n\
                x = np.fromfile(sys.argv[1], dtype=np.float32).reshape(-1, 32)\n\
                for name in ('Q8_0', 'Q4_0'):\n    q = quantize(x, T[name])\n    print(q.tobytes().hex())\n    print(dequantize(q, T[name]).astype(np.float32).tobytes().hex())";
    let out = run_reference(code, &[xp.to_str().unwrap()]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    for (i, (t, ours)) in [(GgmlType::Q8_0, quantize_q8_0(&x)), (GgmlType::Q4_0, quantize_q4_0(&x))]
        .into_iter()
        .enumerate()
    {
        assert_eq!(ours.len(), x.len() / 32 * t.block().unwrap().1 as usize);
        let theirs = hex::decode(lines[2 * i]).unwrap();
        let first_diff = ours.iter().zip(&theirs).position(|(a, b)| a != b);
        assert!(
            ours == theirs,
            "{t}: bytes differ from gguf-py at byte {first_diff:?} (block {:?})",
            first_diff.map(|b| b / t.block().unwrap().1 as usize)
        );
        let mut decoded = Vec::new();
        dequantize(t, &ours, &mut decoded).unwrap();
        assert_eq!(
            decoded,
            f32s_from_hex(lines[2 * i + 1]),
            "{t}: our dequantization differs from gguf-py's"
        );
        // Lossy but bounded per block: half a Q8_0 step (max/127), or for Q4_0 one step (max/8:
        // the side opposite the largest magnitude is clipped at q = 15); plus the f16 rounding of
        // the step, up to 2^-11 of it per level (127 or 8 levels).
        // (A step below f16's normal range is rounded to a multiple of 2^-24.)
        let levels = if t == GgmlType::Q8_0 { 127.0 } else { 8.0 };
        let bound = if t == GgmlType::Q8_0 {
            (0.5 + levels / 2048.0) / levels
        } else {
            (1.0 + levels / 2048.0) / levels
        };
        for (xb, db) in x.chunks(32).zip(decoded.chunks(32)) {
            let max = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
            let err = xb.iter().zip(db).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(
                err <= bound * max * 1.001 + levels * 2f32.powi(-25),
                "{t}: block error {err} for values up to {max}"
            );
        }
    }
}

/// Random blocks of type `t` whose f16 scale fields are set to `scale` (random bytes there could be
/// NaN or huge).
fn random_blocks(t: GgmlType, n: usize, seed: u64) -> Vec<u8> {
    let (_, bytes) = t.block().unwrap();
    let mut rng = Rng::new(seed);
    let mut data: Vec<u8> = (0..n * bytes as usize).map(|_| rng.below(256) as u8).collect();
    let fields: &[usize] = match t {
        GgmlType::Q8_0 | GgmlType::Q4_0 | GgmlType::Q5_0 => &[0],
        GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q4K | GgmlType::Q5K => &[0, 2],
        GgmlType::Q6K => &[208],
        GgmlType::Q2K => &[80, 82],
        GgmlType::Q3K => &[108],
        _ => panic!("{t}"),
    };
    for b in data.chunks_exact_mut(bytes as usize) {
        for &at in fields {
            let v = mlx::f16::from_f32(0.001 + 0.01 * rng.uniform() as f32);
            b[at..at + 2].copy_from_slice(&v.to_bits().to_le_bytes());
        }
    }
    data
}

#[test]
fn decoders_equal_gguf_py_and_affine_repacking_dequantizes_the_same() {
    let td = tempfile::tempdir().unwrap();
    let types = [
        GgmlType::Q8_0,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q4K,
        GgmlType::Q5K,
        GgmlType::Q6K,
        GgmlType::Q2K,
        GgmlType::Q3K,
    ];
    let mut args = Vec::new();
    for (i, t) in types.iter().enumerate() {
        let (per, _) = t.block().unwrap();
        let p = td.path().join(format!("{}.bin", t.name()));
        std::fs::write(&p, random_blocks(*t, 2048 / per as usize, 100 + i as u64)).unwrap();
        args.push(p.to_str().unwrap().to_string());
    }
    let code = "import sys, os, numpy as np\nfrom gguf.quants import dequantize\nfrom gguf import GGMLQuantizationType as T\n\
                for p in sys.argv[1:]:\n    t = T[os.path.basename(p)[:-4]]\n    raw = np.fromfile(p, dtype=np.uint8).reshape(2, -1)\n    print(dequantize(raw, t).astype(np.float32).tobytes().hex())";
    let out = run_reference(code, &args.iter().map(|s| s.as_str()).collect::<Vec<_>>());
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), types.len(), "{out}");
    for ((t, p), line) in types.iter().zip(&args).zip(lines) {
        let data = std::fs::read(p).unwrap();
        let theirs = f32s_from_hex(line);
        let mut ours = Vec::new();
        dequantize(*t, &data, &mut ours).unwrap();
        assert_eq!(ours.len(), 2048);
        let scale = theirs.iter().fold(0f32, |m, v| m.max(v.abs()));
        let diff = ours.iter().zip(&theirs).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(
            scale > 0.01 && diff <= 1e-6 * scale,
            "{t}: our dequantization differs from gguf-py by {diff} (values up to {scale})"
        );
        let Some(a) = to_affine(*t, &data) else {
            assert!(quant::affine_bits(*t).is_none(), "{t} should re-pack");
            continue;
        };
        let groups = 2048 / 32;
        assert_eq!(
            (a.words.len(), a.scales.len(), a.biases.len()),
            (groups * a.bits as usize, groups, groups),
            "{t}"
        );
        let w = mlx::Array::from_slice(&a.words, &[2, 1024 / 32 * a.bits]).unwrap();
        let s = mlx::Array::from_slice(&a.scales, &[2, 32]).unwrap();
        let b = mlx::Array::from_slice(&a.biases, &[2, 32]).unwrap();
        let deq = mlx::quantized::dequantize(&w, &s, Some(&b), 32, a.bits)
            .unwrap()
            .as_type(mlx::Dtype::Float32)
            .unwrap()
            .to_vec::<f32>()
            .unwrap();
        let diff = deq.iter().zip(&theirs).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        // MLX computes in f16 (and Q4_K's d·sc is rounded to f16): a few f16 ulps of the values.
        assert!(
            diff <= 2e-3 * scale,
            "{t}: MLX's dequantization of our affine re-packing is off by {diff} (values up to {scale})"
        );
    }
}

fn sample_writer() -> GgufWriter {
    let mut w = GgufWriter::new();
    w.set("general.architecture", "llama")
        .set("t.u8", Value::U8(200))
        .set("t.i8", Value::I8(-100))
        .set("t.u16", Value::U16(60000))
        .set("t.i16", Value::I16(-30000))
        .set("t.u32", 4_000_000_000u32)
        .set("t.i32", -2_000_000_000i32)
        .set("t.f32", 0.125f32)
        .set("t.bool", true)
        .set("t.string", "héllo wörld")
        .set("t.u64", u64::MAX - 1)
        .set("t.i64", Value::I64(i64::MIN + 1))
        .set("t.f64", Value::F64(1e-300))
        .set("t.strings", Value::strings(["a", "", "b c", "ü"]))
        .set("t.i32s", Value::i32s([1, -2, 3]))
        .set("t.f32s", Value::f32s([0.5, -1.5]));
    let mut rng = Rng::new(3);
    let v: Vec<f32> = (0..4 * 64).map(|_| rng.normal() as f32).collect();
    w.add_f32("a.f32", &[4, 64], &v, GgmlType::F32).unwrap();
    w.add_f32("b.f16", &[64, 4], &v, GgmlType::F16).unwrap();
    w.add_f32("c.q8", &[4, 64], &v, GgmlType::Q8_0).unwrap();
    w.add_f32("d.q4", &[2, 2, 64], &v, GgmlType::Q4_0).unwrap();
    w.add_f32("e.bf16", &[3], &v[..3], GgmlType::BF16).unwrap();
    w
}

#[test]
fn writer_output_reads_back_in_gguf_py_and_our_reader() {
    let td = tempfile::tempdir().unwrap();
    for alignment in [None, Some(64u32)] {
        let mut w = sample_writer();
        if let Some(a) = alignment {
            w.set("general.alignment", a);
        }
        let nested = Value::Array(ValueType::Array, vec![Value::i32s([1, 2]), Value::i32s([])]);
        let path = td.path().join(format!("t{}.gguf", alignment.unwrap_or(0)));
        w.write(&path).unwrap();
        let ours = GgufFile::open(&path).unwrap();
        assert_eq!(ours.version, 3);
        assert_eq!(ours.alignment, alignment.unwrap_or(32) as u64);
        assert_eq!(ours.get("t.i64"), Some(&Value::I64(i64::MIN + 1)));
        assert_eq!(ours.get("t.f64"), Some(&Value::F64(1e-300)));
        assert_eq!(ours.get_str_array("t.strings").unwrap().unwrap(), vec!["a", "", "b c", "ü"]);
        assert_eq!(ours.get_int_array("t.i32s").unwrap().unwrap(), vec![1, -2, 3]);
        assert_eq!(ours.get_uint("t.u64").unwrap(), Some(u64::MAX - 1));
        assert!(ours.get_uint("t.i32").is_err(), "a negative value is not a non-negative integer");
        assert!(
            ours.get_str("t.u8").unwrap_err().to_string().contains("t.u8"),
            "a wrong type names the key"
        );
        let shapes: Vec<(String, Vec<u64>, GgmlType)> = ours.tensors.iter().map(|t| (t.name.clone(), t.shape(), t.ggml_type)).collect();
        assert_eq!(
            shapes,
            vec![
                ("a.f32".into(), vec![4, 64], GgmlType::F32),
                ("b.f16".into(), vec![64, 4], GgmlType::F16),
                ("c.q8".into(), vec![4, 64], GgmlType::Q8_0),
                ("d.q4".into(), vec![2, 2, 64], GgmlType::Q4_0),
                ("e.bf16".into(), vec![3], GgmlType::BF16),
            ]
        );
        for t in &ours.tensors {
            assert_eq!(t.offset % ours.alignment, 0, "{} is not aligned", t.name);
        }

        // gguf-py's reader: every field with its type and value, every tensor's offset and bytes.
        let code = "import sys, json\nfrom gguf import GGUFReader\nr = GGUFReader(sys.argv[1])\n\
                    fields = {k: [int(f.types[0]), int(f.types[-1]), f.contents()] for k, f in r.fields.items() if not k.startswith('GGUF.')}\n\
                    tensors = [[t.name, int(t.tensor_type), [int(d) for d in t.shape], int(t.data_offset), bytes(t.data).hex()] for t in r.tensors]\n\
                    print(json.dumps({'fields': fields, 'tensors': tensors}))";
        let out = run_reference(code, &[path.to_str().unwrap()]);
        let j: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        let f = &j["fields"];
        let expect = serde_json::json!({
            "general.architecture": [8, 8, "llama"], "t.u8": [0, 0, 200], "t.i8": [1, 1, -100], "t.u16": [2, 2, 60000],
            "t.i16": [3, 3, -30000], "t.u32": [4, 4, 4000000000u64], "t.i32": [5, 5, -2000000000], "t.f32": [6, 6, 0.125],
            "t.bool": [7, 7, true], "t.string": [8, 8, "héllo wörld"], "t.u64": [10, 10, u64::MAX - 1], "t.i64": [11, 11, i64::MIN + 1],
            "t.strings": [9, 8, ["a", "", "b c", "ü"]], "t.i32s": [9, 5, [1, -2, 3]], "t.f32s": [9, 6, [0.5, -1.5]],
        });
        for (k, v) in expect.as_object().unwrap() {
            assert_eq!(&f[k], v, "gguf-py reads {k} as {}", f[k]);
        }
        assert_eq!(f["t.f64"][0], 12);
        assert!((f["t.f64"][2].as_f64().unwrap() - 1e-300).abs() < 1e-310);
        if let Some(a) = alignment {
            assert_eq!(f["general.alignment"], serde_json::json!([4, 4, a]));
        }
        let theirs = j["tensors"].as_array().unwrap();
        assert_eq!(theirs.len(), ours.tensors.len());
        let raw = std::fs::read(&path).unwrap();
        for (t, o) in theirs.iter().zip(&ours.tensors) {
            assert_eq!(t[0], o.name.as_str());
            assert_eq!(t[1], o.ggml_type.code());
            assert_eq!(t[2], serde_json::json!(o.dims), "{}: gguf-py's shape (innermost first)", o.name);
            assert_eq!(t[3], o.offset, "{}: data offset", o.name);
            let n = o.nbytes().unwrap() as usize;
            assert_eq!(
                t[4].as_str().unwrap(),
                hex::encode(&raw[o.offset as usize..o.offset as usize + n]),
                "{}: data",
                o.name
            );
        }

        // Nested arrays (gguf-py's reader does not do them): our own round trip.
        let mut w2 = sample_writer();
        w2.set("t.nested", nested.clone());
        let p2 = td.path().join("nested.gguf");
        w2.write(&p2).unwrap();
        assert_eq!(GgufFile::open(&p2).unwrap().get("t.nested"), Some(&nested));
    }
}

#[test]
fn reader_refuses_broken_files_with_the_path() {
    let td = tempfile::tempdir().unwrap();
    let good = td.path().join("good.gguf");
    sample_writer().write(&good).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("magic.gguf", b"GGML\x03\0\0\0".to_vec(), "not a GGUF file"),
        ("short.gguf", bytes[..200].to_vec(), "truncated"),
        ("data.gguf", bytes[..bytes.len() - 40].to_vec(), "past the end of the file"),
        (
            "version.gguf",
            [b"GGUF".as_slice(), &9u32.to_le_bytes(), &[0u8; 16]].concat(),
            "version 9",
        ),
    ];
    for (name, data, want) in cases {
        let p = td.path().join(name);
        std::fs::write(&p, data).unwrap();
        let e = GgufFile::open(&p).unwrap_err().to_string();
        assert!(e.contains(want) && e.contains(name), "{name}: {e}");
    }
    let mut huge = bytes[..24].to_vec();
    huge[16..24].copy_from_slice(&1u64.to_le_bytes()); // one metadata pair …
    huge.extend(u64::MAX.to_le_bytes()); // … whose key claims 2^64 bytes
    let p = td.path().join("huge.gguf");
    std::fs::write(&p, huge).unwrap();
    assert!(GgufFile::open(&p).unwrap_err().to_string().contains("truncated"));
}

#[test]
fn our_tensor_decoding_equals_mlx_gguf_reader() {
    let td = tempfile::tempdir().unwrap();
    let mut w = GgufWriter::new();
    w.set("general.architecture", "llama");
    let mut rng = Rng::new(5);
    let v: Vec<f32> = (0..8 * 96).map(|_| (rng.normal() * 0.05) as f32).collect();
    w.add_f32("blk.0.a.weight", &[8, 96], &v, GgmlType::F32).unwrap();
    w.add_f32("blk.0.b.weight", &[8, 96], &v, GgmlType::F16).unwrap();
    w.add_f32("blk.0.c.weight", &[8, 96], &v, GgmlType::Q8_0).unwrap();
    w.add_f32("blk.0.d.weight", &[2, 4, 96], &v, GgmlType::Q4_0).unwrap();
    w.add_encoded("blk.0.e.weight", &[8, 96], GgmlType::Q4_1, random_blocks(GgmlType::Q4_1, 24, 9))
        .unwrap();
    let path = td.path().join("m.gguf");
    w.write(&path).unwrap();
    let theirs = mlx::io::load_gguf(&path).unwrap();
    let file = GgufFile::open(&path).unwrap();
    let ours = tensors::load(&file, |_| true).unwrap();
    assert!(ours.dequantized.is_empty());
    assert_eq!(ours.arrays.keys().collect::<Vec<_>>(), theirs.keys().collect::<Vec<_>>());
    assert_eq!(ours.arrays.len(), 2 + 3 * 3, "F32, F16 dense; Q8_0, Q4_0, Q4_1 as triples");
    for (name, a) in &ours.arrays {
        let b = &theirs[name];
        assert_eq!((a.shape(), a.dtype()), (b.shape(), b.dtype()), "{name}");
        assert_eq!(
            a.to_bytes().unwrap(),
            b.to_bytes().unwrap(),
            "{name}: our bytes differ from MLX's reader"
        );
    }
}

#[test]
fn unsupported_tensor_types_are_named() {
    let td = tempfile::tempdir().unwrap();
    let mut w = GgufWriter::new();
    w.set("general.architecture", "llama");
    w.add_encoded("blk.0.x.weight", &[1, 256], GgmlType::Other(16), vec![0u8; 66]).unwrap();
    let path = td.path().join("iq2.gguf");
    w.write(&path).unwrap();
    let e = tensors::load(&GgufFile::open(&path).unwrap(), |_| true).err().unwrap().to_string();
    assert!(
        e.contains("blk.0.x.weight") && e.contains("IQ2_XXS") && e.contains("iq2.gguf") && e.contains("Q4_K"),
        "{e}"
    );
}

#[test]
fn k_quants_load_repacked_or_dequantized() {
    let td = tempfile::tempdir().unwrap();
    let mut w = GgufWriter::new();
    w.set("general.architecture", "llama");
    let blocks = |t: GgmlType, seed| random_blocks(t, 4 * 512 / t.block().unwrap().0 as usize, seed);
    let raw = [
        (GgmlType::Q4K, blocks(GgmlType::Q4K, 1)),
        (GgmlType::Q6K, blocks(GgmlType::Q6K, 2)),
        (GgmlType::Q5_0, blocks(GgmlType::Q5_0, 3)),
    ];
    for (t, data) in &raw {
        w.add_encoded(&format!("blk.0.{}.weight", t.name()), &[4, 512], *t, data.clone())
            .unwrap();
    }
    let path = td.path().join("k.gguf");
    w.write(&path).unwrap();
    let loaded = tensors::load(&GgufFile::open(&path).unwrap(), |_| true).unwrap();
    assert_eq!(
        loaded.dequantized.into_iter().collect::<Vec<_>>(),
        vec![(GgmlType::Q5_0, 1), (GgmlType::Q6K, 1)]
    );
    for (t, data) in &raw {
        let mut want = Vec::new();
        dequantize(*t, data, &mut want).unwrap();
        let name = format!("blk.0.{}.weight", t.name());
        let got = if *t == GgmlType::Q4K {
            let (s, b) = (
                &loaded.arrays[&format!("blk.0.{}.scales", t.name())],
                &loaded.arrays[&format!("blk.0.{}.biases", t.name())],
            );
            assert_eq!(
                (loaded.arrays[&name].shape(), s.shape()),
                (vec![4, 64], vec![4, 16]),
                "Q4_K stays 4-bit, group 32"
            );
            mlx::quantized::dequantize(&loaded.arrays[&name], s, Some(b), 32, 4).unwrap()
        } else {
            assert_eq!(
                (loaded.arrays[&name].shape(), loaded.arrays[&name].dtype()),
                (vec![4, 512], mlx::Dtype::Float16)
            );
            loaded.arrays[&name].clone()
        };
        let got = got.as_type(mlx::Dtype::Float32).unwrap().to_vec::<f32>().unwrap();
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        let diff = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(diff <= 2e-3 * scale, "{t}: loaded values off by {diff} (values up to {scale})");
    }
}

use mlx::{Array, Dtype};

#[test]
fn basics() {
    let info = mlx::init().unwrap();
    eprintln!("{info:?}");
    let a = Array::from_slice(&[1.0f32, 2.0, 3.0, 4.0], &[2, 2]).unwrap();
    let b = a.matmul(&a).unwrap();
    assert_eq!(b.to_vec::<f32>().unwrap(), vec![7.0, 10.0, 15.0, 22.0]);
    let c = &a + 1.0;
    assert_eq!(c.to_vec::<f32>().unwrap(), vec![2.0, 3.0, 4.0, 5.0]);
    assert_eq!(a.sum_all().unwrap().item::<f32>().unwrap(), 10.0);
    let e = a.reshape(&[3]).unwrap_err();
    eprintln!("{e}");
    assert!(e.to_string().contains("reshape"));
    assert_eq!(a.as_type(Dtype::Bfloat16).unwrap().to_vec::<mlx::bf16>().unwrap()[1], mlx::bf16::from_f32(2.0));
}

//! Devices and streams.

use std::ffi::c_int;

use crate::array::check;
use crate::error::Result;
use crate::sys;

/// A compute device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Device {
    Cpu,
    Gpu(i32),
}

impl Device {
    fn parts(self) -> (c_int, c_int) {
        match self {
            Device::Cpu => (0, 0),
            Device::Gpu(i) => (1, i),
        }
    }

    fn from_parts(kind: c_int, index: c_int) -> Device {
        if kind == 1 {
            Device::Gpu(index)
        } else {
            Device::Cpu
        }
    }

    pub fn is_gpu(self) -> bool {
        matches!(self, Device::Gpu(_))
    }
}

/// A stream of work on a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Stream {
    pub index: i32,
    pub device: Device,
}

/// Whether MLX has a GPU backend here (Metal or CUDA).
pub fn is_gpu_available() -> Result<bool> {
    Ok(unsafe { (sys::bridge()?.is_available)(1) } == 1)
}

/// The device new operations run on.
pub fn default_device() -> Result<Device> {
    let b = sys::bridge()?;
    let (mut k, mut i) = (0, 0);
    unsafe { (b.default_device)(&mut k, &mut i) };
    Ok(Device::from_parts(k, i))
}

/// Makes `device` the default for new operations.
pub fn set_default_device(device: Device) -> Result<()> {
    let b = sys::bridge()?;
    let (k, i) = device.parts();
    check(b, unsafe { (b.set_default_device)(k, i) })
}

/// A new stream on `device`.
pub fn new_stream(device: Device) -> Result<Stream> {
    let b = sys::bridge()?;
    let (k, i) = device.parts();
    let mut idx = 0;
    check(b, unsafe { (b.new_stream)(k, i, &mut idx) })?;
    Ok(Stream { index: idx, device })
}

/// This thread's default stream on `device`.
pub fn default_stream(device: Device) -> Result<Stream> {
    let b = sys::bridge()?;
    let (k, i) = device.parts();
    let mut idx = 0;
    check(b, unsafe { (b.default_stream)(k, i, &mut idx) })?;
    Ok(Stream { index: idx, device })
}

/// Makes `stream` this thread's default for its device.
pub fn set_default_stream(stream: Stream) -> Result<()> {
    let b = sys::bridge()?;
    let (k, i) = stream.device.parts();
    check(b, unsafe { (b.set_default_stream)(stream.index, k, i) })
}

/// Waits for all work on the default stream.
pub fn synchronize() -> Result<()> {
    let b = sys::bridge()?;
    check(b, unsafe { (b.synchronize)() })
}

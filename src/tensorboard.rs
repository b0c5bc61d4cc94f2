//! TensorBoard event files: a small writer of scalars and PNG images. An event file is a sequence
//! of TFRecords (length, masked CRC-32C of the length, the bytes, their masked CRC-32C), each an
//! `Event` protobuf; the few fields TensorBoard reads are encoded here by hand, so nothing needs
//! protoc or a protobuf crate. Touches only the file it creates.
use crate::{Error, Result};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// The CRC-32C (Castagnoli) lookup table, reflected polynomial 0x82F63B78.
const CRC32C_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { 0x82F6_3B78 ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// CRC-32C of `bytes` (the checksum TFRecord framing uses).
pub fn crc32c(bytes: &[u8]) -> u32 {
    !bytes.iter().fold(!0u32, |c, &b| CRC32C_TABLE[((c ^ b as u32) & 0xFF) as usize] ^ (c >> 8))
}

/// The "masked" CRC TFRecord stores (so that a CRC of data holding CRCs stays well mixed).
fn masked_crc(bytes: &[u8]) -> u32 {
    let c = crc32c(bytes);
    c.rotate_right(15).wrapping_add(0xA282_EAD8)
}

/// Protobuf wire encoding of the handful of field kinds an `Event` needs.
struct Proto(Vec<u8>);

impl Proto {
    fn new() -> Self {
        Proto(Vec::new())
    }
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }
    fn key(&mut self, field: u64, wire: u64) {
        self.varint((field << 3) | wire);
    }
    fn uint(&mut self, field: u64, v: u64) -> &mut Self {
        self.key(field, 0);
        self.varint(v);
        self
    }
    fn double(&mut self, field: u64, v: f64) -> &mut Self {
        self.key(field, 1);
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn float(&mut self, field: u64, v: f32) -> &mut Self {
        self.key(field, 5);
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn bytes(&mut self, field: u64, b: &[u8]) -> &mut Self {
        self.key(field, 2);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
        self
    }
}

/// An `Event` (wall_time = 1, step = 2, file_version = 3, summary = 5) with its fields set by `f`.
fn event(step: u64, f: impl FnOnce(&mut Proto)) -> Vec<u8> {
    let wall = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    let mut e = Proto::new();
    e.double(1, wall).uint(2, step);
    f(&mut e);
    e.0
}

/// A `Summary` holding one `Value` (tag = 1, simple_value = 2, image = 4).
fn summary(value: &Proto) -> Vec<u8> {
    let mut s = Proto::new();
    s.bytes(1, &value.0);
    s.0
}

/// The start of an event file's name; the writer adds `<secs>.samix.<pid>.<n>`.
const EVENT_FILE_PREFIX: &str = "events.out.tfevents.";

/// Whether `name` is an event file samix writes: `events.out.tfevents.<secs>.samix.<pid>.<n>`
/// (without `.<n>` from versions before the resume numbering).
pub fn is_event_file_name(name: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let Some(rest) = name.strip_prefix(EVENT_FILE_PREFIX) else { return false };
    let parts: Vec<&str> = rest.split('.').collect();
    match parts.as_slice() {
        [secs, "samix", pid, n @ ..] => digits(secs) && digits(pid) && n.len() <= 1 && n.iter().all(|n| digits(n)),
        _ => false,
    }
}

/// Writes one run's events to `events.out.tfevents.<time>.samix.<pid>.<n>` in a folder.
pub struct EventWriter {
    file: BufWriter<std::fs::File>,
    path: PathBuf,
}

impl EventWriter {
    /// Creates the folder if needed and a new event file in it (a resumed run adds a file; the
    /// reader merges the files of a folder).
    pub fn create(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        // A run resumed within the same second (same process) gets the next free number.
        let mut n = 0u32;
        let (file, path) = loop {
            let path = dir.join(format!("{EVENT_FILE_PREFIX}{secs}.samix.{}.{n}", std::process::id()));
            match std::fs::OpenOptions::new().create_new(true).write(true).open(&path) {
                Ok(file) => break (file, path),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 1000 => n += 1,
                Err(e) => return Err(Error::io(&path, e)),
            }
        };
        let mut w = EventWriter { file: BufWriter::new(file), path };
        w.record(&event(0, |e| {
            e.bytes(3, b"brain.Event:2");
        }))?;
        Ok(w)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A scalar (stored as f32, as TensorBoard's `simple_value` is).
    pub fn scalar(&mut self, tag: &str, step: u64, value: f64) -> Result<()> {
        let mut v = Proto::new();
        v.bytes(1, tag.as_bytes()).float(2, value as f32);
        self.record(&event(step, |e| {
            e.bytes(5, &summary(&v));
        }))
    }

    /// An encoded PNG of `height`×`width` pixels with `channels` colour channels.
    pub fn image(&mut self, tag: &str, step: u64, png: &[u8], height: u32, width: u32, channels: u32) -> Result<()> {
        let mut image = Proto::new();
        image.uint(1, height as u64).uint(2, width as u64).uint(3, channels as u64).bytes(4, png);
        let mut v = Proto::new();
        v.bytes(1, tag.as_bytes()).bytes(4, &image.0);
        self.record(&event(step, |e| {
            e.bytes(5, &summary(&v));
        }))
    }

    /// A PNG file as an image summary (its size read from its header).
    pub fn image_file(&mut self, tag: &str, step: u64, png_path: &Path) -> Result<()> {
        let bytes = std::fs::read(png_path).map_err(|e| Error::io(png_path, e))?;
        let img = image::load_from_memory_with_format(&bytes, image::ImageFormat::Png)
            .map_err(|e| Error::data(png_path, format!("cannot read PNG: {e}")))?;
        let channels = img.color().channel_count() as u32;
        self.image(tag, step, &bytes, img.height(), img.width(), channels)
    }

    /// Pushes what was written to the file (TensorBoard reads it while the run goes on).
    pub fn flush(&mut self) -> Result<()> {
        self.file.flush().map_err(|e| Error::io(&self.path, e))
    }

    fn record(&mut self, data: &[u8]) -> Result<()> {
        let len = (data.len() as u64).to_le_bytes();
        let mut out = Vec::with_capacity(data.len() + 16);
        out.extend_from_slice(&len);
        out.extend_from_slice(&masked_crc(&len).to_le_bytes());
        out.extend_from_slice(data);
        out.extend_from_slice(&masked_crc(data).to_le_bytes());
        self.file.write_all(&out).map_err(|e| Error::io(&self.path, e))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn crc32c_matches_the_standard_check_value() {
        // The CRC catalogue's check value of CRC-32C ("123456789").
        assert_eq!(super::crc32c(b"123456789"), 0xE306_9283);
    }
}

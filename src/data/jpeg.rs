//! JPEG specifics: whether a file's markers reach its end (a truncated download is refused, as
//! Pillow does), and partial, downscaled decoding through libjpeg-turbo (csrc/jpeg.c) when the
//! build found it ([`PARTIAL_DECODING`]). Works on bytes in memory; reads no file itself.
use super::dataset::RawImage;

/// Whether this build decodes JPEGs partially and downscaled (libjpeg-turbo was found at build
/// time); without it every JPEG is decoded in full by `image`.
pub const PARTIAL_DECODING: bool = cfg!(samix_libjpeg);

/// The largest DCT-domain downscale libjpeg offers (1/8).
pub const MAX_SCALE: usize = 8;

/// What the header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub width: usize,
    pub height: usize,
    /// 1 grey, 3 YCbCr or RGB, 4 CMYK or YCCK.
    pub components: usize,
}

/// Columns `left..left+width`, rows `top..top+height` of an image scaled by 1/`scale`, in
/// scaled pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScaledRegion {
    pub scale: usize,
    pub top: usize,
    pub left: usize,
    pub height: usize,
    pub width: usize,
}

#[cfg(samix_libjpeg)]
mod ffi {
    use std::os::raw::{c_char, c_int};
    extern "C" {
        pub fn samix_jpeg_header(
            data: *const u8,
            len: usize,
            width: *mut c_int,
            height: *mut c_int,
            components: *mut c_int,
            msg: *mut c_char,
            msg_len: usize,
        ) -> c_int;
        #[allow(clippy::too_many_arguments)]
        pub fn samix_jpeg_decode_region(
            data: *const u8,
            len: usize,
            scale: c_int,
            x: c_int,
            y: c_int,
            w: c_int,
            h: c_int,
            out: *mut u8,
            capacity: usize,
            msg: *mut c_char,
            msg_len: usize,
        ) -> c_int;
    }
}

#[cfg(samix_libjpeg)]
fn message(buf: &[u8]) -> String {
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// The image's size and components from its header, or libjpeg's reason it has none.
#[cfg(samix_libjpeg)]
pub fn header(bytes: &[u8]) -> Result<Header, String> {
    let (mut w, mut h, mut c) = (0, 0, 0);
    let mut msg = [0u8; 256];
    // SAFETY: every pointer is valid for the call; the C side reads `len` bytes of `data`, writes
    // the three ints and at most `msg_len` bytes (NUL-terminated) of `msg`, and keeps nothing.
    let rc = unsafe {
        ffi::samix_jpeg_header(bytes.as_ptr(), bytes.len(), &mut w, &mut h, &mut c, msg.as_mut_ptr().cast(), msg.len())
    };
    if rc != 0 {
        return Err(message(&msg));
    }
    Ok(Header { width: w.max(0) as usize, height: h.max(0) as usize, components: c.max(0) as usize })
}

/// Decodes `region` (which must lie inside the scaled image) of a grey or colour JPEG: the same
/// pixels as a full decode at that scale, planar RGB.
#[cfg(samix_libjpeg)]
pub fn decode_region(bytes: &[u8], region: ScaledRegion) -> Result<RawImage, String> {
    let ScaledRegion { scale, top, left, height, width } = region;
    let int = |v: usize| i32::try_from(v).map_err(|_| format!("region coordinate {v} is too large"));
    let capacity = 3 * height * width;
    let mut out = vec![0u8; capacity];
    let mut msg = [0u8; 256];
    // SAFETY: `out` holds `capacity` bytes and the C side writes at most that many (it checks);
    // the other pointers are valid for the call and nothing is kept after it.
    let rc = unsafe {
        ffi::samix_jpeg_decode_region(
            bytes.as_ptr(),
            bytes.len(),
            int(scale)?,
            int(left)?,
            int(top)?,
            int(width)?,
            int(height)?,
            out.as_mut_ptr(),
            capacity,
            msg.as_mut_ptr().cast(),
            msg.len(),
        )
    };
    if rc != 0 {
        return Err(message(&msg));
    }
    Ok(RawImage::new(3, height, width, out))
}

#[cfg(not(samix_libjpeg))]
pub fn header(_bytes: &[u8]) -> Result<Header, String> {
    Err("this build has no libjpeg-turbo (see build.rs)".into())
}

#[cfg(not(samix_libjpeg))]
pub fn decode_region(_bytes: &[u8], _region: ScaledRegion) -> Result<RawImage, String> {
    Err("this build has no libjpeg-turbo (see build.rs)".into())
}

/// Whether the bytes start with a JPEG's start-of-image marker.
pub fn is_jpeg(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0xFF, 0xD8, 0xFF])
}

/// Whether a JPEG's marker segments reach its end-of-image marker: each segment is skipped by
/// its length, each scan's entropy-coded data up to the next marker (inside it an FF byte is
/// followed by 00 or a restart marker), so what an APP segment (a thumbnail) or bytes after the
/// end (a camera's trailer) hold cannot mislead it.
pub fn has_end(bytes: &[u8]) -> bool {
    let n = bytes.len();
    let length = |i: usize| (i + 2 <= n).then(|| usize::from(bytes[i]) << 8 | usize::from(bytes[i + 1]));
    let mut i = 2; // after SOI
    loop {
        // At a marker: FF (fill FFs allowed), then its code.
        while i < n && bytes[i] == 0xFF {
            i += 1;
        }
        let Some(&code) = bytes.get(i) else { return false };
        if bytes.get(i.wrapping_sub(1)) != Some(&0xFF) {
            return false; // not at a marker: a damaged file
        }
        i += 1;
        match code {
            0xD9 => return true,
            0x01 | 0xD0..=0xD7 => {}
            _ => match length(i) {
                Some(len) if len >= 2 => i += len,
                _ => return false,
            },
        }
        if code == 0xDA {
            // Entropy-coded data up to the next marker that is not stuffing or a restart.
            loop {
                match (bytes.get(i), bytes.get(i + 1)) {
                    (Some(0xFF), Some(0x00 | 0xD0..=0xD7)) => i += 2,
                    (Some(0xFF), Some(_)) => break,
                    (Some(_), _) => i += 1,
                    (None, _) => return false,
                }
            }
        }
    }
}

/// The DCT-domain downscale for a source window of `height × width` pixels resampled to
/// `out_h × out_w`: the largest of 1/8, 1/4, 1/2 that still leaves at least the output's pixels
/// in both directions (Pillow's `draft` rule), else 1.
pub fn scale_for(height: f64, width: f64, out_h: usize, out_w: usize) -> usize {
    let room = (height / out_h.max(1) as f64).min(width / out_w.max(1) as f64);
    [8, 4, 2].into_iter().find(|&s| room >= s as f64).unwrap_or(1)
}

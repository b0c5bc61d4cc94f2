//! JPEG specifics: one walk over a file's markers for its frame header and whether they reach
//! the end (a truncated download is refused, as Pillow does), and partial, downscaled decoding
//! through libjpeg-turbo (csrc/jpeg.c) when the build found it ([`PARTIAL_DECODING`]). Works on
//! bytes in memory; reads no file itself.
use super::dataset::Decoded;

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
        #[allow(clippy::too_many_arguments)]
        pub fn samix_jpeg_decode_region(
            data: *const u8,
            len: usize,
            expected: *const c_int,
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

/// Decodes `region` (which must lie inside the scaled image) of a grey or colour JPEG whose frame
/// header reads as `header` ([`markers`]; libjpeg must read the same, or the file is refused):
/// the same pixels as a full decode at that scale, as RGB rows (interleaved, as libjpeg writes
/// them).
#[cfg(samix_libjpeg)]
pub fn decode_region(bytes: &[u8], header: Header, region: ScaledRegion) -> Result<Decoded, String> {
    let ScaledRegion { scale, top, left, height, width } = region;
    let int = |v: usize| i32::try_from(v).map_err(|_| format!("region coordinate {v} is too large"));
    let expected = [int(header.width)?, int(header.height)?, int(header.components)?];
    let capacity = 3 * height * width;
    let mut out = vec![0u8; capacity];
    let mut msg = [0u8; 256];
    // SAFETY: `out` holds `capacity` bytes and the C side writes at most that many (it checks);
    // `expected` holds the 3 ints it reads; the other pointers are valid for the call and nothing
    // is kept after it.
    let rc = unsafe {
        ffi::samix_jpeg_decode_region(
            bytes.as_ptr(),
            bytes.len(),
            expected.as_ptr(),
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
    Ok(Decoded::Interleaved { channels: 3, height, width, data: out })
}

#[cfg(not(samix_libjpeg))]
pub fn decode_region(_bytes: &[u8], _header: Header, _region: ScaledRegion) -> Result<Decoded, String> {
    Err("this build has no libjpeg-turbo (see build.rs)".into())
}

/// Whether the bytes start with a JPEG's start-of-image marker.
pub fn is_jpeg(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0xFF, 0xD8, 0xFF])
}

/// What one walk over a JPEG's marker segments finds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Markers {
    /// The frame header, when there is exactly one, before the first scan, and of a kind
    /// libjpeg-turbo decodes (8-bit samples, at most 65,500 pixels a side; baseline, extended or
    /// progressive, Huffman or arithmetic).
    pub frame: Option<Header>,
    /// Whether the segments reach the end-of-image marker.
    pub complete: bool,
}

/// Walks a JPEG's marker segments: each segment is skipped by its length, each scan's
/// entropy-coded data up to the next marker (inside it an FF byte is followed by 00 or a restart
/// marker), so what an APP segment (a thumbnail) or bytes after the end (a camera's trailer) hold
/// cannot mislead it.
pub fn markers(bytes: &[u8]) -> Markers {
    let n = bytes.len();
    let length = |i: usize| (i + 2 <= n).then(|| usize::from(bytes[i]) << 8 | usize::from(bytes[i + 1]));
    let (mut found, mut frames) = (Markers::default(), 0);
    let mut i = 2; // after SOI
    loop {
        // At a marker: FF (fill FFs allowed), then its code.
        while i < n && bytes[i] == 0xFF {
            i += 1;
        }
        let Some(&code) = bytes.get(i) else { return found };
        if bytes.get(i.wrapping_sub(1)) != Some(&0xFF) {
            return found; // not at a marker: a damaged file
        }
        i += 1;
        match code {
            0xD9 => return Markers { complete: true, ..found },
            0x01 | 0xD0..=0xD7 => {}
            _ => match length(i) {
                Some(len) if len >= 2 => {
                    // libjpeg needs the frame before the first scan ("SOS before SOF"): a scan
                    // first counts as a frame that cannot be read.
                    if is_frame(code) || (code == 0xDA && frames == 0) {
                        frames += 1;
                        found.frame = frame_header(code, &bytes[i..n.min(i + len)]).filter(|_| frames == 1);
                    }
                    i += len;
                }
                _ => return found,
            },
        }
        if code == 0xDA {
            // Entropy-coded data up to the next marker that is not stuffing or a restart.
            loop {
                let Some(k) = bytes.get(i..).and_then(|rest| memchr::memchr(0xFF, rest)) else { return found };
                i += k;
                match bytes.get(i + 1) {
                    Some(0x00 | 0xD0..=0xD7) => i += 2,
                    Some(_) => break,
                    None => return found,
                }
            }
        }
    }
}

/// Start-of-frame codes (C0–CF but for DHT C4, JPG C8 and DAC CC).
fn is_frame(code: u8) -> bool {
    matches!(code, 0xC0..=0xCF) && !matches!(code, 0xC4 | 0xC8 | 0xCC)
}

/// The size and components of a frame header segment (from its length field on), if it is one
/// this build's libjpeg-turbo decodes: 8-bit samples, baseline, extended or progressive (Huffman
/// or arithmetic), at most 65,500 pixels a side (libjpeg's JPEG_MAX_DIMENSION).
fn frame_header(code: u8, segment: &[u8]) -> Option<Header> {
    if !matches!(code, 0xC0 | 0xC1 | 0xC2 | 0xC9 | 0xCA) || segment.len() < 8 || segment[2] != 8 {
        return None;
    }
    let word = |k: usize| usize::from(segment[k]) << 8 | usize::from(segment[k + 1]);
    let header = Header { height: word(3), width: word(5), components: usize::from(segment[7]) };
    (header.height <= 65_500 && header.width <= 65_500).then_some(header)
}

/// Whether a JPEG's marker segments reach its end-of-image marker ([`markers`]).
pub fn has_end(bytes: &[u8]) -> bool {
    markers(bytes).complete
}

/// The frame header's size and components ([`markers`]).
pub fn header(bytes: &[u8]) -> Result<Header, String> {
    markers(bytes).frame.ok_or_else(|| "no single frame header of a kind libjpeg-turbo decodes".into())
}

/// The DCT-domain downscale for a source window of `height × width` pixels resampled to
/// `out_h × out_w`: the largest of 1/8, 1/4, 1/2 that still leaves at least the output's pixels
/// in both directions (Pillow's `draft` rule), else 1.
pub fn scale_for(height: f64, width: f64, out_h: usize, out_w: usize) -> usize {
    let room = (height / out_h.max(1) as f64).min(width / out_w.max(1) as f64);
    [8, 4, 2].into_iter().find(|&s| room >= s as f64).unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::{markers, Header, Markers};

    /// A segment: marker code, then a length counting itself and `body`.
    fn segment(code: u8, body: &[u8]) -> Vec<u8> {
        let len = body.len() + 2;
        [&[0xFF, code, (len >> 8) as u8, len as u8][..], body].concat()
    }

    /// SOI, an APP1 holding what looks like a whole other JPEG (a thumbnail), `frames`, a scan
    /// whose data has stuffed FFs and a restart marker, then EOI.
    fn file(frames: &[Vec<u8>]) -> Vec<u8> {
        let thumbnail = [&[0xFF, 0xD8][..], &segment(0xC0, &[8, 0, 9, 0, 9, 1, 1, 0x11, 0]), &[0xFF, 0xD9]].concat();
        let mut bytes = vec![0xFF, 0xD8];
        bytes.extend(segment(0xE1, &thumbnail));
        bytes.extend(segment(0xC4, &[0; 20])); // a Huffman table: C4 is not a frame
        frames.iter().for_each(|f| bytes.extend(f));
        bytes.extend(segment(0xDA, &[1, 1, 0, 0, 63, 0]));
        bytes.extend([0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD3, 0x56, 0xFF, 0xFF, 0xD9]);
        bytes
    }

    fn frame(code: u8, height: u16, width: u16, components: u8) -> Vec<u8> {
        let [h0, h1] = height.to_be_bytes();
        let [w0, w1] = width.to_be_bytes();
        segment(code, &[8, h0, h1, w0, w1, components, 1, 0x22, 0])
    }

    #[test]
    fn one_walk_finds_the_frame_and_the_end_and_is_misled_by_nothing_inside_segments() {
        let whole = file(&[frame(0xC2, 703, 901, 3)]);
        let header = Header { height: 703, width: 901, components: 3 };
        assert_eq!(markers(&whole), Markers { frame: Some(header), complete: true });
        // Cut anywhere before the end marker: incomplete, and the frame is still known once read.
        for cut in 2..whole.len() - 1 {
            let found = markers(&whole[..cut]);
            assert!(!found.complete, "cut at {cut}");
            assert!(found.frame.is_none() || found.frame == Some(header), "cut at {cut}");
        }
        // Two frames, or a process libjpeg-turbo does not decode (lossless C3, hierarchical C5):
        // no frame, so the file is decoded (or refused) whole.
        let two = file(&[frame(0xC0, 10, 10, 3), frame(0xC0, 20, 20, 3)]);
        assert_eq!(markers(&two), Markers { frame: None, complete: true });
        for code in [0xC3, 0xC5] {
            assert_eq!(markers(&file(&[frame(code, 10, 10, 3)])).frame, None, "{code:X}");
        }
        for code in [0xC0, 0xC1, 0xC9, 0xCA] {
            assert_eq!(markers(&file(&[frame(code, 10, 12, 1)])).frame.map(|h| (h.height, h.width)), Some((10, 12)));
        }
        // What libjpeg would refuse: 12-bit samples, a side past 65,500, a scan before the frame.
        let mut twelve_bit = frame(0xC1, 10, 10, 3);
        twelve_bit[4] = 12;
        assert_eq!(markers(&file(&[twelve_bit])).frame, None);
        assert_eq!(markers(&file(&[frame(0xC0, 65_501, 10, 3)])).frame, None);
        assert!(markers(&file(&[frame(0xC0, 65_500, 10, 3)])).frame.is_some());
        let scan_first =
            [&[0xFF, 0xD8][..], &segment(0xDA, &[1, 1, 0, 0, 63, 0]), &[0x12], &frame(0xC0, 9, 9, 3)].concat();
        let scan_first = [scan_first, segment(0xDA, &[1, 1, 0, 0, 63, 0]), vec![0x34, 0xFF, 0xD9]].concat();
        assert_eq!(markers(&scan_first), Markers { frame: None, complete: true });
        // Entropy data ending in a lone FF, or in nothing, is incomplete.
        let mut lone = whole[..whole.len() - 1].to_vec();
        assert!(!markers(&lone).complete);
        lone.truncate(lone.len() - 1);
        assert!(!markers(&lone).complete);
    }
}

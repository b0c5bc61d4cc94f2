//! What a dataset is to the rest of samix: decoded images ([`RawImage`]), the [`Dataset`] trait
//! with its description ([`DatasetInfo`]), an in-memory dataset, the prefix and class-range views
//! that `train_limit`/`classes` make, and a config's two splits. Reads nothing from disk.
use crate::Result;
use std::sync::Arc;

/// One decoded image: `channels × height × width` bytes, channel-major (CHW).
#[derive(Clone, Debug, PartialEq)]
pub struct RawImage {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub data: Vec<u8>,
}

impl RawImage {
    pub fn new(channels: usize, height: usize, width: usize, data: Vec<u8>) -> Self {
        debug_assert_eq!(data.len(), channels * height * width);
        RawImage { channels, height, width, data }
    }
    pub fn pixel(&self, c: usize, y: usize, x: usize) -> u8 {
        self.data[(c * self.height + y) * self.width + x]
    }
}

/// What a model and the normalisation need to know about a dataset.
#[derive(Clone, Debug)]
pub struct DatasetInfo {
    pub name: String,
    pub num_classes: usize,
    pub channels: usize,
    /// Per-channel mean and std of the [0,1]-scaled pixels, used by `Normalize`.
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    pub class_names: Vec<String>,
}

/// A source window, in the pixels of an image, that a transform resamples to `out_h × out_w`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Window {
    pub top: f64,
    pub left: f64,
    pub height: f64,
    pub width: f64,
    pub out_h: usize,
    pub out_w: usize,
    /// Pixels around the window the resampling reads (its filter's reach).
    pub margin: usize,
    /// The largest downscale (1, 2, 4 or 8) a decoder may apply while it decodes (1: none).
    pub max_scale: usize,
}

/// Decoded bytes in the order their decoder wrote them: channel-major ([`RawImage`]), or
/// pixel-major rows (`height × width × channels`, as libjpeg writes scanlines), which resampling
/// reads in place rather than first reordering them.
#[derive(Clone, Debug, PartialEq)]
pub enum Decoded {
    Planar(RawImage),
    Interleaved { channels: usize, height: usize, width: usize, data: Vec<u8> },
}

impl Decoded {
    /// A view of the bytes with the strides of their order.
    pub fn view(&self) -> PixelView<'_> {
        match self {
            Decoded::Planar(img) => PixelView::planar(img),
            Decoded::Interleaved { channels, height, width, data } => PixelView {
                data,
                channels: *channels,
                height: *height,
                width: *width,
                channel_step: 1,
                row_step: width * channels,
                column_step: *channels,
            },
        }
    }

    /// The bytes channel-major.
    pub fn into_planar(self) -> RawImage {
        match self {
            Decoded::Planar(img) => img,
            interleaved => {
                let v = interleaved.view();
                let data = (0..v.channels)
                    .flat_map(|c| (0..v.height).flat_map(move |y| (0..v.width).map(move |x| v.at(c, y, x))))
                    .collect();
                RawImage::new(v.channels, v.height, v.width, data)
            }
        }
    }
}

/// `channels × height × width` bytes read through strides, whichever order they are stored in.
#[derive(Clone, Copy, Debug)]
pub struct PixelView<'a> {
    pub data: &'a [u8],
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// Bytes from one channel, row or column to the next.
    pub channel_step: usize,
    pub row_step: usize,
    pub column_step: usize,
}

impl<'a> PixelView<'a> {
    pub fn planar(img: &'a RawImage) -> Self {
        let (height, width) = (img.height, img.width);
        let (channel_step, row_step, column_step) = (height * width, width, 1);
        PixelView { data: &img.data, channels: img.channels, height, width, channel_step, row_step, column_step }
    }

    pub fn at(&self, c: usize, y: usize, x: usize) -> u8 {
        self.data[c * self.channel_step + y * self.row_step + x * self.column_step]
    }
}

/// A decoded image, or the part of it a [`Window`] needs, with the window in its pixels.
#[derive(Clone, Debug)]
pub struct WindowedImage {
    pub image: Decoded,
    pub window: Window,
}

/// A labelled image collection. `load` may decode from disk, so it returns a `Result`.
pub trait Dataset: Send + Sync {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn label(&self, index: usize) -> i64;
    fn load(&self, index: usize) -> Result<RawImage>;
    fn info(&self) -> &DatasetInfo;
    /// Image `index`, or only what `pick` (given its height and width, called once) says a
    /// transform will read of it. This default decodes the whole image; a dataset of files can
    /// decode less.
    fn load_window(&self, index: usize, pick: &mut dyn FnMut(usize, usize) -> Window) -> Result<WindowedImage> {
        let image = self.load(index)?;
        let window = pick(image.height, image.width);
        Ok(WindowedImage { image: Decoded::Planar(image), window })
    }
}

/// Images held in memory as one contiguous CHW byte array (CIFAR, MNIST).
pub struct InMemoryDataset {
    info: DatasetInfo,
    height: usize,
    width: usize,
    pixels: Vec<u8>,
    labels: Vec<i64>,
}

impl InMemoryDataset {
    pub fn new(info: DatasetInfo, height: usize, width: usize, pixels: Vec<u8>, labels: Vec<i64>) -> Self {
        debug_assert_eq!(pixels.len(), labels.len() * info.channels * height * width);
        InMemoryDataset { info, height, width, pixels, labels }
    }
    fn image_len(&self) -> usize {
        self.info.channels * self.height * self.width
    }
    /// Keeps only the first `n` records (for tests and quick runs).
    pub fn truncate(&mut self, n: usize) {
        if n < self.labels.len() {
            self.labels.truncate(n);
            self.pixels.truncate(n * self.image_len());
        }
    }
    pub fn labels(&self) -> &[i64] {
        &self.labels
    }
}

impl std::fmt::Debug for InMemoryDataset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "InMemoryDataset({}, {} images of {}×{}×{})",
            self.info.name,
            self.labels.len(),
            self.info.channels,
            self.height,
            self.width
        )
    }
}

impl Dataset for InMemoryDataset {
    fn len(&self) -> usize {
        self.labels.len()
    }
    fn label(&self, index: usize) -> i64 {
        self.labels[index]
    }
    fn load(&self, index: usize) -> Result<RawImage> {
        let n = self.image_len();
        let data = self.pixels[index * n..(index + 1) * n].to_vec();
        Ok(RawImage::new(self.info.channels, self.height, self.width, data))
    }
    fn info(&self) -> &DatasetInfo {
        &self.info
    }
}

/// A view on the first `limit` items of another dataset.
pub struct Prefix {
    inner: Arc<dyn Dataset>,
    limit: usize,
}

impl Prefix {
    /// The first `limit` images of `inner` (all of them when it has fewer).
    pub fn new(inner: Arc<dyn Dataset>, limit: usize) -> Self {
        Prefix { inner, limit }
    }
}

impl Dataset for Prefix {
    fn len(&self) -> usize {
        self.limit.min(self.inner.len())
    }
    fn label(&self, index: usize) -> i64 {
        self.inner.label(index)
    }
    fn load(&self, index: usize) -> Result<RawImage> {
        self.inner.load(index)
    }
    fn load_window(&self, index: usize, pick: &mut dyn FnMut(usize, usize) -> Window) -> Result<WindowedImage> {
        self.inner.load_window(index, pick)
    }
    fn info(&self) -> &DatasetInfo {
        self.inner.info()
    }
}

/// The samples of classes `lo..hi` of another dataset, relabelled `0..hi−lo` (e.g. two disjoint
/// halves of CIFAR-100 for a transfer experiment).
pub struct ClassRange {
    inner: Arc<dyn Dataset>,
    indices: Vec<usize>,
    lo: i64,
    info: DatasetInfo,
}

impl ClassRange {
    pub fn new(inner: Arc<dyn Dataset>, lo: usize, hi: usize) -> Self {
        let indices = (0..inner.len()).filter(|&i| (lo as i64..hi as i64).contains(&inner.label(i))).collect();
        let mut info = inner.info().clone();
        info.num_classes = hi - lo;
        info.class_names = info.class_names.get(lo..hi).map(<[String]>::to_vec).unwrap_or_default();
        ClassRange { inner, indices, lo: lo as i64, info }
    }
}

impl Dataset for ClassRange {
    fn len(&self) -> usize {
        self.indices.len()
    }
    fn label(&self, index: usize) -> i64 {
        self.inner.label(self.indices[index]) - self.lo
    }
    fn load(&self, index: usize) -> Result<RawImage> {
        self.inner.load(self.indices[index])
    }
    fn load_window(&self, index: usize, pick: &mut dyn FnMut(usize, usize) -> Window) -> Result<WindowedImage> {
        self.inner.load_window(self.indices[index], pick)
    }
    fn info(&self) -> &DatasetInfo {
        &self.info
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    Train,
    Test,
}

/// The train and test sets named by a data config, with the limits applied.
pub struct Splits {
    pub train: Arc<dyn Dataset>,
    pub test: Arc<dyn Dataset>,
}

//! The stage-by-stage view of a network ([`StagedNet`]) that SAMix's Mixer, ManifoldMix and
//! the feature-level policies read. Touches nothing.
use tch::Tensor;

/// A network that runs as stem → stages → pooling → classifier. Between stages it may carry any
/// representation (a CNN's feature map, a transformer's tokens); [`StagedNet::stage_map`] shows a
/// stage's output as a (B, C, H, W) map, which is what callers that read stages receive.
pub trait StagedNet {
    fn num_stages(&self) -> usize;
    fn stem_t(&self, x: &Tensor, train: bool) -> Tensor;
    /// Stage `i` (0-based; stage-k of the paper is `i = k − 1`).
    fn stage_t(&self, i: usize, h: &Tensor, train: bool) -> Tensor;
    /// The image-level features (B, C) of the last stage's output `h`: global average pooling
    /// for the CNNs; the normalised class token for a ViT.
    fn pool(&self, h: &Tensor) -> Tensor {
        h.adaptive_avg_pool2d([1, 1]).flatten(1, -1)
    }
    /// The linear classifier on pooled features.
    fn classifier(&self, pooled: &Tensor) -> Tensor;
    /// Pooling and the classifier on the last stage's output.
    fn head(&self, h: &Tensor) -> Tensor {
        self.classifier(&self.pool(h))
    }
    /// Stage `i`'s output `h` as a (B, C, H, W) map (the CNNs' is one already; a ViT lays its
    /// patch tokens out on their grid).
    fn stage_map(&self, _i: usize, h: &Tensor) -> Tensor {
        h.shallow_clone()
    }
    /// Logits and the last block's class-token attention over the patches (N × patches, mean
    /// over heads, rows summing to 1), for TransMix; `None` for networks without a class token.
    fn forward_with_class_attention(&self, _x: &Tensor, _train: bool) -> Option<(Tensor, Tensor)> {
        None
    }
    /// Output channels of each stage.
    fn stage_channels(&self) -> Vec<i64>;
    /// Channels of the images the network reads.
    fn in_channels(&self) -> i64;
    /// Classes of its classifier.
    fn num_classes(&self) -> i64;

    /// Logits and the maps of the stages listed in `keep` (in `keep`'s order).
    fn forward_stages(&self, x: &Tensor, train: bool, keep: &[usize]) -> (Tensor, Vec<Tensor>) {
        let (last, kept) = self.features(x, train, keep);
        (self.head(&last), kept)
    }

    /// The last stage's output (what [`StagedNet::pool`] reads) and the maps of the stages in
    /// `keep` (in `keep`'s order), without the classifier.
    fn features(&self, x: &Tensor, train: bool, keep: &[usize]) -> (Tensor, Vec<Tensor>) {
        let mut h = self.stem_t(x, train);
        let mut kept: Vec<(usize, Tensor)> = Vec::new();
        for i in 0..self.num_stages() {
            h = self.stage_t(i, &h, train);
            if keep.contains(&i) {
                kept.push((i, self.stage_map(i, &h)));
            }
        }
        let out =
            keep.iter().filter_map(|k| kept.iter().find(|(i, _)| i == k).map(|(_, t)| t.shallow_clone())).collect();
        (h, out)
    }
}

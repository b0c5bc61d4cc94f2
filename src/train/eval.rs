//! Evaluation: top-1 / top-5 accuracy (%) and mean CE over a loader, in eval mode and without
//! gradients. Counts accumulate on the device and are read once at the end.
use crate::data::loader::Loader;
use crate::model::Network;
use crate::Result;
use tch::nn::ModuleT;
use tch::{Kind, Tensor};

#[derive(Clone, Copy, Debug)]
pub struct EvalResult {
    pub acc1: f64,
    pub acc5: f64,
    pub loss: f64,
    pub images: usize,
}

pub fn evaluate(net: &Network, loader: &Loader) -> Result<EvalResult> {
    let _guard = tch::no_grad_guard();
    let mut correct1: Option<Tensor> = None;
    let mut correct5: Option<Tensor> = None;
    let mut loss_sum: Option<Tensor> = None;
    let mut n = 0usize;
    for batch in loader.epoch(0) {
        let batch = batch?;
        let logits = net.forward_t(&batch.images, false);
        let k = logits.size()[1].min(5);
        let labels = batch.labels.unsqueeze(1);
        let top = logits.topk(k, -1, true, true).1;
        let c1 = top.narrow(1, 0, 1).eq_tensor(&labels).sum(Kind::Int64);
        let c5 = top.eq_tensor(&labels).any_dim(1, false).sum(Kind::Int64);
        let l = logits.cross_entropy_loss::<Tensor>(&batch.labels, None, tch::Reduction::Sum, -100, 0.0);
        let add = |acc: &mut Option<Tensor>, v: Tensor| *acc = Some(match acc.take() { Some(a) => a + v, None => v });
        add(&mut correct1, c1);
        add(&mut correct5, c5);
        add(&mut loss_sum, l);
        n += batch.len();
    }
    let read = |t: Option<Tensor>| t.map_or(0.0, |t| t.double_value(&[]));
    let denom = n.max(1) as f64;
    Ok(EvalResult {
        acc1: 100.0 * read(correct1) / denom,
        acc5: 100.0 * read(correct5) / denom,
        loss: read(loss_sum) / denom,
        images: n,
    })
}

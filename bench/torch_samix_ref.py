"""PyTorch reference of one training step for vanilla / mixup / cutmix / SAMix
(ResNet-18 CIFAR variant, 32x32, batch 100; or with --model imagenet-r50 torchvision's ResNet-50
at 224x224, 1,000 classes, the Mixer on its 14x14x1024 stage 3 upsampled x16; deit-s: timm's DeiT-S,
the Mixer on block 6's 14x14x384 patch tokens, x16 nearest; convnext-t: timm's ConvNeXt-T, the
Mixer on stage 3, 14x14x384, x16 bilinear), written from the
SAMix spec (docs/ALGORITHM.md). It is the side-by-side peer for throughput: same work, PyTorch
eager (+ optional bf16 autocast on the device's type).
Usage: python3 bench/torch_samix_ref.py [--steps 40] [--amp] [--device cuda] [--model M] [--methods a,b]
Prints one line per method: ms/step, images/s, and the SAMix/vanilla ratio."""
import argparse, copy, math, time
import torch, torch.nn as nn, torch.nn.functional as F

class Block(nn.Module):
    def __init__(s, cin, cout, stride):
        super().__init__()
        s.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False); s.b1 = nn.BatchNorm2d(cout)
        s.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False); s.b2 = nn.BatchNorm2d(cout)
        s.sc = None
        if stride != 1 or cin != cout:
            s.sc = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
    def forward(s, x):
        o = F.relu(s.b1(s.c1(x))); o = s.b2(s.c2(o))
        return F.relu(o + (x if s.sc is None else s.sc(x)))

class ResNet18C(nn.Module):
    """returns (stage3 [N,256,8,8], logits)"""
    def __init__(s, k=100):
        super().__init__()
        s.stem = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU())
        cfg = [(64, 64, 1), (64, 128, 2), (128, 256, 2), (256, 512, 2)]
        s.stages = nn.ModuleList([nn.Sequential(Block(a, b, st), Block(b, b, 1)) for a, b, st in cfg])
        s.fc = nn.Linear(512, k)
    def forward(s, x):
        x = s.stem(x); f3 = None
        for i, st in enumerate(s.stages):
            x = st(x)
            if i == 2: f3 = x
        return f3, s.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))

class ResNet50I(nn.Module):
    """torchvision's ResNet-50; returns (stage3 [N,1024,14,14] at 224, logits)"""
    def __init__(s, k=1000):
        super().__init__()
        import torchvision
        s.net = torchvision.models.resnet50(num_classes=k)
    def forward(s, x):
        n = s.net
        x = n.maxpool(n.relu(n.bn1(n.conv1(x))))
        f3 = n.layer3(n.layer2(n.layer1(x)))
        return f3, n.fc(torch.flatten(n.avgpool(n.layer4(f3)), 1))

class TimmStaged(nn.Module):
    """timm's DeiT-S or ConvNeXt-T; returns (the Mixer's map [N,384,14,14] at 224, logits):
    DeiT-S's patch tokens after block 6 (forward_intermediates), ConvNeXt-T's stage 3."""
    def __init__(s, name, index):
        super().__init__()
        import timm
        s.net = timm.create_model(name, pretrained=False, num_classes=1000); s.index = index
    def forward(s, x):
        last, maps = s.net.forward_intermediates(x, indices=[s.index])
        return maps[0], s.net.forward_head(last)

class Mixer(nn.Module):
    """SAMix mixer: lambda-residual encoding, q/k on concat, 2-layer value net, bilinear x4, sigmoid."""
    def __init__(s, c=256, k=0.25):
        super().__init__()
        d = c // 2; s.d = d; s.k = k
        s.q = nn.Conv2d(2 * c, d, 1); s.kk = nn.Conv2d(2 * c, d, 1)
        s.v = nn.Sequential(nn.Conv2d(c, d, 1, bias=False), nn.BatchNorm2d(d), nn.ELU(), nn.Conv2d(d, 1, 1, bias=False))
    def forward(s, f, lam, idx, r=4, mode="bilinear"):
        k = s.k; lp = ((4/3)*lam**3 - 2*lam**2 + (k+1)*lam) / (k + 1/3)
        xi = f * (1 + lp); xj = f[idx] * (1 + (1 - lp))
        n, c, h, w = f.shape
        u = torch.cat([xi, xj], 1)
        q = s.q(u).flatten(2).transpose(1, 2); kk = s.kk(u).flatten(2)
        p = torch.softmax((q @ kk).float() / math.sqrt(s.d), -1)
        v = s.v(xj).flatten(2).transpose(1, 2).float()
        m = (p @ v).reshape(n, 1, h, w)
        up = F.interpolate(m, scale_factor=r, mode="nearest") if mode == "nearest" else \
            F.interpolate(m, scale_factor=r, mode="bilinear", align_corners=False)
        sm = torch.sigmoid(up)
        return sm  # weight of the second (shuffled) image

def mixup_ce(logits, y, idx, lam):
    return lam * F.cross_entropy(logits, y) + (1 - lam) * F.cross_entropy(logits, y[idx])

def main():
    ap = argparse.ArgumentParser(); ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=10); ap.add_argument("--amp", action="store_true")
    ap.add_argument("--device", default="cuda"); ap.add_argument("--bs", type=int, default=100)
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--model", default="cifar-r18", choices=["cifar-r18", "imagenet-r50", "deit-s", "convnext-t"])
    ap.add_argument("--methods", default="vanilla,mixup,cutmix,samix")
    a = ap.parse_args(); dev = torch.device(a.device)
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    big = a.model != "cifar-r18"
    S, K, up = (224, 1000, 16) if big else (32, 100, 4)
    net, channels, mode = {
        "cifar-r18": lambda: (ResNet18C(), 256, "bilinear"),
        "imagenet-r50": lambda: (ResNet50I(), 1024, "bilinear"),
        "deit-s": lambda: (TimmStaged("deit_small_patch16_224", 5), 384, "nearest"),
        "convnext-t": lambda: (TimmStaged("convnext_tiny", 2), 384, "bilinear"),
    }[a.model]()
    net = net.to(dev); ema = copy.deepcopy(net).to(dev)
    for p in ema.parameters(): p.requires_grad_(False)
    mixer = Mixer(c=channels).to(dev)
    if a.channels_last:
        net = net.to(memory_format=torch.channels_last); ema = ema.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(list(net.parameters()) + list(mixer.parameters()), lr=0.1, momentum=0.9, weight_decay=1e-4)
    beta = torch.distributions.Beta(2.0, 2.0); beta1 = torch.distributions.Beta(1.0, 1.0)
    x = torch.randn(a.bs, 3, S, S, device=dev); y = torch.randint(0, K, (a.bs,), device=dev)
    if a.channels_last: x = x.to(memory_format=torch.channels_last)
    ac = (lambda: torch.autocast(dev.type, dtype=torch.bfloat16)) if a.amp else (lambda: torch.autocast(dev.type, enabled=False))

    def vanilla():
        with ac(): loss = F.cross_entropy(net(x)[1], y)
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    def mixup():
        lam = float(beta1.sample()); idx = torch.randperm(a.bs, device=dev)
        with ac(): loss = mixup_ce(net(lam * x + (1 - lam) * x[idx])[1], y, idx, lam)
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    def cutmix():
        lam = float(torch.distributions.Beta(0.2, 0.2).sample()); idx = torch.randperm(a.bs, device=dev)
        cut = math.sqrt(1 - lam); cw, ch = int(S * cut), int(S * cut)
        cx, cy = int(torch.randint(0, S, ())), int(torch.randint(0, S, ()))
        x1, x2, y1, y2 = max(cx - cw // 2, 0), min(cx + cw // 2, S), max(cy - ch // 2, 0), min(cy + ch // 2, S)
        xm = x.clone(); xm[:, :, y1:y2, x1:x2] = x[idx, :, y1:y2, x1:x2]
        lam = 1 - (x2 - x1) * (y2 - y1) / (S * S)
        with ac(): loss = mixup_ce(net(xm)[1], y, idx, lam)
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    def samix():
        lmb, lbb = float(beta.sample()), float(beta.sample())
        imb, ibb = torch.randperm(a.bs, device=dev), torch.randperm(a.bs, device=dev)
        with ac():
            with torch.no_grad(): f = ema(x)[0]
            smb = mixer(f, lmb, imb, r=up, mode=mode)
            with torch.no_grad(): sbb = mixer(f, lbb, ibb, r=up, mode=mode)
            if lbb <= 0.08 or lbb >= 0.92: sbb = torch.full_like(sbb, 1 - lbb)
            m = smb.mean(); lmask = 0.1 * (torch.clamp((1 - m - lmb).abs() - 0.1, min=0) - 2 * ((smb - m) ** 2).mean())
            xmb = x * (1 - smb) + x[imb] * smb
            xbb = x * (1 - sbb) + x[ibb] * sbb
            lk = mixup_ce(ema(xmb)[1], y, imb, lmb)
            lone = F.cross_entropy(net(x)[1], y)
            lq = mixup_ce(net(xbb)[1], y, ibb, lbb)
            loss = lone + lq + lk + lmask
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
        with torch.no_grad():
            for pe, pq in zip(ema.parameters(), net.parameters()): pe.mul_(0.999).add_(pq.detach(), alpha=0.001)

    res = {}
    chosen = a.methods.split(",")
    for name, fn in [(n, f) for n, f in [("vanilla", vanilla), ("mixup", mixup), ("cutmix", cutmix), ("samix", samix)] if n in chosen]:
        for _ in range(a.warmup): fn()
        if dev.type == "cuda": torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(a.steps): fn()
        if dev.type == "cuda": torch.cuda.synchronize()
        ms = (time.perf_counter() - t) * 1000 / a.steps; res[name] = ms
        print(f"RESULT torch {name} model={a.model} amp={a.amp} cl={a.channels_last} bs={a.bs}: {ms:.2f} ms/step {a.bs*1000/ms:.0f} img/s", flush=True)
    if "vanilla" in res and len(res) > 1:
        print("RATIO " + " ".join(f"{n}/vanilla {res[n]/res['vanilla']:.2f}" for n in res if n != "vanilla"), flush=True)

if __name__ == "__main__":
    main()
